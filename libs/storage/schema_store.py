"""The PostgreSQL plumbing every service store shares: its own schema, a pool, migrations at start, and
driver errors translated into DatabaseError at the boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import asyncpg

from libs.storage.errors import to_database_error
from libs.storage.migrator import migrate
from libs.storage.pg import create_pool

DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class SchemaStore:
    """Base of a service's PostgreSQL store. Subclasses name their SCHEMA and MIGRATIONS folder."""

    SCHEMA: ClassVar[str]
    MIGRATIONS: ClassVar[Path]

    def __init__(self, dsn: str, *, pool_size: int = 10, schema: str | None = None) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._schema = schema or self.SCHEMA
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        """Open the pool and apply pending migrations (idempotent, under an advisory lock)."""
        self._pool = await create_pool(self._dsn, min_size=1, max_size=self._pool_size, schema=self._schema)
        await migrate(self._pool, schema=self._schema, directory=self.MIGRATIONS)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a driver failure during `action` becomes DatabaseError."""
        if self._pool is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except DRIVER_ERRORS as exc:
            raise to_database_error(exc, action=action) from exc

    async def ping(self) -> None:
        async with self._connection("ping") as conn:
            await conn.fetchval("SELECT 1")
