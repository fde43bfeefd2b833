"""The flag store in Redis: one hash every replica reads, one pub/sub channel announcing each write.

A write is one Lua script (check the expected version, set the flags, bump @version, stamp @updated_at and
@updated_by, PUBLISH the new version, answer the whole hash), so a reader never sees half a change and two
admins writing at once cannot both pass the same version check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from libs.flags import constants as c
from libs.flags.errors import FlagsUnavailable, VersionConflict
from libs.flags.store import FlagStore
from libs.telemetry import get_logger

log = get_logger(__name__)

# KEYS[1] the hash; ARGV: channel, expected version ("" = any), updated_at, updated_by, then name/JSON pairs.
# Answers {1, HGETALL} after writing, or {0, current version} when the expected version does not match.
WRITE = """
local current = tonumber(redis.call('HGET', KEYS[1], '@version') or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then
  return {0, current}
end
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local version = redis.call('HINCRBY', KEYS[1], '@version', 1)
redis.call('HSET', KEYS[1], '@updated_at', ARGV[3], '@updated_by', ARGV[4])
redis.call('PUBLISH', ARGV[1], version)
return {1, redis.call('HGETALL', KEYS[1])}
"""


class RedisFlagStore(FlagStore):
    kind = "redis"

    def __init__(self, client: aioredis.Redis, *, key: str = c.DEFAULT_KEY) -> None:
        self._redis = client
        self.key = key
        self.channel = key + c.CHANNEL_SUFFIX
        self._write = client.register_script(WRITE)

    async def read(self) -> dict[str, str]:
        try:
            raw = await self._redis.hgetall(self.key)
        except (RedisError, OSError) as exc:
            raise FlagsUnavailable(f"reading the flags failed: {type(exc).__name__}: {exc}") from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    async def write(
        self,
        changes: Mapping[str, str],
        *,
        updated_at: datetime,
        updated_by: str,
        expected_version: int | None = None,
    ) -> dict[str, str]:
        args: list[str] = [
            self.channel,
            "" if expected_version is None else str(expected_version),
            updated_at.isoformat(),
            updated_by,
        ]
        for name, value in changes.items():
            args += [name, value]
        try:
            written, answer = await self._write(keys=[self.key], args=args)
        except (RedisError, OSError) as exc:
            raise FlagsUnavailable(f"writing the flags failed: {type(exc).__name__}: {exc}") from exc
        if not written:
            assert expected_version is not None
            raise VersionConflict(expected_version, int(answer))
        return _pairs(answer)

    async def watch(self, wake: asyncio.Event) -> None:
        delay = c.RESUBSCRIBE_INITIAL_S
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # Whatever was written while we were not subscribed is read now.
                wake.set()
                delay = c.RESUBSCRIBE_INITIAL_S
                while True:
                    # A bounded wait (not a blocking read) lets redis-py's health check ping an idle
                    # connection, so a silently dead one is noticed and replaced.
                    if await pubsub.get_message(timeout=c.REDIS_SOCKET_TIMEOUT_S) is not None:
                        wake.set()
            except (RedisError, OSError) as exc:
                log.warning("flags.watch.failed", reason=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
            finally:
                await _close_quietly(pubsub)
            await asyncio.sleep(delay)
            delay = min(delay * 2, c.RESUBSCRIBE_MAX_S)

    async def close(self) -> None:
        await self._redis.aclose()


async def _close_quietly(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except (RedisError, OSError) as exc:
        log.debug("flags.watch.close_failed", reason=f"{type(exc).__name__}: {exc}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[bytes]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def redis_client(url: str) -> aioredis.Redis:
    """A client that gives up quickly when Redis is down: the last known flags apply meanwhile."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=c.REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=c.REDIS_SOCKET_TIMEOUT_S,
        health_check_interval=c.PUBSUB_HEALTH_CHECK_S,
    )
