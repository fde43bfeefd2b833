"""`ho workflows`: find, inspect and cancel workflows through the gateway (the caller's own; an admin's
token sees everyone's)."""

from __future__ import annotations

import argparse

from services.cli.gateway import add_http_options, call
from services.cli.output import print_json, print_table

LIST = "/api/v2/campaigns"
STATUS = "/api/v2/campaigns/status"
CANCEL = "/api/v2/campaigns/cancel"
COLUMNS = ("workflowId", "status", "intentType", "type", "accountId", "userId", "createdAt", "completedAt")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workflows = commands.add_parser("workflows", help="list, show or cancel workflows")
    actions = workflows.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="workflows, newest first, a page at a time",
        description="GET " + LIST + ". The last line gives the command for the next page, if there is one.",
    )
    listing.add_argument("--status", help="e.g. failed, delivering, completed, cancelled")
    listing.add_argument("--account", help="the creator account messages are sent from")
    listing.add_argument("--type", help="the intent type, e.g. campaign_execution")
    listing.add_argument("--from", dest="from_", metavar="FROM", help="created at or after (ISO 8601)")
    listing.add_argument("--to", help="created before (ISO 8601)")
    listing.add_argument("--limit", type=int, help="workflows per page")
    listing.add_argument("--cursor", help="the previous page's nextCursor")
    listing.add_argument("--json", action="store_true", help="the whole answer")
    add_http_options(listing)
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="one workflow's whole state", description="GET " + STATUS)
    show.add_argument("id", help="the workflow id")
    add_http_options(show)
    show.set_defaults(run=run_show)
    cancel = actions.add_parser(
        "cancel",
        help="stop a workflow: no further generation or send",
        description="POST " + CANCEL + " (its owner or an admin); the answer says how many were sent before.",
    )
    cancel.add_argument("id", help="the workflow id")
    add_http_options(cancel)
    cancel.set_defaults(run=run_cancel)


def run_list(args: argparse.Namespace) -> int:
    params = {
        "status": args.status,
        "accountId": args.account,
        "type": args.type,
        "from": args.from_,
        "to": args.to,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    data = call(args, "GET", LIST, params=params)
    rows = data.get("workflows") if isinstance(data, dict) else None
    if args.json or not isinstance(rows, list):
        print_json(data)
        return 0
    print_table(rows, COLUMNS)
    if data.get("nextCursor") is not None:
        print(f"next page: --cursor {data['nextCursor']}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print_json(call(args, "GET", STATUS, params={"workflowId": args.id}))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    print_json(call(args, "POST", CANCEL, params={"workflowId": args.id}))
    return 0
