"""Integration tests for libs.storage against a real PostgreSQL: pools, JSONB codec, schema confinement,
error translation and concurrent, idempotent migrations."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

from libs.storage import (
    DatabaseError,
    MigrationError,
    create_pool,
    discover,
    instrument_asyncpg,
    migrate,
    quote_schema,
    to_database_error,
)
from tests.fixtures.commands import run_module

pytestmark = pytest.mark.integration

MIGRATIONS_MODULE = "libs.storage.migrations"

# Three files whose numeric order (1, 2, 10) differs from their lexical order (1, 10, 2). The first one
# creates the log table without IF NOT EXISTS, so running it twice fails loudly.
ORDERED_FILES = {
    "1_create_log.sql": (
        "CREATE TABLE applied_log (id serial PRIMARY KEY, name text NOT NULL);\n"
        "INSERT INTO applied_log (name) VALUES ('1_create_log');\n"
    ),
    "2_add_items.sql": (
        "CREATE TABLE items (id int PRIMARY KEY, doc jsonb NOT NULL);\n"
        "INSERT INTO applied_log (name) VALUES ('2_add_items');\n"
    ),
    "10_seed_items.sql": (
        "INSERT INTO items VALUES (1, '{\"a\": 1}');\nINSERT INTO applied_log (name) VALUES ('10_seed_items');\n"
    ),
}
ORDERED_NAMES = ["1_create_log.sql", "2_add_items.sql", "10_seed_items.sql"]


def write_files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def with_port(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=host))


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection (no codecs, default search_path) for inspecting what the code did."""
    conn = await asyncpg.connect(postgres_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def pool(postgres_dsn: str, pg_schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool without schema confinement; a single connection, so every acquire reuses it."""
    pool = await create_pool(postgres_dsn, min_size=1, max_size=1)
    yield pool
    await pool.close()


@pytest.fixture
def uninstrument() -> Iterator[None]:
    """Leave asyncpg unpatched for the rest of the suite."""
    yield
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


class TestCreatePool:
    async def test_jsonb_round_trip(self, postgres_dsn: str, pg_schema: str, admin: asyncpg.Connection) -> None:
        """A JSONB column takes a Python object and returns an equal one, stored as JSON, not as a string."""
        await admin.execute(f"CREATE SCHEMA {pg_schema}; CREATE TABLE {pg_schema}.docs (id int, doc jsonb)")
        doc = {"text": "héllo ✓", "n": 3, "f": 1.5, "ok": True, "none": None, "list": [1, {"x": []}]}
        pool = await create_pool(postgres_dsn, schema=pg_schema)
        try:
            await pool.execute("INSERT INTO docs VALUES (1, $1), (2, $2)", doc, [1, "two"])
            assert await pool.fetchval("SELECT doc FROM docs WHERE id = 1") == doc
            assert await pool.fetchval("SELECT doc FROM docs WHERE id = 2") == [1, "two"]
            assert await pool.fetchval("SELECT doc -> 'list' -> 1 FROM docs WHERE id = 1") == {"x": []}
        finally:
            await pool.close()
        # Seen without our codec: real JSON structure on the server side.
        assert await admin.fetchval(f"SELECT jsonb_typeof(doc) FROM {pg_schema}.docs WHERE id = 1") == "object"
        assert await admin.fetchval(f"SELECT doc ->> 'text' FROM {pg_schema}.docs WHERE id = 1") == "héllo ✓"

    async def test_search_path_isolation(self, postgres_dsn: str, pg_schema: str, admin: asyncpg.Connection) -> None:
        """Pools on different schemas resolve the same unqualified table name to their own schema."""
        first, second = pg_schema, f"{pg_schema}_b"
        await admin.execute(f"CREATE SCHEMA {first}; CREATE SCHEMA {second}")
        pools = {name: await create_pool(postgres_dsn, max_size=1, schema=name) for name in (first, second)}
        try:
            for name, pool in pools.items():
                await pool.execute("CREATE TABLE things (owner text)")
                await pool.execute("INSERT INTO things VALUES ($1)", name)
            for name, pool in pools.items():
                # Several acquires of the single connection: the pool's reset on release keeps the schema.
                for _ in range(3):
                    async with pool.acquire() as conn:
                        assert await conn.fetchval("SELECT current_schema()") == name
                        assert await conn.fetch("SELECT owner FROM things") == [(name,)]
        finally:
            for pool in pools.values():
                await pool.close()
        assert await admin.fetchval(f"SELECT owner FROM {second}.things") == second

    async def test_missing_schema_refuses_unqualified_create(self, postgres_dsn: str, pg_schema: str) -> None:
        """With its schema missing, an unqualified CREATE fails instead of silently landing in public."""
        pool = await create_pool(postgres_dsn, schema=pg_schema)
        try:
            with pytest.raises(asyncpg.InvalidSchemaNameError):
                await pool.execute(f"CREATE TABLE {pg_schema}_stray (id int)")
        finally:
            await pool.close()

    async def test_unreachable_server_raises_retryable_database_error(self, postgres_dsn: str) -> None:
        """A refused connection becomes a retryable DatabaseError caused by the socket error."""
        with pytest.raises(DatabaseError) as caught:
            await create_pool(with_port(postgres_dsn, closed_port()))
        assert caught.value.retryable is True
        assert isinstance(caught.value.__cause__, OSError)

    async def test_missing_database_is_not_retryable(self, postgres_dsn: str) -> None:
        """A server error that retrying cannot fix becomes a non-retryable DatabaseError with its SQLSTATE."""
        with pytest.raises(DatabaseError) as caught:
            await create_pool(with_database(postgres_dsn, "no_such_database_for_storage_tests"))
        assert caught.value.retryable is False
        assert caught.value.sqlstate == "3D000"

    def test_schema_names_are_plain_identifiers(self) -> None:
        """Schema names that would need quoting or could inject SQL are refused."""
        assert quote_schema("router_v2") == '"router_v2"'
        for bad in ['x"; DROP SCHEMA public; --', "Router", "1abc", "", "a" * 64]:
            with pytest.raises(ValueError):
                quote_schema(bad)

    async def test_instrument_asyncpg_is_idempotent(
        self, pool: asyncpg.Pool, uninstrument: None, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A second call neither re-patches nor warns, and queries keep working through the patch."""
        instrument_asyncpg()
        with caplog.at_level(logging.WARNING):
            instrument_asyncpg()
        assert not [r for r in caplog.records if "instrument" in r.getMessage()]
        assert AsyncPGInstrumentor().is_instrumented_by_opentelemetry  # type: ignore[no-untyped-call]
        assert hasattr(asyncpg.connection.Connection.fetchval, "__wrapped__")
        assert await pool.fetchval("SELECT $1::jsonb", {"k": 1}) == {"k": 1}


class TestErrorTranslation:
    async def test_constraint_violation_is_not_retryable(self, admin: asyncpg.Connection) -> None:
        """A unique violation keeps its SQLSTATE and is marked non-retryable."""
        await admin.execute("CREATE TEMP TABLE uniq (id int PRIMARY KEY); INSERT INTO uniq VALUES (1)")
        with pytest.raises(asyncpg.UniqueViolationError) as caught:
            await admin.execute("INSERT INTO uniq VALUES (1)")
        error = to_database_error(caught.value, action="insert")
        assert (error.retryable, error.sqlstate) == (False, "23505")

    @pytest.mark.parametrize(
        ("statement", "args", "sqlstate"),
        [
            ("SELECT $1::jsonb", [{"text": "a\x00b"}], "22P05"),  # jsonb refuses \u0000
            ("SELECT $1::text", ["a\x00b"], "22021"),  # text refuses a NUL byte
            ("SELECT $1::numeric::integer", ["1e20"], "22003"),  # out of range
            ("SELECT $1::date", ["0001-01-01 BC"], None),  # a date asyncpg cannot decode
            ("SELECT $1::int", [2**70], None),  # an argument asyncpg cannot encode
        ],
    )
    async def test_refused_data_is_permanent(
        self, pool: asyncpg.Pool, statement: str, args: list[object], sqlstate: str | None
    ) -> None:
        """The database refusing the data itself (a NUL, a value out of range) translates into a permanent,
        non-retryable DatabaseError: the same data fails the same way every time."""
        with pytest.raises(Exception) as caught:
            async with pool.acquire() as conn:
                await conn.fetchval(statement, *args)
        error = to_database_error(caught.value, action="query")
        assert (error.permanent, error.retryable) == (True, False), repr(caught.value)
        if sqlstate is not None:
            assert error.sqlstate == sqlstate

    def test_transient_and_conflicting_failures_are_not_permanent(self) -> None:
        """A lost connection, a deadlock or a unique violation (possibly a race) is never marked permanent."""
        for exc in [
            asyncpg.DeadlockDetectedError("x"),
            asyncpg.UniqueViolationError("x"),
            asyncpg.exceptions.ConnectionDoesNotExistError("x"),
            TimeoutError(),
        ]:
            assert not to_database_error(exc, action="query").permanent, exc

    def test_transient_failures_are_retryable(self) -> None:
        """Serialization failures, deadlocks, lost connections and timeouts are marked retryable."""
        for exc in [
            asyncpg.SerializationError("x"),
            asyncpg.DeadlockDetectedError("x"),
            asyncpg.exceptions.ConnectionDoesNotExistError("x"),
            TimeoutError(),
        ]:
            assert to_database_error(exc, action="query").retryable, exc


class TestMigrate:
    async def test_applies_in_numeric_order(
        self, pool: asyncpg.Pool, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """Files apply in numeric order, inside the schema, and are recorded with their checksums."""
        directory = write_files(tmp_path, {**ORDERED_FILES, "README.txt": "not a migration"})
        assert await migrate(pool, schema=pg_schema, directory=directory) == ORDERED_NAMES
        assert [r["name"] for r in await admin.fetch(f"SELECT name FROM {pg_schema}.applied_log ORDER BY id")] == [
            "1_create_log",
            "2_add_items",
            "10_seed_items",
        ]
        recorded = await admin.fetch(f"SELECT version, name, checksum FROM {pg_schema}.schema_migrations ORDER BY 1")
        assert [tuple(r) for r in recorded] == [
            (int(name.split("_")[0]), name, hashlib.sha256(ORDERED_FILES[name].encode()).hexdigest())
            for name in ORDERED_NAMES
        ]
        tables = await admin.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", pg_schema
        )
        assert {r["table_name"] for r in tables} == {"applied_log", "items", "schema_migrations"}
        # The schema the files ran in does not leak into the pooled connection afterwards.
        assert await pool.fetchval("SELECT current_schema()") == "public"

    async def test_rerun_applies_only_new_files(
        self, pool: asyncpg.Pool, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """A second run applies nothing; a file added later is the only one applied by the next run."""
        directory = write_files(tmp_path, ORDERED_FILES)
        await migrate(pool, schema=pg_schema, directory=directory)
        assert await migrate(pool, schema=pg_schema, directory=directory) == []
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.applied_log") == 3
        write_files(directory, {"11_more.sql": "INSERT INTO applied_log (name) VALUES ('11_more');"})
        assert await migrate(pool, schema=pg_schema, directory=directory) == ["11_more.sql"]
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.applied_log") == 4

    async def test_concurrent_replicas_apply_each_file_once(
        self, postgres_dsn: str, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """Five replicas migrating at once on their own pools apply every file exactly once between them."""
        # The sleep keeps the first file's transaction open long enough for all five runs to collide.
        files = {
            **ORDERED_FILES,
            "1_create_log.sql": ORDERED_FILES["1_create_log.sql"] + "SELECT pg_sleep(0.3);",
        }
        directory = write_files(tmp_path, files)
        pools = [await create_pool(postgres_dsn, max_size=1) for _ in range(5)]
        try:
            results = await asyncio.gather(*(migrate(p, schema=pg_schema, directory=directory) for p in pools))
        finally:
            await asyncio.gather(*(p.close() for p in pools))
        assert sorted(name for result in results for name in result) == sorted(ORDERED_NAMES)
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.applied_log") == 3
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.schema_migrations") == 3

    async def test_edited_applied_file_is_refused(
        self, pool: asyncpg.Pool, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """Editing an applied file raises MigrationError before anything, including new files, is applied."""
        directory = write_files(tmp_path, {"1_create_log.sql": ORDERED_FILES["1_create_log.sql"]})
        await migrate(pool, schema=pg_schema, directory=directory)
        write_files(
            directory,
            {
                "1_create_log.sql": ORDERED_FILES["1_create_log.sql"] + "-- edited\n",
                "2_add_items.sql": ORDERED_FILES["2_add_items.sql"],
            },
        )
        with pytest.raises(MigrationError, match=r"1_create_log\.sql was edited"):
            await migrate(pool, schema=pg_schema, directory=directory)
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.schema_migrations") == 1
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.applied_log") == 1

    async def test_failing_file_leaves_no_trace(
        self, pool: asyncpg.Pool, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """A failing file rolls back whole and stays unrecorded, earlier ones stay; once fixed it applies."""
        broken = "CREATE TABLE half (id int);\nINSERT INTO applied_log (name) VALUES ('2');\nSELECT 1 / 0;\n"
        directory = write_files(tmp_path, {"1_create_log.sql": ORDERED_FILES["1_create_log.sql"], "2_x.sql": broken})
        with pytest.raises(MigrationError, match=r"2_x\.sql failed: DivisionByZeroError") as caught:
            await migrate(pool, schema=pg_schema, directory=directory)
        assert isinstance(caught.value.__cause__, asyncpg.DivisionByZeroError)
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.applied_log") == 1
        assert await admin.fetchval("SELECT to_regclass($1)", f"{pg_schema}.half") is None
        write_files(directory, {"2_x.sql": broken.replace("1 / 0", "1")})
        assert await migrate(pool, schema=pg_schema, directory=directory) == ["2_x.sql"]

    @pytest.mark.parametrize(
        ("files", "message"),
        [
            ({"V1__init.sql": "SELECT 1"}, "named NNN_description.sql"),
            ({"1_a.sql": "SELECT 1", "001_b.sql": "SELECT 1"}, "share number 1"),
        ],
    )
    async def test_bad_file_sets_are_refused(
        self, pool: asyncpg.Pool, pg_schema: str, tmp_path: Path, files: dict[str, str], message: str
    ) -> None:
        """Misnamed files and duplicate numbers raise MigrationError without touching the database."""
        with pytest.raises(MigrationError, match=message):
            await migrate(pool, schema=pg_schema, directory=write_files(tmp_path, files))
        assert await pool.fetchval("SELECT to_regnamespace($1)", pg_schema) is None

    async def test_out_of_order_and_renamed_files_are_refused(
        self, pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
    ) -> None:
        """A new file numbered below an applied one, or an applied file renamed, raises MigrationError."""
        directory = write_files(tmp_path, {"1_a.sql": "SELECT 1", "3_c.sql": "SELECT 3"})
        await migrate(pool, schema=pg_schema, directory=directory)
        write_files(directory, {"2_b.sql": "SELECT 2"})
        with pytest.raises(MigrationError, match="numbered below"):
            await migrate(pool, schema=pg_schema, directory=directory)
        (directory / "2_b.sql").unlink()
        (directory / "3_c.sql").rename(directory / "3_renamed.sql")
        with pytest.raises(MigrationError, match=r"applied as 3_c\.sql"):
            await migrate(pool, schema=pg_schema, directory=directory)

    async def test_missing_directory_is_refused(self, pool: asyncpg.Pool, pg_schema: str, tmp_path: Path) -> None:
        """Pointing at a directory that does not exist raises MigrationError."""
        with pytest.raises(MigrationError, match="does not exist"):
            await migrate(pool, schema=pg_schema, directory=tmp_path / "nope")

    def test_discover_orders_numerically(self, tmp_path: Path) -> None:
        """discover() orders by number, not by name, and ignores files that are not .sql."""
        directory = write_files(tmp_path, {**ORDERED_FILES, "notes.md": "x"})
        assert [m.name for m in discover(directory)] == ORDERED_NAMES


class TestMigrationCommand:
    async def test_command_migrates_and_reports_failure(
        self, postgres_dsn: str, pg_schema: str, tmp_path: Path, admin: asyncpg.Connection
    ) -> None:
        """The command exits 0 after migrating, 1 when a file fails, 2 for a bad schema name."""
        directory = write_files(tmp_path, ORDERED_FILES)
        code, output = await run_module(
            MIGRATIONS_MODULE, "--dsn", postgres_dsn, "--schema", pg_schema, "--dir", str(directory)
        )
        assert code == 0, output
        assert "RuntimeWarning" not in output
        assert await admin.fetchval(f"SELECT count(*) FROM {pg_schema}.schema_migrations") == 3

        write_files(directory, {"11_bad.sql": "SELECT * FROM no_such_table"})
        code, output = await run_module(
            MIGRATIONS_MODULE, "--dsn", postgres_dsn, "--schema", pg_schema, "--dir", str(directory)
        )
        assert code == 1, output
        assert "11_bad.sql failed" in output

        code, output = await run_module(
            MIGRATIONS_MODULE, "--dsn", postgres_dsn, "--schema", "Bad-Name", "--dir", str(directory)
        )
        assert code == 2, output
