"""Token buckets per key (the gateway's per-user request limit): `rate` tokens a second refill a bucket of
`burst`, a request takes one, an empty bucket refuses and says how long until it would not.

    bucket = open_token_bucket(redis_url, Rate(per_s=10, burst=50), prefix="ho:gw:rl:")
    taken = await bucket.take(user_id)          # Taken(allowed=False, retry_after_s=0.3) when empty

`RedisTokenBucket` is shared by every replica: one Lua script (scripts.TAKE_TOKENS) refills and takes
atomically on the Redis server's clock, so replicas with skewed clocks agree. `MemoryTokenBucket` is the same
rule in this process (the embedded mode, and each replica's own limit while Redis is down).

Why not the `limits` package: it offers fixed, moving and sliding windows but no token bucket (a sustained
rate *and* a burst), its moving window keeps a timestamp per request (memory grows with the burst), and its
async Redis storage brings another Redis client; this package already keeps its limiters as Lua scripts.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from libs.ratelimit.errors import LimiterUnavailable
from libs.ratelimit.planner import redis_client
from libs.ratelimit.scripts import TAKE_TOKENS

BUCKET_PREFIX = "ho:tb:"
# Buckets a MemoryTokenBucket keeps (least recently used dropped first: a dropped bucket is a full one).
MEMORY_BUCKETS = 100_000


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_s` tokens a second, at most `burst` saved up."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_s > 0 and math.isfinite(self.per_s)) or self.burst < 1:
            raise ValueError(f"a token bucket needs a positive rate and a burst of at least 1, got {self}")


@dataclass(frozen=True, slots=True)
class Taken:
    allowed: bool
    retry_after_s: float = 0.0  # refused: when the bucket would hold the tokens asked for


class TokenBucket(ABC):
    def __init__(self, rate: Rate) -> None:
        self.rate = rate

    @abstractmethod
    async def take(self, key: str, cost: int = 1) -> Taken:
        """Take `cost` tokens from `key`'s bucket, or none when it holds fewer (raises LimiterUnavailable)."""

    async def close(self) -> None:
        return None


class MemoryTokenBucket(TokenBucket):
    def __init__(self, rate: Rate, *, clock: Callable[[], float] = time.monotonic, size: int = MEMORY_BUCKETS):
        super().__init__(rate)
        self._clock = clock
        self._size = size
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    async def take(self, key: str, cost: int = 1) -> Taken:
        now, rate = self._clock(), self.rate
        tokens, at = self._buckets.pop(key, (float(rate.burst), now))
        tokens = min(float(rate.burst), tokens + max(0.0, now - at) * rate.per_s)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._size:
            self._buckets.popitem(last=False)
        return Taken(True) if allowed else Taken(False, (cost - tokens) / rate.per_s)


class RedisTokenBucket(TokenBucket):
    def __init__(self, client: aioredis.Redis, rate: Rate, *, prefix: str = BUCKET_PREFIX) -> None:
        super().__init__(rate)
        self._redis = client
        self._prefix = prefix
        self._take = client.register_script(TAKE_TOKENS)

    async def take(self, key: str, cost: int = 1) -> Taken:
        try:
            allowed, wait_ms = await self._take(
                keys=[f"{self._prefix}{key}"], args=[repr(self.rate.per_s), self.rate.burst, cost]
            )
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"token bucket failed: {type(exc).__name__}: {exc}") from exc
        return Taken(True) if int(allowed) else Taken(False, int(wait_ms) / 1000)

    async def close(self) -> None:
        await self._redis.aclose()


def open_token_bucket(redis_url: str | None, rate: Rate, *, prefix: str = BUCKET_PREFIX) -> TokenBucket:
    """Redis when REDIS_URL is set (shared by replicas), else in this process."""
    if not redis_url:
        return MemoryTokenBucket(rate)
    return RedisTokenBucket(redis_client(redis_url), rate, prefix=prefix)
