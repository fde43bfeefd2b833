"""Schema migrations that every replica of a service may run at start-up.

Each schema has its own history: ``NNN_description.sql`` files applied in numeric order, each in its own
transaction together with its row in ``<schema>.schema_migrations`` (version, file name, sha256 of the
file). A session advisory lock keyed on the schema name serialises concurrent runs, so N replicas
starting together apply each file exactly once and the others find nothing left to do.

Rules for migration files: never edit one that has been applied (the checksum check refuses to run);
add a new file instead. Files run with ``search_path`` set to the schema, so they use unqualified
names. A file must not contain transaction control (BEGIN/COMMIT) or statements that cannot run inside
a transaction (CREATE INDEX CONCURRENTLY).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import structlog

from libs.storage.constants import (
    MIGRATION_FILE_RE,
    MIGRATION_LOCK_NAMESPACE,
    MIGRATION_SUFFIX,
    MIGRATIONS_TABLE,
)
from libs.storage.errors import MigrationError, StorageError, is_retryable, to_database_error
from libs.storage.pg import quote_schema

__all__ = ["Migration", "SchemaStatus", "discover", "migrate", "migration_status"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file as read from disk."""

    version: int
    name: str
    sql: str
    checksum: str


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """What a schema's history says against the files: applied (file name, when) and pending file names."""

    schema: str
    applied: list[tuple[str, datetime]]
    pending: list[str]


def discover(directory: Path) -> list[Migration]:
    """The migration files of ``directory`` in the order they apply.

    Files not ending in ``.sql`` are ignored; a ``.sql`` file with another name shape, two files with the
    same number, or a file that is not UTF-8 raise MigrationError.
    """
    if not directory.is_dir():
        raise MigrationError(f"migration directory {directory} does not exist")
    by_version: dict[int, Migration] = {}
    for path in directory.iterdir():
        if path.suffix != MIGRATION_SUFFIX or not path.is_file():
            continue
        match = MIGRATION_FILE_RE.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_description.sql")
        version = int(match["version"])
        if version in by_version:
            raise MigrationError(f"{path.name} and {by_version[version].name} share number {version}")
        data = path.read_bytes()
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"{path.name} is not UTF-8") from exc
        by_version[version] = Migration(version, path.name, sql, hashlib.sha256(data).hexdigest())
    return [by_version[version] for version in sorted(by_version)]


async def migrate(pool: asyncpg.Pool, *, schema: str, directory: Path) -> list[str]:
    """Bring ``schema`` up to the files in ``directory``; the file names applied by this call, in order.

    Safe to run concurrently from many processes and to re-run: already-applied files are skipped after
    their checksums are verified. Raises MigrationError for bad files, a failing file (earlier files stay
    applied; the failing one leaves no trace) or an edited applied file, DatabaseError when the database
    cannot be reached or the failure is transient.
    """
    quoted = quote_schema(schema)
    # Read and validate every file before touching the database.
    migrations = discover(directory)
    try:
        async with pool.acquire() as conn:
            return await _migrate_locked(conn, schema, quoted, migrations)
    except StorageError:
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise to_database_error(exc, action=f"migrate schema {schema}") from exc


async def migration_status(pool: asyncpg.Pool, *, schema: str, directory: Path) -> SchemaStatus:
    """Which of ``directory``'s files ``schema`` has applied and which are pending; changes nothing (a schema
    never migrated has every file pending). Raises MigrationError for bad files, DatabaseError as `migrate`."""
    quoted = quote_schema(schema)
    migrations = discover(directory)
    try:
        async with pool.acquire() as conn:
            table = await conn.fetchval("SELECT to_regclass($1)", f"{quoted}.{MIGRATIONS_TABLE}")
            rows = (
                []
                if table is None
                else await conn.fetch(
                    f"SELECT version, name, applied_at FROM {quoted}.{MIGRATIONS_TABLE} ORDER BY version"
                )
            )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise to_database_error(exc, action=f"read the migrations of schema {schema}") from exc
    applied = {row["version"] for row in rows}
    return SchemaStatus(
        schema=schema,
        applied=[(row["name"], row["applied_at"]) for row in rows],
        pending=[m.name for m in migrations if m.version not in applied],
    )


def _lock_key(schema: str) -> int:
    # pg_advisory_lock takes a signed 64-bit key; the namespace keeps it apart from services' own locks.
    digest = hashlib.sha256((MIGRATION_LOCK_NAMESPACE + schema).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _migrate_locked(conn: asyncpg.Connection, schema: str, quoted: str, migrations: list[Migration]) -> list[str]:
    key = _lock_key(schema)
    # A session lock (not a transaction lock) because it must cover several transactions, including the
    # CREATE SCHEMA/TABLE IF NOT EXISTS below, which race with a unique violation when run concurrently.
    # Should we die holding it, the server drops it with the session; should the unlock below fail, the
    # connection is terminated rather than returned to the pool still holding the lock.
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.{MIGRATIONS_TABLE} ("
            " version bigint PRIMARY KEY,"
            " name text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch(f"SELECT version, name, checksum FROM {quoted}.{MIGRATIONS_TABLE}")
        applied = {row["version"]: (row["name"], row["checksum"]) for row in rows}
        pending = _pending(schema, migrations, applied)
        done: list[str] = []
        for migration in pending:
            await _apply(conn, schema, quoted, migration)
            done.append(migration.name)
        log.info("migrations.finished", schema=schema, applied=done, known=len(migrations))
        return done
    finally:
        if not conn.is_closed():
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
            except BaseException:
                conn.terminate()
                raise


def _pending(schema: str, migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> list[Migration]:
    """The migrations still to apply, after checking the recorded history against the files."""
    by_version = {migration.version: migration for migration in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            # A newer release applied it and this one is older (a rollback): its code must cope with the
            # newer schema, which is why migrations stay backwards compatible. Not an error.
            log.warning("migrations.unknown_applied", schema=schema, version=version, migration=name)
        elif migration.name != name:
            raise MigrationError(f"{schema}: migration {version} was applied as {name}, file is now {migration.name}")
        elif migration.checksum != checksum:
            raise MigrationError(
                f"{schema}: {name} was edited after it was applied (sha256 {checksum[:12]}… recorded, "
                f"{migration.checksum[:12]}… on disk); add a new migration instead"
            )
    pending = [migration for migration in migrations if migration.version not in applied]
    # Refuse to slot a file in below the newest applied one: every database must see the same order.
    latest = max(applied, default=None)
    if pending and latest is not None and pending[0].version < latest:
        raise MigrationError(
            f"{schema}: {pending[0].name} is numbered below the already-applied migration {latest}; "
            "renumber it after the latest"
        )
    return pending


async def _apply(conn: asyncpg.Connection, schema: str, quoted: str, migration: Migration) -> None:
    started = time.perf_counter()
    try:
        async with conn.transaction():
            # is_local=true: the setting ends with the transaction, leaving the pooled connection as it was.
            await conn.execute("SELECT set_config('search_path', $1, true)", quoted)
            # No arguments: asyncpg then uses the simple query protocol, which accepts many statements.
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {quoted}.{MIGRATIONS_TABLE} (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        if is_retryable(exc):
            raise to_database_error(exc, action=f"apply {schema}/{migration.name}") from exc
        raise MigrationError(f"{schema}: {migration.name} failed: {type(exc).__name__}: {exc}") from exc
    log.info(
        "migration.applied",
        schema=schema,
        migration=migration.name,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
