"""`ho dlq` and `ho flags`: the gateway's admin API (an admin's token) — dead letters listed and replayed,
the feature flags read and changed."""

from __future__ import annotations

import argparse
from typing import Any

from services.cli.gateway import add_http_options, call
from services.cli.output import print_json, print_table

DEAD_LETTERS = "/api/admin/dead-letters"
REPLAY = "/api/admin/dead-letters/replay"
FEATURE_FLAGS = "/api/admin/feature-flags"
# Columns of `ho dlq list`, when the answer has them (--json prints everything, the preview included).
DEAD_LETTER_COLUMNS = ("id", "type", "reason", "ageS", "age", "workflowId", "replays")
_BOOLEANS = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser("dlq", help="list or replay a service's dead letters (admin)")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="a service's dead letters: type, reason, age, workflow id", description="GET " + DEAD_LETTERS
    )
    listing.add_argument("--service", required=True, help="the consuming service, e.g. router, of-sender")
    listing.add_argument("--limit", type=_positive, default=None, help="at most this many")
    listing.add_argument("--json", action="store_true", help="the whole answer, previews included")
    add_http_options(listing)
    listing.set_defaults(run=run_dlq_list)
    replay = actions.add_parser(
        "replay",
        help="put dead letters back on their service's queue",
        description="POST " + REPLAY + ": one dead letter (--id) or all of the service's (--all). One that fails "
        "again is dead-lettered again with its new reason.",
    )
    replay.add_argument("--service", required=True, help="the consuming service, e.g. router, of-sender")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", help="the dead letter's id (from `ho dlq list`)")
    which.add_argument("--all", action="store_true", help="every dead letter of the service")
    add_http_options(replay)
    replay.set_defaults(run=run_dlq_replay)

    flags = commands.add_parser("flags", help="read or change the feature flags (admin)")
    actions = flags.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = actions.add_parser(
        "get", help="the flags, their version and who changed them", description="GET " + FEATURE_FLAGS
    )
    add_http_options(get)
    get.set_defaults(run=run_flags_get)
    put = actions.add_parser(
        "set",
        help="change the flags given, keep the others",
        description="PUT " + FEATURE_FLAGS + ": give at least one of --enabled, --rollout, --allow.",
    )
    put.add_argument("--enabled", type=_boolean, help="the kill switch: false refuses every new workflow")
    put.add_argument("--rollout", type=_percentage, help="0-100: the share of users let in")
    put.add_argument("--allow", type=_id_list, help='comma-separated user ids let in whatever the rollout ("" clears)')
    put.add_argument("--expected-version", type=int, help="write only if the flags are still at this version")
    add_http_options(put)
    put.set_defaults(run=run_flags_set, parser=put)


def run_dlq_list(args: argparse.Namespace) -> int:
    data = call(args, "GET", DEAD_LETTERS, params={"service": args.service, "limit": args.limit})
    rows = items(data)
    if args.json or rows is None:
        print_json(data)
        return 0
    print_table(rows, DEAD_LETTER_COLUMNS)
    if isinstance(data, dict) and data.get("depth") is not None:
        # The list is cut at --limit; the depth says how many the queue holds in all.
        print(f"depth: {data['depth']}")
    return 0


def run_dlq_replay(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"service": args.service}
    if args.all:
        body["all"] = True
    else:
        body["id"] = args.id
    print_json(call(args, "POST", REPLAY, body=body))
    return 0


def run_flags_get(args: argparse.Namespace) -> int:
    print_json(call(args, "GET", FEATURE_FLAGS))
    return 0


def run_flags_set(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.enabled is not None:
        body["hybridOrchestratorEnabled"] = args.enabled
    if args.rollout is not None:
        body["rolloutPercentage"] = args.rollout
    if args.allow is not None:
        body["allowList"] = args.allow
    if not body:
        args.parser.error("give at least one of --enabled, --rollout, --allow")
    if args.expected_version is not None:
        body["expectedVersion"] = args.expected_version
    print_json(call(args, "PUT", FEATURE_FLAGS, body=body))
    return 0


def items(data: Any) -> list[dict[str, Any]] | None:
    """The rows of an answer: the answer itself when it is a list, or its one list-valued field (e.g.
    `deadLetters`); None when there is no such list (then the answer is printed as it is)."""
    if isinstance(data, list):
        return data
    lists = [value for value in data.values() if isinstance(value, list)] if isinstance(data, dict) else []
    return lists[0] if len(lists) == 1 else None


def _boolean(text: str) -> bool:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def _percentage(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"expected a whole number 0-100, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _id_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
