"""The workers' idempotency cache: what handling a generation.requested produced, keyed by its envelope id.

A redelivered request must not call (and bill) the provider again, so a worker first claims the
request's key. Three answers are possible (`Claim`):

- owned: nobody handled it yet; the key now holds a lease marker that expires after `lease_s`, and the
  worker calls the provider, then `store`s the outgoing envelopes (replacing the lease) before publishing;
- cached: a previous handling finished; the worker re-publishes the stored envelopes (same ids);
- busy: another delivery holds a live lease (a second replica got the message after a broker connection
  loss); the worker waits for its result — the lease expires if that replica died.

`RedisCache` (REDIS_URL set; key `ho:gen:{id}`, 24 h) is shared by every replica; `MemoryCache` is a bounded
LRU for one process (the embedded mode). Both take a claim in one atomic step.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from libs.llm import constants as c
from libs.llm.errors import CacheError, LLMConfigError


@dataclass(frozen=True)
class Claim:
    """The answer to `claim`: exactly one of owned (with the lease token), cached (with the values), busy."""

    token: bytes | None = None
    values: tuple[bytes, ...] | None = None

    @property
    def owned(self) -> bool:
        return self.token is not None

    @property
    def cached(self) -> bool:
        return self.values is not None

    @property
    def busy(self) -> bool:
        return self.token is None and self.values is None


def _new_lease() -> bytes:
    return c.LEASE_PREFIX + uuid.uuid4().hex.encode()


def _answer(current: bytes | None, lease: bytes) -> Claim:
    """The claim for a key that held `current` before we tried to put `lease` there (None: we did)."""
    if current is None:
        return Claim(token=lease)
    if current.startswith(c.LEASE_PREFIX):
        return Claim()
    return Claim(values=tuple(current.split(c.CACHE_SEPARATOR)))


def _join(values: Sequence[bytes]) -> bytes:
    if not values or any(c.CACHE_SEPARATOR in v or v.startswith(c.LEASE_PREFIX) for v in values):
        raise ValueError("cache values must be non-empty compact JSON documents")
    return c.CACHE_SEPARATOR.join(values)


class IdempotencyCache(ABC):
    @abstractmethod
    async def claim(self, key: str, lease_s: float) -> Claim:
        """Take the key for `lease_s` seconds, or say who has it (see the module docstring)."""

    @abstractmethod
    async def store(self, key: str, values: Sequence[bytes]) -> None:
        """Keep `values` (encoded envelopes, in publish order) under `key` for the cache's TTL."""

    @abstractmethod
    async def release(self, key: str, token: bytes) -> None:
        """Give up a lease (the handling failed before storing): a redelivery may claim the key at once.
        A key that no longer holds this lease (stored, expired, taken over) is left alone."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise CacheError when the cache cannot be used (readiness)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


class MemoryCache(IdempotencyCache):
    """A bounded LRU in this process: protects against redeliveries within one process's life only."""

    def __init__(self, *, max_entries: int = c.MEMORY_CACHE_MAX_ENTRIES, ttl_s: float = c.CACHE_TTL_S) -> None:
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl_s = ttl_s

    def _get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def _set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (value, time.monotonic() + ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def claim(self, key: str, lease_s: float) -> Claim:
        lease = _new_lease()
        current = self._get(key)
        if current is None:
            self._set(key, lease, lease_s)
        return _answer(current, lease)

    async def store(self, key: str, values: Sequence[bytes]) -> None:
        self._set(key, _join(values), self._ttl_s)

    async def release(self, key: str, token: bytes) -> None:
        if self._get(key) == token:
            del self._entries[key]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# Delete the key only while it still holds our lease: never a stored result, never another holder's lease.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisCache(IdempotencyCache):
    """Shared by every replica of a worker. Needs Redis ≥ 7.0 (`SET … NX GET` claims in one round trip)."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = c.CACHE_KEY_PREFIX, ttl_s: float = c.CACHE_TTL_S
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_ms = int(ttl_s * 1000)
        self._release = client.register_script(_RELEASE_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = c.CACHE_KEY_PREFIX, ttl_s: float = c.CACHE_TTL_S) -> RedisCache:
        client = aioredis.Redis.from_url(
            url, socket_timeout=c.REDIS_SOCKET_TIMEOUT_S, socket_connect_timeout=c.REDIS_SOCKET_TIMEOUT_S
        )
        return cls(client, prefix=prefix, ttl_s=ttl_s)

    def key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    async def claim(self, key: str, lease_s: float) -> Claim:
        lease = _new_lease()
        try:
            # SET NX GET: sets only when absent, and returns what was there (nil when we set it).
            current = await self._redis.set(self.key(key), lease, nx=True, get=True, px=max(1, int(lease_s * 1000)))
        except RedisError as exc:
            raise CacheError(f"idempotency cache claim failed (Redis >= 7.0 needed): {exc}") from exc
        if current is not None and not isinstance(current, bytes):
            raise CacheError(f"unexpected reply to SET NX GET: {type(current).__name__}")
        return _answer(current, lease)

    async def store(self, key: str, values: Sequence[bytes]) -> None:
        try:
            await self._redis.set(self.key(key), _join(values), px=self._ttl_ms)
        except RedisError as exc:
            raise CacheError(f"idempotency cache store failed: {exc}") from exc

    async def release(self, key: str, token: bytes) -> None:
        try:
            await self._release(keys=[self.key(key)], args=[token])
        except RedisError as exc:
            raise CacheError(f"idempotency cache release failed: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise CacheError(f"redis unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()


def open_cache(redis_url: str | None) -> IdempotencyCache:
    """Redis when REDIS_URL is set (shared by replicas, survives restarts), else the in-process LRU.
    Connecting is lazy: an unreachable Redis shows in `ping` (readiness), not here."""
    if not redis_url:
        return MemoryCache()
    try:
        return RedisCache.from_url(redis_url)
    except ValueError as exc:
        raise LLMConfigError(f"REDIS_URL is not a Redis URL: {exc}") from exc
