"""An account's window read from a planner without reserving: the counts per rolling window, what is planned
ahead, and the next free slot — the same in memory and in Redis, and the rate-limiter's reply to the query."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from contracts import Envelope
from contracts.rate_window import RateWindow, RateWindowQuery
from libs.bus.memory import MemoryBus
from libs.ratelimit import AccountWindow, Limits, MemoryPlanner, RedisPlanner
from libs.ratelimit.constants import hold_key
from libs.runtime import Runtime
from services.rate_limiter.config import RateLimiterSettings
from services.rate_limiter.service import create
from services.rate_limiter.window import read_window

# 3 per "minute" of 1 s, 5 per "hour" of 10 s.
HOURLY = Limits(account_limit=3, window_ms=1000, recipient_gap_ms=0, hourly_limit=5, hour_ms=10_000)
NOW = 1_000_000


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class TestAccountWindow:
    def test_counts_are_of_the_half_open_windows_ending_now(self) -> None:
        """A slot exactly a window old has left it (the reservations' rule); one at now is in it."""
        window = AccountWindow(NOW, (NOW - 1000, NOW - 999, NOW, NOW + 5))
        assert (window.in_last(1000), window.in_last(1001), window.planned_ahead) == (2, 3, 1)

    def test_the_next_free_slot_waits_for_a_hold(self) -> None:
        """Nothing in use, but the plan is held (its state was lost): the next free slot is the hold's end."""
        assert AccountWindow(NOW, (), hold_until_ms=NOW + 700).next_free_ms(HOURLY) == NOW + 700
        assert AccountWindow(NOW, ()).next_free_ms(HOURLY) == NOW


class TestMemoryPlannerWindow:
    async def test_reads_what_was_reserved_and_reserves_nothing(self) -> None:
        """Seven sends at the hourly cap of 5: 3 now, 2 a window later, 2 past the hour; the window says 3 in
        use, 3 of the hour, 4 planned ahead, and the next free slot is where the next reservation lands."""
        clock = Clock()
        planner = MemoryPlanner(HOURLY, clock=clock)
        slots = [(await planner.reserve("a", f"fan{i}", f"d{i}")).slot_ms for i in range(7)]
        window = await planner.window("a")
        assert (window.in_last(HOURLY.window_ms), window.in_last(HOURLY.hour_ms), window.planned_ahead) == (3, 3, 4)
        assert window.slots == tuple(sorted(slots))
        assert (await planner.window("a")) == window
        nxt = window.next_free_ms(HOURLY)
        assert nxt == (await planner.reserve("a", "fan7", "d7")).slot_ms

    async def test_an_account_never_planned_is_free_now(self) -> None:
        """No slot: nothing in use, free at now."""
        window = await MemoryPlanner(HOURLY, clock=Clock()).window("nobody")
        assert (window.slots, window.next_free_ms(HOURLY)) == ((), NOW)


@pytest.mark.integration
class TestRedisPlannerWindow:
    async def test_reads_the_plan_the_script_wrote(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """After the first reservation's hold is lifted, five sends at 3 a window: the Redis read matches the
        slots reserved, on the server's clock, and the next reservation takes the next free slot."""
        planner = RedisPlanner(redis_client, HOURLY, prefix=prefix)
        await planner.reserve("warm-up", "fan", "warm-up")
        await redis_client.delete(hold_key(prefix))
        slots = [(await planner.reserve("a", f"fan{i}", f"d{i}")).slot_ms for i in range(5)]
        window = await planner.window("a")
        assert window.slots == tuple(sorted(slots))
        assert window.now_ms >= slots[0] and window.in_last(HOURLY.window_ms) == 3
        assert window.next_free_ms(HOURLY) == (await planner.reserve("a", "fan5", "d5")).slot_ms

    async def test_a_hold_is_read(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """A fresh plan's first reservation holds a window: the read's next free slot is the hold's end."""
        planner = RedisPlanner(redis_client, HOURLY, prefix=prefix)
        first = await planner.reserve("a", "fan", "d1")
        window = await planner.window("b")
        assert window.hold_until_ms == first.now_ms + HOURLY.window_ms
        assert window.next_free_ms(HOURLY) == window.hold_until_ms


class TestWindowReply:
    async def test_the_rate_limiter_answers_the_query_on_its_query_lane(self) -> None:
        """rate.window.query asked on the memory bus: the reply has the limits and the account's counts."""
        bus = MemoryBus()
        settings = RateLimiterSettings(redis_url=None, of_account_limit=2, of_account_hourly_limit=0)
        runtime = Runtime(bus=bus, settings=settings)
        service = await create(runtime)
        await service.start(runtime)
        try:
            query = Envelope.new(RateWindowQuery(account_id="acct"), workflow_id=uuid.uuid4(), user_id="root")
            reply = (await bus.request(query, timeout=2.0)).payload
        finally:
            await bus.close(grace_s=1)
            await service.stop()
        assert isinstance(reply, RateWindow) and reply.error is None
        assert (reply.limits.account_limit, reply.limits.hourly_limit, reply.in_hour) == (2, None, None)
        assert (reply.in_window, reply.planned_ahead, reply.next_free_at) == (0, 0, reply.at)

    async def test_an_unreadable_plan_is_an_error_reply(self) -> None:
        """Redis unreachable: the reply says so and carries no next free slot."""
        planner = RedisPlanner(aioredis.Redis.from_url("redis://127.0.0.1:1/0"), HOURLY)
        try:
            reply = await read_window(planner, "acct", "the rate limiter's Redis")
        finally:
            await planner.close()
        assert reply.error == "the rate limiter's Redis is unavailable; try again"
        assert reply.next_free_at is None and reply.at <= datetime.now(UTC)
