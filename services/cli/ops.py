"""`ho migrate` and `ho sqs`: the deployment steps, with the code the services' own jobs run
(libs.storage.migrate_all, libs.bus.sqs_provision)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from libs.bus.errors import BusConnectionError
from libs.bus.sqs_config import REPLY_STALE_S, SqsSettings
from libs.bus.sqs_provision import provision, sqs_client, sweep_reply_queues
from libs.bus.sqs_wire import translate
from libs.config import CommonSettings, ConfigError, load_settings, redact
from libs.storage.errors import StorageError
from libs.storage.migrate_all import default_services_dir, migrate_all, plan, status_all
from services.cli.errors import CommandError
from services.cli.output import print_json, print_table


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="apply (or list) the SQL migrations of every service schema",
        description="Apply the pending migrations of every service with a migrations folder (router, of_sender, "
        "cost_tracker), each in its own schema, on DATABASE_URL. Safe to re-run.",
    )
    migrate.add_argument("--status", action="store_true", help="list applied and pending migrations; change nothing")
    migrate.add_argument("--dsn", default=None, help="PostgreSQL DSN (default: $DATABASE_URL)")
    migrate.set_defaults(run=run_migrate)

    sqs = commands.add_parser(
        "sqs",
        help="create the SQS queues, or delete stale reply queues",
        description="provision: create or update every service queue and dead-letter queue of the namespace. "
        f"sweep: delete reply queues whose process stopped stamping them ({REPLY_STALE_S:g} s ago or more: a "
        "killed process's; a running one stamps its own every few minutes).",
    )
    sqs.add_argument("action", choices=["provision", "sweep"])
    sqs.add_argument("--bus-url", default=None, help="sqs://?region=… (default: $BUS_URL)")
    sqs.add_argument("--namespace", default=None, help="default: the URL's namespace, else $BUS_NAMESPACE")
    sqs.set_defaults(run=run_sqs)


def run_migrate(args: argparse.Namespace) -> int:
    dsn = args.dsn or load_settings(CommonSettings).database_url
    if not dsn:
        raise ConfigError("required (or --dsn), not set", "DATABASE_URL")
    plans = plan(default_services_dir())
    try:
        if args.status:
            rows: list[dict[str, Any]] = []
            for schema in asyncio.run(status_all(dsn, plans)):
                rows += [
                    {"schema": schema.schema, "migration": name, "state": "applied", "appliedAt": at.isoformat()}
                    for name, at in schema.applied
                ]
                rows += [{"schema": schema.schema, "migration": name, "state": "pending"} for name in schema.pending]
            print_table(rows, ["schema", "migration", "state", "appliedAt"])
            return 0
        applied = asyncio.run(migrate_all(dsn, plans))
    except StorageError as exc:
        raise CommandError(f"migrate: {redact(str(exc))}") from None
    for item in plans:
        names = applied.get(item.schema, [])
        print(f"{item.schema}: " + (f"applied {', '.join(names)}" if names else "up to date"))
    return 0


def run_sqs(args: argparse.Namespace) -> int:
    common = load_settings(CommonSettings)
    url = args.bus_url or common.bus_url
    if not url.startswith("sqs://"):
        raise ConfigError("must be an sqs:// URL for `ho sqs` (or give --bus-url)", "BUS_URL")
    try:
        settings = SqsSettings.from_url(url)
    except ValueError as exc:
        raise ConfigError(redact(str(exc)), "BUS_URL") from None
    namespace = args.namespace or settings.namespace or common.bus_namespace
    try:
        print_json(asyncio.run(_sqs(args.action, settings, namespace)))
    except (BotoCoreError, ClientError) as exc:
        raise CommandError(str(translate(exc, args.action, BusConnectionError))) from None
    return 0


async def _sqs(action: str, settings: SqsSettings, namespace: str) -> dict[str, Any]:
    async with sqs_client(settings) as client:
        if action == "provision":
            topology = await provision(client, settings, namespace)
            return {
                "namespace": namespace,
                "queues": dict(topology.queues),
                "deadLetterQueues": dict(topology.dead_letter_queues),
            }
        return {"namespace": namespace, "deletedReplyQueues": await sweep_reply_queues(client, namespace)}
