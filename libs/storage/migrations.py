"""One-shot migration command for deployments (a Kubernetes Job, an init container, a compose service)::

    python -m libs.storage.migrations --dsn postgresql://... --schema router --dir services/router/migrations

Exit status 0 when the schema is up to date, 1 when migrating failed, 2 for bad arguments. ``--dsn``
defaults to ``$DATABASE_URL``. The implementation lives in libs.storage.migrator (re-exported here);
this module is kept out of the package ``__init__`` so that ``python -m`` does not re-execute an
already-imported module.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from libs.storage.errors import StorageError
from libs.storage.migrator import Migration, discover, migrate
from libs.storage.pg import create_pool, quote_schema

__all__ = ["Migration", "discover", "main", "migrate"]

log = structlog.get_logger(__name__)


async def _run(dsn: str, schema: str, directory: Path) -> list[str]:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        return await migrate(pool, schema=schema, directory=directory)
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the migration command with ``argv`` (default: the process arguments); the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m libs.storage.migrations", description="Apply pending SQL migrations to one schema."
    )
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    parser.add_argument("--schema", required=True, help="schema to migrate (created if missing)")
    parser.add_argument("--dir", dest="directory", type=Path, required=True, help="NNN_*.sql files")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn or DATABASE_URL is required")
    try:
        quote_schema(args.schema)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_run(args.dsn, args.schema, args.directory))
    except StorageError as exc:
        log.error("migrations.failed", schema=args.schema, error_type=type(exc).__name__, error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
