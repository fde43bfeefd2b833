"""The last check before a send (of-sender), measured on actual send times.

`check` atomically decides whether one more send to a fan of an account is within the limits *now*, and
if so records now as a send (each attempt under its own token, so a retried send counts again — never
less than the platform saw). The log trusts its state for an account only while the account's marker
says it was loaded on this very Redis server; otherwise `check` answers `needs_history` and the caller
loads the account's recent sends from its durable record (`load`), then checks again. That is how a
flush, a restart or a failover of Redis never opens a burst: the durable record rebuilds the log.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from libs.ratelimit import constants as c
from libs.ratelimit.errors import LimiterUnavailable
from libs.ratelimit.planner import Clock, redis_client, wall_clock_ms
from libs.ratelimit.scripts import CHECK, LOAD
from libs.ratelimit.settings import Limits
from libs.ratelimit.window import retry_at


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One send attempt from the durable record: its token, the fan, when it was checked."""

    token: str
    recipient_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Check:
    """The answer of `check`: allowed (recorded at `now_ms`: send now), or not before `retry_at_ms`,
    or `needs_history` (load the account's recent sends, then check again)."""

    allowed: bool
    now_ms: int
    retry_at_ms: int | None = None
    needs_history: bool = False

    @property
    def wait_s(self) -> float:
        return 0.0 if self.retry_at_ms is None else max(0, self.retry_at_ms - self.now_ms) / 1000


class SendLog(ABC):
    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    @abstractmethod
    async def check(self, account: str, recipient: str, token: str) -> Check:
        """Record a send of `token` now if the limits allow it (raises LimiterUnavailable)."""

    @abstractmethod
    async def load(self, account: str, records: Sequence[SentRecord]) -> None:
        """Replace the account's log by `records` (its sends within the limits' horizon), unless another
        caller loaded it meanwhile."""

    @abstractmethod
    async def forget(self, account: str) -> None:
        """Stop trusting the account's log: the next check asks for its history again (sends were made
        that this log did not see)."""

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _last_per_recipient(records: Sequence[SentRecord]) -> dict[str, int]:
    last: dict[str, int] = {}
    for record in records:
        last[record.recipient_id] = max(record.at_ms, last.get(record.recipient_id, record.at_ms))
    return last


class MemorySendLog(SendLog):
    """The log in this process (the embedded mode; each replica's own log under bypass_with_warning)."""

    def __init__(self, limits: Limits, *, clock: Clock = wall_clock_ms) -> None:
        super().__init__(limits)
        self._clock = clock
        self._sent: dict[str, list[int]] = {}
        self._last: dict[tuple[str, str], int] = {}
        self._loaded: set[str] = set()

    async def check(self, account: str, recipient: str, token: str) -> Check:
        now, limits = self._clock(), self.limits
        if account not in self._loaded:
            return Check(False, now, needs_history=True)
        sent = self._sent.setdefault(account, [])
        del sent[: bisect.bisect_right(sent, now - limits.account_span_ms)]
        wait_until = max(retry_at(sent, now, limit, window) or 0 for limit, window in limits.account_windows)
        last = self._last.get((account, recipient))
        if last is not None and last + limits.recipient_gap_ms > now:
            wait_until = max(wait_until, last + limits.recipient_gap_ms)
        if wait_until > now:
            return Check(False, now, wait_until)
        bisect.insort(sent, now)
        self._last[(account, recipient)] = now
        return Check(True, now)

    async def load(self, account: str, records: Sequence[SentRecord]) -> None:
        if account in self._loaded:
            return
        self._sent[account] = sorted(r.at_ms for r in records)
        for recipient, at in _last_per_recipient(records).items():
            self._last[(account, recipient)] = max(at, self._last.get((account, recipient), at))
        self._loaded.add(account)

    async def forget(self, account: str) -> None:
        self._loaded.discard(account)


class RedisSendLog(SendLog):
    """Shared by every of-sender replica."""

    def __init__(self, client: aioredis.Redis, limits: Limits, *, prefix: str = c.SEND_LOG_PREFIX) -> None:
        super().__init__(limits)
        self._redis = client
        self._prefix = prefix
        self._check = client.register_script(CHECK)
        self._load = client.register_script(LOAD)

    def _keys(self, account: str) -> list[str]:
        return [f"{self._prefix}m:{account}", f"{self._prefix}s:{account}"]

    async def check(self, account: str, recipient: str, token: str) -> Check:
        limits = self.limits
        keys = [*self._keys(account), c.recipient_key(self._prefix, account, recipient)]
        args: list[str | int] = [
            token,
            limits.account_limit,
            limits.window_ms,
            limits.recipient_gap_ms,
            limits.horizon_ms,
            limits.hourly_limit,
            limits.hour_ms,
        ]
        try:
            verdict, now, retry = await self._check(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"last check failed: {type(exc).__name__}: {exc}") from exc
        if int(verdict) < 0:
            return Check(False, int(now), needs_history=True)
        return Check(int(verdict) == 1, int(now), int(retry) if int(verdict) == 0 else None)

    async def load(self, account: str, records: Sequence[SentRecord]) -> None:
        limits = self.limits
        last = _last_per_recipient(records)
        keys = [*self._keys(account), *(c.recipient_key(self._prefix, account, r) for r in last)]
        args: list[str | int] = [limits.account_span_ms, limits.recipient_gap_ms, limits.horizon_ms, len(records)]
        for record in records:
            args += [record.token, record.at_ms]
        args += list(last.values())
        try:
            await self._load(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"loading the send log failed: {type(exc).__name__}: {exc}") from exc

    async def forget(self, account: str) -> None:
        try:
            await self._redis.delete(self._keys(account)[0])
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"forgetting the send log failed: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"redis unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()


def open_send_log(redis_url: str | None, limits: Limits, *, prefix: str = c.SEND_LOG_PREFIX) -> SendLog:
    """Redis when REDIS_URL is set (shared by replicas), else in this process."""
    if not redis_url:
        return MemorySendLog(limits)
    return RedisSendLog(redis_client(redis_url), limits, prefix=prefix)
