"""The idempotency cache's contract, on the in-process LRU and on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from libs.llm import CacheError, IdempotencyCache, LLMConfigError, MemoryCache, RedisCache, open_cache

RESULT = (b'{"id":"a","type":"usage.recorded"}', b'{"id":"b","type":"generation.completed"}')


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyCache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    redis_cache = RedisCache.from_url(request.getfixturevalue("redis_url"))
    yield redis_cache
    await redis_cache.close()


def new_key() -> str:
    return str(uuid.uuid4())


class TestClaims:
    async def test_first_claim_owns_and_a_second_is_busy(self, cache: IdempotencyCache) -> None:
        """The first claim of a key owns it; while its lease lives, another claim is told busy."""
        key = new_key()
        first = await cache.claim(key, 5.0)
        second = await cache.claim(key, 5.0)
        assert first.owned and not first.cached
        assert second.busy and not second.owned and not second.cached

    async def test_stored_values_are_returned_in_order(self, cache: IdempotencyCache) -> None:
        """After store, a claim returns the stored envelopes as they were, in order."""
        key = new_key()
        await cache.claim(key, 5.0)
        await cache.store(key, RESULT)
        claim = await cache.claim(key, 5.0)
        assert claim.cached
        assert claim.values == RESULT

    async def test_release_frees_only_its_own_lease(self, cache: IdempotencyCache) -> None:
        """Releasing a lease makes the key claimable; a foreign token or a stored result is left alone."""
        key = new_key()
        claim = await cache.claim(key, 5.0)
        assert claim.token is not None
        await cache.release(key, b"~lease:someone-else")
        assert (await cache.claim(key, 5.0)).busy
        await cache.release(key, claim.token)
        again = await cache.claim(key, 5.0)
        assert again.owned
        assert again.token is not None
        await cache.store(key, RESULT)
        await cache.release(key, again.token)
        assert (await cache.claim(key, 5.0)).values == RESULT

    async def test_an_expired_lease_can_be_taken_over(self, cache: IdempotencyCache) -> None:
        """A lease whose holder died expires, and the next claim owns the key."""
        key = new_key()
        await cache.claim(key, 0.05)
        await asyncio.sleep(0.1)
        assert (await cache.claim(key, 5.0)).owned

    async def test_values_that_would_corrupt_the_encoding_are_refused(self, cache: IdempotencyCache) -> None:
        """A value with a newline, an empty list, or one that looks like a lease cannot be stored."""
        for bad in ([b'{"a":1}\n{"b":2}'], [], [b"~lease:x"]):
            with pytest.raises(ValueError):
                await cache.store(new_key(), bad)


class TestRedisCache:
    async def test_key_and_ttl(self, redis_url: str) -> None:
        """A result lives under `ho:gen:{id}` for 24 h; a lease only for its lease time."""
        cache = RedisCache.from_url(redis_url)
        client = aioredis.Redis.from_url(redis_url)
        key = new_key()
        try:
            await cache.claim(key, 10.0)
            assert 9_000 < await client.pttl(f"ho:gen:{key}") <= 10_000
            await cache.store(key, RESULT)
            assert 24 * 3600 * 1000 - 5_000 < await client.pttl(f"ho:gen:{key}") <= 24 * 3600 * 1000
            assert await client.get(f"ho:gen:{key}") == b"\n".join(RESULT)
        finally:
            await client.aclose()
            await cache.close()

    async def test_unreachable_redis_raises_cache_error(self) -> None:
        """Every operation on an unreachable Redis raises CacheError (readiness and handler both see it)."""
        cache = RedisCache.from_url("redis://127.0.0.1:1/0")
        try:
            with pytest.raises(CacheError):
                await cache.ping()
            with pytest.raises(CacheError):
                await cache.claim(new_key(), 1.0)
        finally:
            await cache.close()

    def test_open_cache_picks_the_backend(self, redis_url: str) -> None:
        """REDIS_URL set → Redis; unset → the in-process LRU; a malformed URL is a configuration error."""
        assert isinstance(open_cache(None), MemoryCache)
        assert isinstance(open_cache(redis_url), RedisCache)
        with pytest.raises(LLMConfigError):
            open_cache("http://not-redis")


class TestMemoryCache:
    async def test_least_recently_used_entries_go_first(self) -> None:
        """Past its bound the LRU forgets the least recently used key, not the most recently read one."""
        cache = MemoryCache(max_entries=2)
        for key in ("a", "b"):
            await cache.claim(key, 60.0)
            await cache.store(key, RESULT)
        await cache.claim("a", 60.0)  # a read: "a" is now the most recently used
        await cache.claim("c", 60.0)
        assert len(cache) == 2
        assert (await cache.claim("a", 60.0)).cached
        assert (await cache.claim("b", 60.0)).owned  # forgotten, so claimable again
