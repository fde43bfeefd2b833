"""Least privilege on the bus: what each service may do, and the broker configuration generated from it.

The routing table (contracts.routing.ROUTES) says which queue — a service's queue per lane — consumes which
key; `PUBLISHES` and `REQUESTS` below say which keys each service sends (a drift test reads the services'
sources to keep them true). From those two facts come, per service and namespace `ns`:

- RabbitMQ (`declare=false` in BUS_URL, topology provisioned from the definitions):
    configure  its reply queues `{ns}.reply.<instance>`, if it makes requests; nothing else
    write      `{ns}.direct` (publish), `{ns}.delay` (delayed publishes, its own retries),
               `amq.default` (its dead-letter queue and replies), each only if it does that
    read       its own queues `{ns}.{service}` and `{ns}.{service}.{lane}`, its reply queues
    topic      on `{ns}.delay` it may only write keys `<tier>.<queue>` of the queues it sends to
- SQS: an IAM policy (deploy/aws/iam/<service>.json) — receive/delete/change visibility on its own queues,
  send to the queues it publishes to (its own: retries; its DLQ), reply queues as requester or responder.
- Dead letters: the gateway (OPERATES_DEAD_LETTERS) also reads every DLQ and sends to every service queue,
  for the admin API that lists and replays them; no other service reads a DLQ.

RabbitMQ cannot check the routing key of a direct exchange or of the default exchange, so a service that
may publish at all may put a message on any queue through them; consuming, declaring and deleting are
limited exactly. SQS checks every queue separately.

    python -m libs.bus.permissions rabbitmq [--namespace ho] [--vhost /] [--passwords-from-env]
    python -m libs.bus.permissions iam [--namespace ho] [--out deploy/aws/iam]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from contracts import costs, rate_window
from contracts import messages as m
from contracts import routing as r
from libs.bus import constants as c
from libs.bus.amqp import (
    DELAY_TIERS_MS,
    DLQ_ARGUMENTS,
    delay_binding,
    service_queue_arguments,
    tier_queue_arguments,
)
from libs.bus.sqs_config import physical_name

# Keys each service publishes (events and commands, besides retries of its own messages).
PUBLISHES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        r.GATEWAY: (),
        r.ROUTER: (
            f"{m.GenerationRequested.TYPE}.azure",
            f"{m.GenerationRequested.TYPE}.openai",
            m.DeliveryRequested.TYPE,
            m.WorkflowCompleted.TYPE,
            m.WorkflowFailed.TYPE,
            m.WorkflowFanout.TYPE,
            m.WebhookRequested.TYPE,
            m.WorkflowCancelled.TYPE,
        ),
        r.AZURE_WORKER: (m.GenerationCompleted.TYPE, m.GenerationFailed.TYPE, m.UsageRecorded.TYPE),
        r.OPENAI_WORKER: (m.GenerationCompleted.TYPE, m.GenerationFailed.TYPE, m.UsageRecorded.TYPE),
        r.RATE_LIMITER: (
            m.DeliveryScheduled.TYPE,
            m.DeliveryApproved.TYPE,
            m.DeliveryReplanned.TYPE,
            m.DeliveryFailed.TYPE,
            m.DeliveryRequested.TYPE,
        ),
        r.OF_SENDER: (
            m.DeliveryApproved.TYPE,
            m.DeliveryScheduled.TYPE,
            m.DeliveryCompleted.TYPE,
            m.DeliveryFailed.TYPE,
        ),
        r.COST_TRACKER: (m.CostAlert.TYPE, m.BudgetStatus.TYPE, costs.RoutingPolicy.TYPE),
    }
)

# Keys each service sends as requests (bus.request: it waits on a reply queue of its own).
REQUESTS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        r.GATEWAY: (
            m.WorkflowRequested.TYPE,
            m.WorkflowStatusQuery.TYPE,
            m.DeliveryListQuery.TYPE,
            *(request.TYPE for request in costs.COST_REQUESTS),
            m.WorkflowCancelRequest.TYPE,
            m.WorkflowRetryRequest.TYPE,
            m.WorkflowListQuery.TYPE,
            rate_window.RateWindowQuery.TYPE,
        ),
    }
)

# Services that read every dead-letter queue and replay dead letters to their service's queue: the gateway's
# admin API (GET /api/admin/dead-letters, POST .../replay). Inspecting the broker is an operator's act, not
# service-to-service messaging, so it is granted here rather than derived from the routing table.
OPERATES_DEAD_LETTERS: tuple[str, ...] = (r.GATEWAY,)

AMQP_DEFAULT_EXCHANGE = "amq.default"  # the default exchange's name in permission checks
NOTHING = "^$"  # a RabbitMQ permission regex that matches no resource
PASSWORD_ENV = "RABBITMQ_PASSWORD_"  # + service, upper case, "-" → "_": --passwords-from-env reads these


@dataclass(frozen=True)
class Access:
    """What one service does on the bus."""

    service: str
    queues: tuple[str, ...]  # its own queues, one per lane (it also retries to them and dead-letters to their DLQs)
    targets: tuple[str, ...]  # queues it publishes to (immediately or delayed)
    request_targets: tuple[str, ...]  # queues it sends requests to (never delayed)
    requests: bool  # has reply queues
    replies: bool  # answers requests (sends to requesters' reply queues)
    operates_dead_letters: bool  # lists and replays every queue's dead letters (the admin API)

    @property
    def consumes(self) -> bool:
        return bool(self.queues)


def access(service: str) -> Access:
    """`service`'s bus operations, from the routing table and PUBLISHES / REQUESTS."""
    requested = {key for keys in REQUESTS.values() for key in keys}
    queues = r.queues_of(service)
    consumed = {key for q in queues for key in r.keys_consumed_by(q)}
    return Access(
        service=service,
        queues=queues,
        targets=tuple(sorted({t for key in PUBLISHES.get(service, ()) for t in r.every_destination(key)})),
        request_targets=tuple(sorted({t for key in REQUESTS.get(service, ()) for t in r.every_destination(key)})),
        requests=bool(REQUESTS.get(service)),
        replies=any(key in requested for key in consumed),
        operates_dead_letters=service in OPERATES_DEAD_LETTERS,
    )


def consuming_services() -> tuple[str, ...]:
    """Every queue (a service's queue per lane), each with its dead-letter queue."""
    return r.QUEUES


# --- RabbitMQ --------------------------------------------------------------------------------------------


def _alternatives(names: list[str], patterns: tuple[str, ...] = ()) -> str:
    """A regex matching exactly `names` and the unanchored `patterns` (NOTHING when both are empty)."""
    parts = [re.escape(n) for n in names] + list(patterns)
    return "^(" + "|".join(parts) + ")$" if parts else NOTHING


def reply_queues(namespace: str) -> str:
    """The reply queues of `namespace`, `{ns}.reply.<instance>` (libs.bus.base.new_instance_id), unanchored."""
    return re.escape(f"{namespace}.reply.") + "[0-9a-f]+"


def rabbitmq_permissions(service: str, namespace: str) -> dict[str, str]:
    """configure / write / read regexes of `service`'s broker user."""
    a = access(service)
    write: list[str] = []
    if a.targets or a.request_targets or a.operates_dead_letters:
        write.append(f"{namespace}.direct")  # a replay goes to the service's queue through it
    if a.targets or a.consumes:
        write.append(f"{namespace}.delay")
    if a.consumes:
        write.append(AMQP_DEFAULT_EXCHANGE)
    read = [c.queue_name(namespace, q) for q in a.queues]
    if a.operates_dead_letters:
        read += [c.dlq_name(namespace, s) for s in consuming_services()]
    replies = (reply_queues(namespace),) if a.requests else ()
    return {
        "configure": _alternatives([], replies),
        "write": _alternatives(write),
        "read": _alternatives(read, replies),
    }


def delay_topic_pattern(service: str) -> str:
    """Routing keys `service` may publish on the delay exchange: `<tier>.<queue it sends to, or its own>`."""
    a = access(service)
    names = sorted(set(a.targets) | set(a.queues))
    return "^[0-9]+\\." + _alternatives(names).removeprefix("^") if names else NOTHING


def user_name(namespace: str, service: str) -> str:
    return f"{namespace}-{service}"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def rabbitmq_definitions(
    namespace: str, vhost: str = "/", passwords: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """RabbitMQ definitions (`rabbitmqctl import_definitions`): one user per service with its permissions,
    and the namespace's whole topology, declared as `AmqpBus.connect` would. Users without a password in
    `passwords` get none (`rabbitmqctl change_password` sets it)."""
    services = r.SERVICES
    consumers = consuming_services()
    exchange = {"vhost": vhost, "durable": True, "auto_delete": False, "internal": False, "arguments": {}}
    queue = {"vhost": vhost, "durable": True, "auto_delete": False}

    def binding(source: str, destination: str, key: str) -> dict[str, Any]:
        return {
            "source": source,
            "vhost": vhost,
            "destination": destination,
            "destination_type": "queue",
            "routing_key": key,
            "arguments": {},
        }

    return {
        "rabbit_version": "3.10.0",
        "vhosts": [{"name": vhost}],
        "users": [
            {
                "name": user_name(namespace, s),
                "password_hash": password_hash(passwords[s]) if passwords and s in passwords else "",
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
            for s in services
        ],
        "permissions": [
            {"user": user_name(namespace, s), "vhost": vhost, **rabbitmq_permissions(s, namespace)} for s in services
        ],
        "topic_permissions": [
            {
                "user": user_name(namespace, s),
                "vhost": vhost,
                "exchange": f"{namespace}.delay",
                "write": delay_topic_pattern(s),
                "read": NOTHING,
            }
            for s in services
        ],
        "exchanges": [
            {"name": f"{namespace}.direct", "type": "direct", **exchange},
            {"name": f"{namespace}.delay", "type": "topic", **exchange},
            {"name": f"{namespace}.expired", "type": "topic", **exchange},
        ],
        "queues": [
            q
            for s in consumers
            for q in (
                {"name": c.dlq_name(namespace, s), **queue, "arguments": dict(DLQ_ARGUMENTS)},
                {"name": c.queue_name(namespace, s), **queue, "arguments": service_queue_arguments(namespace, s)},
            )
        ]
        + [
            {"name": f"{namespace}.delay.{t}", **queue, "arguments": tier_queue_arguments(namespace, t)}
            for t in DELAY_TIERS_MS
        ],
        "bindings": [
            b
            for s in consumers
            for b in (
                binding(f"{namespace}.direct", c.queue_name(namespace, s), s),
                binding(f"{namespace}.expired", c.queue_name(namespace, s), f"*.{s}"),
            )
        ]
        + [binding(f"{namespace}.delay", f"{namespace}.delay.{t}", delay_binding(t)) for t in DELAY_TIERS_MS],
    }


def passwords_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Each service's password from RABBITMQ_PASSWORD_<SERVICE> (e.g. RABBITMQ_PASSWORD_AZURE_WORKER)."""
    found = {s: environ.get(PASSWORD_ENV + s.upper().replace("-", "_"), "") for s in r.SERVICES}
    return {s: p for s, p in found.items() if p}


# --- SQS -------------------------------------------------------------------------------------------------


def _arn(name: str) -> str:
    return f"arn:aws:sqs:*:*:{name}"


def iam_policy(service: str, namespace: str) -> dict[str, Any]:
    """The IAM policy of `service`'s role on SQS (queues provisioned beforehand: `create_queues=false`)."""
    a = access(service)
    queues = [physical_name(c.queue_name(namespace, q)) for q in a.queues]
    dlqs = [physical_name(c.dlq_name(namespace, q)) for q in a.queues]
    replies = _arn(physical_name(f"{namespace}.reply.") + "*")
    statements: list[dict[str, Any]] = [
        {
            # connect looks every queue of the namespace up; readiness reads one's attributes. Metadata only.
            "Sid": "LookUpNamespaceQueues",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
            "Resource": _arn(physical_name(f"{namespace}.") + "*"),
        }
    ]
    if a.consumes:
        statements.append(
            {
                "Sid": "ConsumeOwnQueue",
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
                "Resource": _arn(queues[0]) if len(queues) == 1 else [_arn(q) for q in queues],
            }
        )
    replays = consuming_services() if a.operates_dead_letters else ()
    sends = sorted({physical_name(c.queue_name(namespace, t)) for t in a.targets + a.request_targets + replays})
    own = queues + dlqs  # retries and delays go back to its queues; dead letters to their DLQs
    if sends or own:
        statements.append(
            {
                "Sid": "SendToQueues",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [_arn(n) for n in sorted(set(sends) | set(own))],
            }
        )
    if a.operates_dead_letters:
        statements.append(
            {
                # Listing receives dead letters and makes them visible again; a replay deletes what it sent.
                "Sid": "OperateDeadLetterQueues",
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
                "Resource": [_arn(physical_name(c.dlq_name(namespace, s))) for s in consuming_services()],
            }
        )
    if a.requests:
        statements.append(
            {
                # Its own reply queue per process (created on the first request, tagged as a heartbeat,
                # deleted on close); IAM cannot tell one process's from another's.
                "Sid": "OwnReplyQueues",
                "Effect": "Allow",
                "Action": [
                    "sqs:CreateQueue",
                    "sqs:TagQueue",
                    "sqs:SetQueueAttributes",
                    "sqs:DeleteQueue",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                ],
                "Resource": replies,
            }
        )
    if a.replies:
        statements.append(
            {"Sid": "AnswerRequests", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": replies}
        )
    return {"Version": "2012-10-17", "Statement": statements}


# --- command line ----------------------------------------------------------------------------------------


def render(document: Mapping[str, Any]) -> str:
    """The committed form of a generated file (tests compare byte for byte)."""
    return json.dumps(document, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.bus.permissions", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rabbit = commands.add_parser("rabbitmq", help="print RabbitMQ definitions (users, permissions, topology)")
    rabbit.add_argument("--namespace", default=c.DEFAULT_NAMESPACE)
    rabbit.add_argument("--vhost", default="/")
    rabbit.add_argument("--passwords-from-env", action="store_true", help=f"hash {PASSWORD_ENV}<SERVICE> in")
    iam = commands.add_parser("iam", help="write one IAM policy per service")
    iam.add_argument("--namespace", default=c.DEFAULT_NAMESPACE)
    iam.add_argument("--out", type=Path, default=Path("deploy/aws/iam"))
    args = parser.parse_args(argv)
    if args.command == "rabbitmq":
        passwords = passwords_from_env() if args.passwords_from_env else None
        sys.stdout.write(render(rabbitmq_definitions(args.namespace, args.vhost, passwords)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for service in r.SERVICES:
        (args.out / f"{service}.json").write_text(render(iam_policy(service, args.namespace)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
