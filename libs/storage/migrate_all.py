"""The one-shot migration step of a deployment: every service's schema, in one command.

    python -m libs.storage.migrate_all                   # $DATABASE_URL, every services/*/migrations
    python -m libs.storage.migrate_all --list            # what would be migrated, without connecting

Run once per release, before the new replicas start: a compose one-shot service, a Kubernetes Job, an
ECS task. Every folder ``<services-dir>/<package>/migrations`` is applied to the schema named after its
package (``services/router/migrations`` → schema ``router``, ``services/cost_tracker/migrations`` →
``cost_tracker``), so a service added with a migrations folder is picked up with no change here.

Discovery is by path, never by import: libs/ must not import services/. The default services folder is
the ``services`` directory beside the ``libs`` package, which holds both in a source checkout and in an
installed wheel (the image), where the .sql files ship as package data.

Every schema is attempted even when one fails (they are independent; the log names each failure); the
exit status is 0 when all are up to date, 1 when any failed, 2 for bad arguments. Re-running is always
safe: applied files are skipped after their checksums are verified (libs.storage.migrator).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

import libs
from libs.config import CONFIG_EXIT_STATUS, ConfigError
from libs.secrets_manager import resolve_secret_references
from libs.storage.errors import StorageError
from libs.storage.migrator import SchemaStatus, migrate, migration_status
from libs.storage.pg import create_pool, quote_schema

__all__ = ["SchemaPlan", "default_services_dir", "main", "migrate_all", "plan", "status_all"]

log = structlog.get_logger(__name__)

# The folder, inside each service package, that holds its NNN_*.sql files.
MIGRATIONS_FOLDER = "migrations"
# The services' parent folder, as a sibling of the libs package (see the module docstring).
SERVICES_FOLDER = "services"


@dataclass(frozen=True, slots=True)
class SchemaPlan:
    """One schema to migrate and the folder its files come from."""

    schema: str
    directory: Path


def default_services_dir() -> Path:
    """The ``services`` folder beside the ``libs`` package (source tree or site-packages alike)."""
    return Path(libs.__file__).resolve().parent.parent / SERVICES_FOLDER


def plan(services_dir: Path) -> list[SchemaPlan]:
    """Every ``<services_dir>/<package>/migrations`` folder, as schema plans ordered by schema name.

    Raises ValueError when ``services_dir`` is not a folder or a package name cannot be a schema name
    (the schema is the package name, so a package must be a plain lowercase identifier).
    """
    if not services_dir.is_dir():
        raise ValueError(f"services folder {services_dir} does not exist")
    plans: list[SchemaPlan] = []
    for package in sorted(services_dir.iterdir()):
        directory = package / MIGRATIONS_FOLDER
        if not package.is_dir() or not directory.is_dir():
            continue
        quote_schema(package.name)  # raises ValueError for a name that cannot be a schema
        plans.append(SchemaPlan(schema=package.name, directory=directory))
    return plans


async def migrate_all(dsn: str, plans: Sequence[SchemaPlan]) -> dict[str, list[str]]:
    """Apply ``plans`` on ``dsn``; {schema: file names applied now} for the schemas that succeeded.

    Raises StorageError (the first failure; every schema is attempted first) when any schema failed.
    """
    applied: dict[str, list[str]] = {}
    failures: list[StorageError] = []
    # One connection is enough: schemas are migrated one after the other, each under its own advisory lock.
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        for item in plans:
            try:
                applied[item.schema] = await migrate(pool, schema=item.schema, directory=item.directory)
            except StorageError as exc:
                log.error("migrations.schema_failed", schema=item.schema, error_type=type(exc).__name__, error=str(exc))
                failures.append(exc)
    finally:
        await pool.close()
    log.info(
        "migrations.all_finished",
        schemas=[p.schema for p in plans],
        applied={schema: len(names) for schema, names in applied.items()},
        failed=len(failures),
    )
    if failures:
        raise failures[0]
    return applied


async def status_all(dsn: str, plans: Sequence[SchemaPlan]) -> list[SchemaStatus]:
    """Each plan's applied and pending migrations on ``dsn`` (nothing is changed)."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        return [await migration_status(pool, schema=p.schema, directory=p.directory) for p in plans]
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: the process arguments); the exit status."""
    try:
        asyncio.run(resolve_secret_references())  # DATABASE_URL may be a Secrets Manager reference
    except ConfigError as exc:
        print(f"migrate_all: {exc}", file=sys.stderr)
        return CONFIG_EXIT_STATUS
    parser = argparse.ArgumentParser(
        prog="python -m libs.storage.migrate_all",
        description="Apply pending SQL migrations of every service that has a migrations folder.",
    )
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    parser.add_argument(
        "--services-dir",
        type=Path,
        default=default_services_dir(),
        help="folder of the service packages (default: the one beside libs/)",
    )
    parser.add_argument("--list", action="store_true", help="print schema and folder per service, then exit")
    args = parser.parse_args(argv)
    try:
        plans = plan(args.services_dir)
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        for item in plans:
            print(f"{item.schema}\t{item.directory}")
        return 0
    if not args.dsn:
        parser.error("--dsn or DATABASE_URL is required")
    if not plans:
        log.warning("migrations.nothing_to_migrate", services_dir=str(args.services_dir))
        return 0
    try:
        asyncio.run(migrate_all(args.dsn, plans))
    except StorageError as exc:
        # A schema's own failure was logged with its name already; this also covers not connecting at all.
        log.error("migrations.failed", error_type=type(exc).__name__, error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
