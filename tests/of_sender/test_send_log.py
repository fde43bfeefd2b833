"""The last check: measured on actual send times, atomic, and rebuilt from the durable record whenever the
log cannot prove it saw every recent send (first use, flush, restart, failover, a bypass)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from libs.ratelimit import Limits, MemorySendLog, RedisSendLog, SendLog, SentRecord
from tests.rate_limiter.conftest import flush_prefix

LIMITS = Limits(account_limit=3, window_ms=1000, recipient_gap_ms=400)
KINDS = [pytest.param("memory"), pytest.param("redis", marks=pytest.mark.integration)]


@pytest.fixture(params=KINDS)
def send_log(request: pytest.FixtureRequest) -> SendLog:
    if request.param == "memory":
        return MemorySendLog(LIMITS)
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    return RedisSendLog(client, LIMITS, prefix=request.getfixturevalue("prefix"))


class TestSendLog:
    async def test_an_unknown_account_needs_its_history_first(self, send_log: SendLog) -> None:
        """Nothing is allowed until the account's recent sends were loaded (an empty history counts)."""
        first = await send_log.check("a", "fan", "t1")
        assert first.needs_history and not first.allowed
        await send_log.load("a", [])
        assert (await send_log.check("a", "fan", "t1")).allowed

    async def test_the_window_and_the_spacing_are_enforced_on_send_times(self, send_log: SendLog) -> None:
        """Three sends pass; the fourth waits until the first is a window old; a fan waits its spacing."""
        await send_log.load("a", [])
        checks = [await send_log.check("a", f"fan{i}", f"t{i}") for i in range(3)]
        assert all(c.allowed for c in checks)
        refused = await send_log.check("a", "fan9", "t9")
        assert not refused.allowed and refused.retry_at_ms == checks[0].now_ms + LIMITS.window_ms
        await send_log.load("b", [])
        assert (await send_log.check("b", "fan", "u1")).allowed
        again = await send_log.check("b", "fan", "u2")
        assert not again.allowed and 0 < again.wait_s <= LIMITS.recipient_gap_ms / 1000

    async def test_loaded_history_counts(self, send_log: SendLog) -> None:
        """Sends from the durable record count against the window and the fans' spacing."""
        probe = await send_log.check("a", "x", "probe")  # only to read the log's clock
        now = probe.now_ms
        history = [SentRecord("h1", "fan1", now - 900), SentRecord("h2", "fan2", now - 100)]
        await send_log.load("a", history)
        assert not (await send_log.check("a", "fan2", "t1")).allowed  # 100 ms ago: spacing
        assert (await send_log.check("a", "fan3", "t2")).allowed  # the third in the window
        refused = await send_log.check("a", "fan4", "t3")
        assert not refused.allowed and refused.retry_at_ms == now - 900 + LIMITS.window_ms

    async def test_forget_makes_the_next_check_reload(self, send_log: SendLog) -> None:
        """After `forget` (sends were made the log did not see) the history is asked for again."""
        await send_log.load("a", [])
        await send_log.forget("a")
        assert (await send_log.check("a", "fan", "t1")).needs_history

    async def test_concurrent_checks_never_let_more_through(self, send_log: SendLog) -> None:
        """20 checks at once on one account: exactly `limit` are allowed."""
        await send_log.load("a", [])
        results = await asyncio.gather(*(send_log.check("a", f"fan{i}", f"t{i}") for i in range(20)))
        assert sum(r.allowed for r in results) == LIMITS.account_limit


@pytest.mark.integration
class TestRedisSendLogLoss:
    async def test_a_flush_asks_for_the_history_again(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """After the keys are gone the log does not answer "allowed" from an empty state: it asks for the
        history, and once loaded, the sends before the flush still count."""
        log = RedisSendLog(redis_client, LIMITS, prefix=prefix)
        await log.load("a", [])
        sent = [await log.check("a", f"fan{i}", f"t{i}") for i in range(3)]
        await flush_prefix(redis_client, prefix)
        assert (await log.check("a", "fan9", "t9")).needs_history
        await log.load("a", [SentRecord(f"t{i}", f"fan{i}", c.now_ms) for i, c in enumerate(sent)])
        assert not (await log.check("a", "fan9", "t9")).allowed

    async def test_state_from_another_server_is_not_trusted(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """A marker written by another Redis server (restart from a snapshot, failover) forces a reload."""
        log = RedisSendLog(redis_client, LIMITS, prefix=prefix)
        await log.load("a", [])
        await redis_client.set(f"{prefix}m:a", "run-id-of-a-server-that-is-gone")
        assert (await log.check("a", "fan", "t1")).needs_history

    async def test_a_second_loader_does_not_overwrite_newer_sends(
        self, redis_client: aioredis.Redis, prefix: str
    ) -> None:
        """Two replicas load at once: the second finds the log loaded and leaves it (with the sends made
        since) alone."""
        log = RedisSendLog(redis_client, LIMITS, prefix=prefix)
        await log.load("a", [])
        assert (await log.check("a", "fan", "t1")).allowed
        await log.load("a", [])  # a stale, empty history from a slower replica
        assert not (await log.check("a", "fan", "t2")).allowed
