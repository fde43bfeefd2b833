"""The flag client: caches the flags, follows changes made anywhere within moments, survives Redis going away."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from libs.flags import (
    FlagClient,
    Flags,
    FlagSettings,
    FlagsUnavailable,
    FlagUpdate,
    MemoryFlagStore,
    RedisFlagStore,
    open_flag_client,
)
from libs.flags.redis_store import redis_client
from tests.flags.conftest import RedisProxy

ENV_DEFAULTS = Flags(rollout_percentage=30, allow_list=("tester",))
OFF = FlagUpdate(hybrid_orchestrator_enabled=False)
AT = datetime(2026, 3, 4, tzinfo=UTC)


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> float:
    """Seconds until `condition()` holds (fails after `timeout`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@pytest.fixture
async def clients() -> AsyncIterator[list[FlagClient]]:
    """Clients a test started; stopped afterwards."""
    started: list[FlagClient] = []
    yield started
    for client in started:
        await client.stop()


async def start(clients: list[FlagClient], store: object, **kwargs: object) -> FlagClient:
    assert isinstance(store, MemoryFlagStore | RedisFlagStore)
    client = FlagClient(store, ENV_DEFAULTS, **kwargs)  # type: ignore[arg-type]
    await client.start()
    clients.append(client)
    return client


def redis_store(url: str, key: str) -> RedisFlagStore:
    return RedisFlagStore(redis_client(url), key=key)


class TestCache:
    async def test_an_empty_store_means_the_environment_defaults(self, clients: list[FlagClient]) -> None:
        """Nothing stored yet: the defaults apply, at version 0."""
        client = await start(clients, MemoryFlagStore())
        assert (client.flags, client.state.version, client.stale) == (ENV_DEFAULTS, 0, False)
        assert client.admits("tester")

    async def test_stored_flags_apply_from_the_start(self, clients: list[FlagClient]) -> None:
        """Flags written before the client started apply as soon as start() returns."""
        store = MemoryFlagStore()
        await store.write(OFF.encoded(), updated_at=AT, updated_by="admin")
        client = await start(clients, store)
        assert not client.flags.hybrid_orchestrator_enabled
        assert client.flags.rollout_percentage == ENV_DEFAULTS.rollout_percentage  # not stored: default
        assert not client.admits("tester")

    async def test_an_update_applies_here_before_it_returns(self, clients: list[FlagClient]) -> None:
        """The writer's own replica applies its change at once, with the new version and author."""
        client = await start(clients, MemoryFlagStore(), refresh_s=60, watch=False)
        state = await client.update(FlagUpdate(rollout_percentage=0), updated_by="admin-1")
        assert client.state == state
        assert (state.version, state.updated_by, state.flags.rollout_percentage) == (1, "admin-1", 0)
        assert client.admits("tester") and not client.admits("someone-else")

    async def test_a_stale_read_never_undoes_our_own_write(self, clients: list[FlagClient]) -> None:
        """Refreshes racing with updates always end on the last written version."""
        client = await start(clients, MemoryFlagStore(), refresh_s=0.001)
        for percentage in range(1, 30):
            await asyncio.gather(
                client.refresh(), client.update(FlagUpdate(rollout_percentage=percentage), updated_by="a")
            )
            assert client.flags.rollout_percentage == percentage

    async def test_a_given_store_is_left_open(self, redis_url: str, flag_key: str) -> None:
        """open_flag_client(store=...) does not close the store on stop (its owner does); its own one it does."""
        store = redis_store(redis_url, flag_key)
        client = open_flag_client(FlagSettings(redis_url=redis_url), store=store)
        await client.start()
        await client.stop()
        assert await store.read() == {}
        await store.close()
        own = open_flag_client(FlagSettings(redis_url=redis_url, flags_key=flag_key))
        assert isinstance(own.store, RedisFlagStore) and own.store.key == flag_key
        assert isinstance(open_flag_client(FlagSettings(redis_url=None)).store, MemoryFlagStore)


class StubbornStore(MemoryFlagStore):
    """A store whose watch swallows the first cancel, as asyncio.wait_for can on Python 3.11."""

    async def watch(self, wake: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # the swallowed cancel
            await super().watch(wake)
        await super().watch(wake)


class TestStop:
    async def test_stop_ends_a_task_that_swallowed_its_cancel(self) -> None:
        """stop() cancels again until every background task has ended."""
        client = FlagClient(StubbornStore(), ENV_DEFAULTS)
        await client.start()
        await asyncio.sleep(0.01)
        tasks = list(client._tasks)
        await asyncio.wait_for(client.stop(), 2)
        assert all(task.done() for task in tasks)


class TestPropagation:
    async def test_a_change_reaches_another_replica_at_once_through_pubsub(
        self, clients: list[FlagClient], redis_url: str, flag_key: str
    ) -> None:
        """With a 60 s refresh, only the pub/sub announcement can bring the change over: it does, in < 1 s."""
        writer = await start(clients, redis_store(redis_url, flag_key), refresh_s=60)
        reader = await start(clients, redis_store(redis_url, flag_key), refresh_s=60)
        await writer.update(OFF, updated_by="admin")
        elapsed = await eventually(lambda: not reader.flags.hybrid_orchestrator_enabled, timeout=1.0)
        assert reader.state == writer.state
        print(f"pub/sub propagation: {elapsed * 1000:.1f} ms")

    async def test_without_pubsub_the_periodic_refresh_brings_the_change(
        self, clients: list[FlagClient], redis_url: str, flag_key: str
    ) -> None:
        """No announcement: the change still lands within about one refresh period (0.3 s here), not 60 s."""
        writer = await start(clients, redis_store(redis_url, flag_key), refresh_s=60, watch=False)
        reader = await start(clients, redis_store(redis_url, flag_key), refresh_s=0.3, watch=False)
        await asyncio.sleep(0.05)
        await writer.update(OFF, updated_by="admin")
        elapsed = await eventually(lambda: not reader.flags.hybrid_orchestrator_enabled, timeout=0.3 + 0.7)
        print(f"refresh-only propagation: {elapsed * 1000:.1f} ms")

    async def test_in_memory_clients_sharing_a_store_follow_each_other(self, clients: list[FlagClient]) -> None:
        """Two clients on one MemoryFlagStore (the embedded mode) see each other's changes at once."""
        store = MemoryFlagStore()
        writer = await start(clients, store, refresh_s=60)
        reader = await start(clients, store, refresh_s=60)
        await writer.update(FlagUpdate(allow_list=("x",)), updated_by="admin")
        await eventually(lambda: reader.flags.allow_list == ("x",), timeout=0.5)

    async def test_background_reads_are_not_traced(
        self, clients: list[FlagClient], redis_url: str, flag_key: str, spans: InMemorySpanExporter, redis_traced: None
    ) -> None:
        """Re-reading every FLAGS_REFRESH_S on every replica creates no spans (no one's request)."""
        client = await start(clients, redis_store(redis_url, flag_key), refresh_s=0.02)
        raw = aioredis.Redis.from_url(redis_url)
        request = trace.get_tracer("test")
        with request.start_as_current_span("GET /flags"):
            await raw.ping()  # an instrumented call outside the client, so the test can fail
        await raw.aclose()
        traced = len(spans.get_finished_spans())
        await asyncio.sleep(0.3)
        with request.start_as_current_span("GET /flags"):
            await client.refresh()  # the explicit read (an admin's GET) is part of a request: traced
        names = [span.name for span in spans.get_finished_spans()[traced:]]
        assert traced >= 1
        assert names == ["HGETALL", "GET /flags"]


@pytest.fixture
def redis_traced() -> Iterator[None]:
    """redis-py instrumented (as the runtime does), and put back as it was afterwards."""
    instrumentor = RedisInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if not already:
        instrumentor.instrument()
    yield
    if not already:
        instrumentor.uninstrument()


class TestRedisDown:
    async def test_the_last_known_flags_stay_while_redis_is_down(
        self, clients: list[FlagClient], redis_proxy: RedisProxy, redis_url: str, flag_key: str
    ) -> None:
        """Redis unreachable: the flags read last stay in force (not the defaults), logged once; then a change
        made meanwhile applies once Redis is back."""
        admin = redis_store(redis_url, flag_key)
        await admin.write(OFF.encoded(), updated_at=AT, updated_by="admin")
        client = await start(clients, redis_store(redis_proxy.url, flag_key), refresh_s=0.05)
        assert not client.flags.hybrid_orchestrator_enabled
        with capture_logs() as logs:
            await redis_proxy.cut()
            await eventually(lambda: client.stale)
            await asyncio.sleep(0.5)  # several failed refreshes
            assert not client.flags.hybrid_orchestrator_enabled and client.state.version == 1
            with pytest.raises(FlagsUnavailable):
                await client.refresh()
            await admin.write(FlagUpdate(hybrid_orchestrator_enabled=True).encoded(), updated_at=AT, updated_by="a")
            await redis_proxy.start()
            await eventually(lambda: client.flags.hybrid_orchestrator_enabled, timeout=5)
        events = [entry["event"] for entry in logs]
        assert events.count("flags.store.failed") == 1
        assert "flags.store.recovered" in events
        assert (client.stale, client.state.version) == (False, 2)
        await admin.close()

    async def test_a_write_while_redis_is_down_fails_and_changes_nothing(
        self, clients: list[FlagClient], redis_proxy: RedisProxy, flag_key: str
    ) -> None:
        """update() raises FlagsUnavailable and the flags in force stay as they were."""
        client = await start(clients, redis_store(redis_proxy.url, flag_key), refresh_s=60, watch=False)
        await redis_proxy.cut()
        with pytest.raises(FlagsUnavailable):
            await client.update(OFF, updated_by="admin")
        assert client.flags == ENV_DEFAULTS

    async def test_starting_without_redis_applies_the_environment_defaults(
        self, clients: list[FlagClient], redis_proxy: RedisProxy, redis_url: str, flag_key: str
    ) -> None:
        """A replica starting while Redis is down serves with its defaults, then takes the stored flags."""
        admin = redis_store(redis_url, flag_key)
        await admin.write(OFF.encoded(), updated_at=AT, updated_by="admin")
        await redis_proxy.cut()
        with capture_logs() as logs:
            client = await start(clients, redis_store(redis_proxy.url, flag_key), refresh_s=0.05)
        assert client.flags == ENV_DEFAULTS and client.stale
        assert "flags.start.defaults" in [entry["event"] for entry in logs]
        await redis_proxy.start()
        await eventually(lambda: not client.flags.hybrid_orchestrator_enabled, timeout=5)
        await admin.close()

    async def test_an_invalid_stored_value_keeps_the_last_known_flags(
        self, clients: list[FlagClient], redis_url: str, flag_key: str, raw_redis: aioredis.Redis
    ) -> None:
        """A hand-written bad kill switch is not guessed: the flags read last stay, and the client says so."""
        client = await start(clients, redis_store(redis_url, flag_key), refresh_s=0.05)
        await client.update(FlagUpdate(rollout_percentage=10), updated_by="admin")
        await raw_redis.hset(flag_key, "hybrid_orchestrator_enabled", "maybe")
        await eventually(lambda: client.stale)
        assert client.flags.hybrid_orchestrator_enabled and client.flags.rollout_percentage == 10
        await raw_redis.hset(flag_key, "hybrid_orchestrator_enabled", "false")
        await eventually(lambda: not client.flags.hybrid_orchestrator_enabled)
        assert not client.stale
