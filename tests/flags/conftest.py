"""Fixtures of the flag tests: a Redis hash key of their own (deleted afterwards), stores on it, and a TCP
proxy in front of Redis that a test can cut and start again to make Redis unreachable and come back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from libs.flags import RedisFlagStore
from libs.flags.redis_store import redis_client
from tests.fixtures.tcp_proxy import TcpProxy


@pytest.fixture
async def flag_key(redis_url: str) -> AsyncIterator[str]:
    key = f"test:flags:{uuid.uuid4().hex[:10]}"
    yield key
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(key)
    await client.aclose()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test database, to look at (or tamper with) the hash directly."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_store(redis_url: str, flag_key: str) -> AsyncIterator[RedisFlagStore]:
    store = RedisFlagStore(redis_client(redis_url), key=flag_key)
    yield store
    await store.close()


class RedisProxy(TcpProxy):
    """The test TCP proxy in front of Redis, with the URL a client of it takes."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 6379)
        self._db = parts.path or "/0"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self._db}"


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[RedisProxy]:
    proxy = RedisProxy(redis_url)
    await proxy.start()
    yield proxy
    await proxy.cut()
