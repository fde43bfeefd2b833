"""`ho`: the operator's command line — tokens, migrations, SQS queues, dead letters, workflows, flags, settings.

An operator tool beside services/embedded.py, not a service: each command runs once and exits. Commands on
the running system call the gateway's HTTP API (`--url` / HO_URL, `--token` / HO_TOKEN: an admin's token for
admin endpoints); `token`, `migrate`, `sqs` and `config` read the environment, as the services do.

Exit status: 0 done; 1 the command failed (an HTTP error prints `ho: <status> <code>: <message>`); 2 bad
arguments or a configuration mistake (`ho: VARIABLE: problem`, never a secret's value).
"""
