"""The `ho` command: its parser (one module per group of commands) and how a failure is printed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from libs.config import CONFIG_EXIT_STATUS, ConfigError
from libs.telemetry import configure_logging
from services.cli import admin, ops, settings_view, tokens, workflows
from services.cli.errors import CommandError

PROG = "ho"
COMMANDS = (tokens, ops, admin, workflows, settings_view)
# The libraries' own events (a migration applied, ...) go to stderr, and only warnings unless LOG_LEVEL says
# otherwise: stdout is the command's answer.
LOG_LEVEL = "warning"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate the Hybrid Orchestrator: tokens, migrations, SQS queues, dead letters, workflows, "
        "feature flags, settings. `ho COMMAND --help` for each.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ho` with `argv` (default: the process's); the exit status. Bad arguments raise SystemExit(2)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        _fail(str(exc))
        return CONFIG_EXIT_STATUS
    except CommandError as exc:
        _fail(str(exc))
        return 1


def run() -> None:
    """The console script's entry point (a process of its own: logging is configured here, not in `main`,
    which tests call in-process)."""
    try:
        configure_logging(PROG, json=False, level=os.environ.get("LOG_LEVEL") or LOG_LEVEL, stream=sys.stderr)
    except ConfigError as exc:
        _fail(str(exc))
        sys.exit(CONFIG_EXIT_STATUS)
    sys.exit(main())


def _fail(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)
