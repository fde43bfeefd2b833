"""Fixtures of the limiter tests: a Redis client on the test database and a key prefix of their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await flush_prefix(client, prefix)
    await client.aclose()


async def flush_prefix(client: aioredis.Redis, prefix: str) -> int:
    """What FLUSHDB does to these tests' keys only (the database is shared with other tests)."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)
    return len(keys)
