"""`python -m libs.storage.migrate_all`, the one-shot migration step of compose, the Kubernetes Job and the
ECS task: discovery by path, one schema per service package, every schema attempted, exit statuses — run
as a process against a real PostgreSQL."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from libs.storage.migrate_all import default_services_dir, plan
from tests.deploy.support import REPO_ROOT
from tests.fixtures.commands import run_module

MIGRATE_ALL = "libs.storage.migrate_all"


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for inspecting what the command did."""
    conn = await asyncpg.connect(postgres_dsn)
    yield conn
    await conn.close()


def service_tree(root: Path, packages: dict[str, dict[str, str]]) -> Path:
    """A services folder: {package: {file name: SQL}}; a package given no files has no migrations folder."""
    for package, files in packages.items():
        (root / package).mkdir(parents=True)
        if files:
            (root / package / "migrations").mkdir()
        for name, sql in files.items():
            (root / package / "migrations" / name).write_text(sql)
    return root


async def applied(admin: asyncpg.Connection, schema: str) -> list[str]:
    rows = await admin.fetch(f'SELECT name FROM "{schema}".schema_migrations ORDER BY version')
    return [row["name"] for row in rows]


class TestPlan:
    def test_default_is_the_repositorys_services_folder(self) -> None:
        """Without --services-dir the command looks beside libs/, which is this repository's services/."""
        assert default_services_dir() == REPO_ROOT / "services"

    def test_each_schema_is_the_one_its_service_uses(self) -> None:
        """For every service with migrations, the schema migrate_all picks is the service's own DB_SCHEMA."""
        plans = plan(default_services_dir())
        assert "router" in [p.schema for p in plans]
        for item in plans:
            constants = importlib.import_module(f"services.{item.directory.parent.name}.constants")
            assert getattr(constants, "DB_SCHEMA", item.schema) == item.schema

    def test_packages_without_migrations_are_skipped(self, tmp_path: Path) -> None:
        """Only packages holding a migrations folder are planned, ordered by name."""
        root = service_tree(tmp_path, {"zeta": {"001_a.sql": "SELECT 1"}, "alpha": {"001_a.sql": "SELECT 1"}})
        (root / "gamma").mkdir()
        (root / "notes.txt").write_text("not a package")
        assert [p.schema for p in plan(root)] == ["alpha", "zeta"]

    def test_a_package_name_that_cannot_be_a_schema_is_refused(self, tmp_path: Path) -> None:
        """A migrations folder under a name that is not a plain identifier raises ValueError."""
        root = service_tree(tmp_path, {"Bad-Name": {"001_a.sql": "SELECT 1"}})
        with pytest.raises(ValueError, match="schema name"):
            plan(root)


@pytest.mark.integration
class TestMigrateAllCommand:
    async def test_migrates_every_schema_and_is_idempotent(
        self, postgres_dsn: str, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """Every package's files land in its own schema; a second run applies nothing and still exits 0."""
        alpha, beta = f"{pg_schema}_alpha", f"{pg_schema}_beta"
        root = service_tree(
            tmp_path,
            {
                alpha: {"001_t.sql": "CREATE TABLE t (id int);", "002_u.sql": "CREATE TABLE u (id int);"},
                beta: {"001_v.sql": "CREATE TABLE v (id int);"},
                f"{pg_schema}_gamma": {},
            },
        )
        code, output = await run_module(MIGRATE_ALL, "--dsn", postgres_dsn, "--services-dir", str(root))
        assert code == 0, output
        assert "RuntimeWarning" not in output
        assert await applied(admin, alpha) == ["001_t.sql", "002_u.sql"]
        assert await applied(admin, beta) == ["001_v.sql"]
        assert await admin.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", f"{pg_schema}_gamma") == 0

        code, output = await run_module(MIGRATE_ALL, "--dsn", postgres_dsn, "--services-dir", str(root))
        assert code == 0, output
        assert await applied(admin, alpha) == ["001_t.sql", "002_u.sql"]

    async def test_one_failing_schema_does_not_stop_the_others(
        self, postgres_dsn: str, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """A failing file exits 1 and is named in the log; the other schemas are still brought up to date."""
        alpha, beta = f"{pg_schema}_alpha", f"{pg_schema}_beta"
        root = service_tree(
            tmp_path,
            {alpha: {"001_bad.sql": "SELECT * FROM no_such_table;"}, beta: {"001_v.sql": "CREATE TABLE v (id int);"}},
        )
        code, output = await run_module(MIGRATE_ALL, "--dsn", postgres_dsn, "--services-dir", str(root))
        assert code == 1, output
        assert "001_bad.sql failed" in output
        assert await applied(admin, beta) == ["001_v.sql"]

    async def test_unreachable_database_exits_1(self, tmp_path: Path) -> None:
        """A database that cannot be reached is a failure (1), reported in the log, not a traceback."""
        root = service_tree(tmp_path, {"alpha": {"001_t.sql": "SELECT 1"}})
        code, output = await run_module(
            "libs.storage.migrate_all", "--dsn", "postgresql://postgres@127.0.0.1:1/none", "--services-dir", str(root)
        )
        assert code == 1, output
        assert "migrations.failed" in output
        assert "Traceback" not in output

    async def test_list_and_bad_arguments(self, tmp_path: Path) -> None:
        """--list prints the plan without a database; a missing DSN or services folder exits 2."""
        root = service_tree(tmp_path, {"alpha": {"001_t.sql": "SELECT 1"}})
        code, output = await run_module(MIGRATE_ALL, "--list", "--services-dir", str(root))
        assert code == 0, output
        assert output.strip() == f"alpha\t{root / 'alpha' / 'migrations'}"

        code, output = await run_module(MIGRATE_ALL, "--dsn", "", "--services-dir", str(root))
        assert code == 2, output
        code, output = await run_module(
            "libs.storage.migrate_all", "--dsn", "postgresql://x", "--services-dir", str(tmp_path / "missing")
        )
        assert code == 2, output
