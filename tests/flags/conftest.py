"""Fixtures of the flag tests: a Redis hash key of their own (deleted afterwards), stores on it, and a TCP
proxy in front of Redis that a test can cut and restore to make Redis unreachable and come back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from libs.flags import RedisFlagStore
from libs.flags.redis_store import redis_client


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


class RedisProxy:
    """A TCP proxy to Redis: `cut` drops every connection and refuses new ones until `restore`."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._db = parts.path or "/0"
        self._server: asyncio.Server | None = None
        self._up = False
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self._db}"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self._up = True

    async def cut(self) -> None:
        self._up = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[RedisProxy]:
    proxy = RedisProxy(redis_url)
    await proxy.restore()
    yield proxy
    await proxy.cut()
