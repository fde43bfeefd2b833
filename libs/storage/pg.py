"""PostgreSQL connection pools for services: one call gives an asyncpg pool that speaks JSONB as Python
objects, is confined to the service's schema, and reports failures as libs.storage errors."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

from libs.storage.constants import CONNECT_TIMEOUT_S, JSONB_BINARY_VERSION, SCHEMA_NAME_RE
from libs.storage.errors import to_database_error

__all__ = ["create_pool", "instrument_asyncpg", "quote_schema"]


def quote_schema(schema: str) -> str:
    """``schema`` as a quoted SQL identifier; ValueError unless it is a plain lowercase identifier."""
    if not SCHEMA_NAME_RE.fullmatch(schema):
        raise ValueError(f"schema name must match {SCHEMA_NAME_RE.pattern!r}, got {schema!r}")
    return f'"{schema}"'


def _encode_jsonb(value: Any) -> bytes:
    return JSONB_BINARY_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    # Skip the format-version byte without copying the payload.
    return orjson.loads(memoryview(data)[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


async def _light_reset(connection: asyncpg.Connection) -> None:
    """What a released connection needs here: no transaction left open.

    asyncpg's default reset sends `RESET ALL; CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all()` on
    every release — a round trip per use (~10 % of the router's CPU under load). Our code never leaves
    session state behind: settings are per transaction (`set_config(..., true)`), and the migrator
    unlocks its advisory lock itself.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, schema: str | None = None) -> asyncpg.Pool:
    """An open asyncpg pool on ``dsn``.

    Every connection exchanges JSONB values as Python objects (orjson: dicts, lists, str, int, float,
    bool, None, plus datetime/UUID on the way in; ``Decimal`` is refused — store money in NUMERIC).
    With ``schema`` the connections' search_path is that schema alone, so unqualified names resolve
    there and an unqualified CREATE fails rather than landing in ``public`` when the schema is missing.
    ``min_size`` connections are opened now, so an unreachable server raises DatabaseError here.
    """
    server_settings = {"search_path": quote_schema(schema)} if schema is not None else None
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_light_reset,
            server_settings=server_settings,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise to_database_error(exc, action="connect") from exc
    return pool


def instrument_asyncpg() -> None:
    """Emit an OpenTelemetry span for every asyncpg query from now on; calling again does nothing.

    The instrumentor patches asyncpg's classes, so pools created before the call are covered too.
    """
    # AsyncPGInstrumentor is a process-wide singleton that tracks whether it has patched asyncpg;
    # asking it (rather than keeping our own flag) stays correct if someone uninstruments it.
    # Its __init__ lacks a return annotation upstream, hence the ignore.
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
