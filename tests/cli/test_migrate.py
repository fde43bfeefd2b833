"""`ho migrate`: every service schema migrated on a fresh PostgreSQL database, `--status` before and after."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from libs.storage.migrate_all import default_services_dir, plan
from libs.storage.migrator import discover
from tests.cli.conftest import ho

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_database(postgres_dsn: str) -> AsyncIterator[str]:
    """The DSN of a database created for this test (dropped after it)."""
    name = f"ho_cli_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield urlunsplit(urlsplit(postgres_dsn)._replace(path=f"/{name}"))
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def expected() -> dict[str, list[str]]:
    return {p.schema: [m.name for m in discover(p.directory)] for p in plan(default_services_dir())}


def table(out: str, schemas: list[str]) -> list[list[str]]:
    """The status table's rows (in-process, structlog's default output shares stdout: skipped)."""
    return [line.split() for line in out.splitlines() if line.split(" ", 1)[0] in schemas]


def summary(out: str, schemas: list[str]) -> list[str]:
    """The `<schema>: ...` lines of `ho migrate`."""
    return [line for line in out.splitlines() if line.split(":", 1)[0] in schemas]


class TestMigrate:
    async def test_status_migrate_status(
        self, fresh_database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """All pending at first; `migrate` applies each schema's files; then all applied; a rerun changes nothing."""
        monkeypatch.setenv("DATABASE_URL", fresh_database)
        files = expected()
        assert {"router", "of_sender", "cost_tracker"} <= set(files)

        before = await asyncio.to_thread(ho, capsys, "migrate", "--status")
        assert before.code == 0
        assert sorted((row[0], row[1], row[2]) for row in table(before.out, list(files))) == sorted(
            (schema, name, "pending") for schema, names in files.items() for name in names
        )

        applied = await asyncio.to_thread(ho, capsys, "migrate")
        assert applied.code == 0, applied
        for schema, names in files.items():
            assert f"{schema}: applied {', '.join(names)}" in summary(applied.out, list(files))
        conn = await asyncpg.connect(fresh_database)
        try:
            assert await conn.fetchval("SELECT count(*) FROM router.schema_migrations") == len(files["router"])
        finally:
            await conn.close()

        after = await asyncio.to_thread(ho, capsys, "migrate", "--status")
        rows = table(after.out, list(files))
        assert {row[2] for row in rows} == {"applied"} and len(rows) == sum(map(len, files.values()))

        again = await asyncio.to_thread(ho, capsys, "migrate")
        assert summary(again.out, list(files)) == [f"{schema}: up to date" for schema in files]

    def test_without_a_database(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """No DATABASE_URL and no --dsn: one line naming DATABASE_URL, exit 2."""
        monkeypatch.delenv("DATABASE_URL", raising=False)
        ran = ho(capsys, "migrate", "--status")
        assert (ran.code, ran.err) == (2, "ho: DATABASE_URL: required (or --dsn), not set\n")

    def test_unreachable_database_is_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A server that does not answer: exit 1 with one line, the DSN's password masked."""
        ran = ho(capsys, "migrate", "--dsn", "postgresql://ho:pw-value-123@127.0.0.1:1/ho")
        assert ran.code == 1 and ran.err.startswith("ho: migrate: ") and len(ran.err.splitlines()) == 1
        assert "pw-value-123" not in ran.err
