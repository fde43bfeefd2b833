"""The flag stores: the same behaviour in memory and on a real Redis (one suite, run against both)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
import redis.asyncio as aioredis

from libs.flags import FlagStore, FlagsUnavailable, MemoryFlagStore, RedisFlagStore, VersionConflict
from libs.flags import constants as c
from libs.flags.redis_store import redis_client
from tests.flags.conftest import RedisProxy

AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_url: str, flag_key: str) -> AsyncIterator[FlagStore]:
    store: FlagStore = (
        MemoryFlagStore() if request.param == "memory" else RedisFlagStore(redis_client(redis_url), key=flag_key)
    )
    yield store
    await store.close()


async def _watching(store: FlagStore) -> tuple[asyncio.Event, asyncio.Task[None]]:
    wake = asyncio.Event()
    task = asyncio.create_task(store.watch(wake))
    # A new watch wakes once (Redis: after subscribing, to catch writes it may have missed); start after it.
    await asyncio.wait_for(wake.wait(), 2) if isinstance(store, RedisFlagStore) else await asyncio.sleep(0)
    wake.clear()
    return wake, task


class TestStore:
    async def test_a_new_store_is_empty(self, store: FlagStore) -> None:
        """Nothing written: an empty hash (the readers' defaults apply)."""
        assert await store.read() == {}

    async def test_a_write_sets_the_flags_and_the_metadata(self, store: FlagStore) -> None:
        """A write stores the values as given, version 1, when and by whom, and answers the hash."""
        answer = await store.write({"rollout_percentage": "25"}, updated_at=AT, updated_by="admin-1")
        expected = {
            "rollout_percentage": "25",
            c.VERSION_FIELD: "1",
            c.UPDATED_AT_FIELD: AT.isoformat(),
            c.UPDATED_BY_FIELD: "admin-1",
        }
        assert answer == expected
        assert await store.read() == expected

    async def test_writes_merge_and_count_versions(self, store: FlagStore) -> None:
        """A second write changes only its flags and bumps the version; the last writer is recorded."""
        await store.write({"rollout_percentage": "25", "allow_list": '["a"]'}, updated_at=AT, updated_by="admin-1")
        answer = await store.write({"rollout_percentage": "50"}, updated_at=AT, updated_by="admin-2")
        assert answer["rollout_percentage"] == "50"
        assert answer["allow_list"] == '["a"]'
        assert (answer[c.VERSION_FIELD], answer[c.UPDATED_BY_FIELD]) == ("2", "admin-2")

    async def test_the_expected_version_guards_a_write(self, store: FlagStore) -> None:
        """A write expecting a version the store moved past is refused, and changes nothing."""
        await store.write({"rollout_percentage": "10"}, updated_at=AT, updated_by="a", expected_version=0)
        with pytest.raises(VersionConflict) as caught:
            await store.write({"rollout_percentage": "99"}, updated_at=AT, updated_by="b", expected_version=0)
        assert (caught.value.expected, caught.value.current) == (0, 1)
        stored = await store.read()
        assert (stored["rollout_percentage"], stored[c.VERSION_FIELD]) == ("10", "1")
        await store.write({"rollout_percentage": "20"}, updated_at=AT, updated_by="b", expected_version=1)

    async def test_concurrent_guarded_writes_let_exactly_one_through(self, store: FlagStore) -> None:
        """Ten admins writing at version 0 at once: one wins, nine get a conflict."""
        results = await asyncio.gather(
            *(
                store.write({"rollout_percentage": str(i)}, updated_at=AT, updated_by=f"a{i}", expected_version=0)
                for i in range(10)
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(r, dict) for r in results) == 1
        assert sum(isinstance(r, VersionConflict) for r in results) == 9

    async def test_a_write_wakes_every_watcher(self, store: FlagStore) -> None:
        """Every watch started on the store is woken by a write."""
        watches = [await _watching(store) for _ in range(2)]
        try:
            await store.write({"hybrid_orchestrator_enabled": "false"}, updated_at=AT, updated_by="a")
            await asyncio.wait_for(asyncio.gather(*(wake.wait() for wake, _ in watches)), 2)
        finally:
            for _, task in watches:
                task.cancel()
            await asyncio.gather(*(task for _, task in watches), return_exceptions=True)


class TestRedisStore:
    async def test_the_hash_holds_json_values_and_a_version(
        self, redis_store: RedisFlagStore, raw_redis: aioredis.Redis, flag_key: str
    ) -> None:
        """Redis holds one hash at FLAGS_KEY: flag name → JSON, plus @version/@updated_at/@updated_by."""
        await redis_store.write({"allow_list": orjson.dumps(["a", "b"]).decode()}, updated_at=AT, updated_by="x")
        assert await raw_redis.hgetall(flag_key) == {
            "allow_list": '["a","b"]',
            "@version": "1",
            "@updated_at": AT.isoformat(),
            "@updated_by": "x",
        }

    async def test_a_write_is_announced_on_the_channel(
        self, redis_store: RedisFlagStore, raw_redis: aioredis.Redis, flag_key: str
    ) -> None:
        """Each write publishes its new version on FLAGS_KEY + ":changed"."""
        pubsub = raw_redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(f"{flag_key}:changed")
        try:
            await redis_store.write({"rollout_percentage": "5"}, updated_at=AT, updated_by="x")
            message = None
            for _ in range(20):  # the subscribe confirmation comes first (and reads as None)
                message = await pubsub.get_message(timeout=0.1)
                if message is not None:
                    break
            assert message is not None and message["data"] == "1"
        finally:
            await pubsub.aclose()

    async def test_a_watch_resubscribes_after_losing_redis(
        self, redis_proxy: RedisProxy, redis_store: RedisFlagStore, flag_key: str
    ) -> None:
        """A watch whose connection drops subscribes again once Redis is back, and wakes for the next write."""
        watched = RedisFlagStore(redis_client(redis_proxy.url), key=flag_key)
        wake, task = await _watching(watched)
        try:
            await redis_proxy.cut()
            await asyncio.sleep(0.3)
            await redis_proxy.start()
            await asyncio.wait_for(wake.wait(), 5)  # resubscribed: wakes to re-read what it may have missed
            wake.clear()
            await redis_store.write({"rollout_percentage": "7"}, updated_at=AT, updated_by="x")
            await asyncio.wait_for(wake.wait(), 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await watched.close()

    async def test_unreachable_redis_raises_flags_unavailable(self, flag_key: str) -> None:
        """Nothing listening: reads and writes raise FlagsUnavailable (wrapping the redis error), quickly."""
        store = RedisFlagStore(redis_client("redis://127.0.0.1:1/0"), key=flag_key)
        try:
            with pytest.raises(FlagsUnavailable):
                await asyncio.wait_for(store.read(), 3)
            with pytest.raises(FlagsUnavailable):
                await asyncio.wait_for(store.write({"rollout_percentage": "1"}, updated_at=AT, updated_by="x"), 3)
        finally:
            await store.close()
