"""Slot planning: the earliest compliant slot, per account and per fan, idempotent, shared by replicas,
and held for a window when Redis lost its data."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from libs.ratelimit import Limits, MemoryPlanner, RedisPlanner, Reservation, SlotPlanner
from libs.ratelimit.window import earliest_slot, earliest_slot_within
from tests.delivery.compliance import spacing_violations, window_violations
from tests.rate_limiter.conftest import flush_prefix

LIMITS = Limits(account_limit=3, window_ms=1000, recipient_gap_ms=400)
# An hourly cap with the hour scaled down: 3 per "minute" of 1 s, 5 per "hour" of 10 s.
HOURLY = Limits(account_limit=3, window_ms=1000, recipient_gap_ms=400, hourly_limit=5, hour_ms=10_000)


class FakeClock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class TestMemoryPlanner:
    async def test_a_burst_fills_the_window_then_waits_for_the_next(self) -> None:
        """`limit` deliveries to different fans go now; the next ones a whole window later."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        slots = [(await planner.reserve("a", f"fan{i}", f"d{i}")).slot_ms - clock.now for i in range(7)]
        assert slots == [0, 0, 0, 1000, 1000, 1000, 2000]

    async def test_a_fan_waits_its_spacing_without_holding_up_the_others(self) -> None:
        """A second message to one fan waits the spacing; another fan's message still goes now."""
        clock = FakeClock()
        planner = MemoryPlanner(Limits(account_limit=10, window_ms=1000, recipient_gap_ms=400), clock=clock)
        first = await planner.reserve("a", "fan", "d1")
        second = await planner.reserve("a", "fan", "d2")
        other = await planner.reserve("a", "other", "d3")
        assert (first.slot_ms - clock.now, first.reason) == (0, "none")
        assert (second.slot_ms - clock.now, second.reason) == (400, "recipient")
        assert other.slot_ms == clock.now

    async def test_accounts_are_independent(self) -> None:
        """One account's full window does not delay another account."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        for i in range(3):
            await planner.reserve("a", f"fan{i}", f"a{i}")
        assert (await planner.reserve("b", "fan0", "b0")).slot_ms == clock.now

    async def test_the_same_delivery_keeps_its_slot(self) -> None:
        """A redelivered request gets the slot it already has and reserves nothing more."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        for i in range(3):
            await planner.reserve("a", f"fan{i}", f"d{i}")
        again = await planner.reserve("a", "fan0", "d0")
        assert (again.slot_ms, again.reason) == (clock.now, "existing")
        assert (await planner.reserve("a", "fan9", "d9")).slot_ms == clock.now + 1000

    async def test_old_slots_stop_counting(self) -> None:
        """Once a window has passed, the account may send a full burst again."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        for i in range(3):
            await planner.reserve("a", f"fan{i}", f"d{i}")
        clock.now += 1000
        assert (await planner.reserve("a", "fan7", "d7")).slot_ms == clock.now


class TestMemoryPlannerHourlyCap:
    async def test_a_burst_over_the_hourly_cap_waits_for_the_hour(self) -> None:
        """Five fit in the hour (three, then two a window later); the sixth goes when the first burst is an
        hour old, and the window still applies within the new hour."""
        clock = FakeClock()
        planner = MemoryPlanner(HOURLY, clock=clock)
        got = [await planner.reserve("a", f"fan{i}", f"d{i}") for i in range(11)]
        slots = [r.slot_ms - clock.now for r in got]
        assert slots == [0, 0, 0, 1000, 1000, 10_000, 10_000, 10_000, 11_000, 11_000, 20_000]
        assert [r.reason for r in got[3:6]] == ["account", "account", "account_hour"]
        assert window_violations(slots, HOURLY.hourly_limit, HOURLY.hour_ms) == []
        assert window_violations(slots, HOURLY.account_limit, HOURLY.window_ms) == []

    async def test_no_hourly_cap_when_it_is_zero(self) -> None:
        """hourly_limit 0 (the default) plans by the window alone."""
        clock = FakeClock()
        planner = MemoryPlanner(
            Limits(account_limit=3, window_ms=1000, recipient_gap_ms=0, hour_ms=10_000), clock=clock
        )
        slots = [(await planner.reserve("a", f"fan{i}", f"d{i}")).slot_ms - clock.now for i in range(9)]
        assert slots == [0, 0, 0, 1000, 1000, 1000, 2000, 2000, 2000]


def final_slots(planned: dict[str, tuple[str, int]], reservations: list[tuple[str, str, Reservation]]) -> None:
    """Record each reservation's slot and its displaced deliveries' new ones in `planned` (id -> (fan, slot))."""
    for delivery_id, fan, got in reservations:
        if got.reason != "existing":
            planned[delivery_id] = (fan, got.slot_ms)
        for moved in got.displaced:
            planned[moved.delivery_id] = (moved.recipient_id, moved.slot_ms)


def assert_plan_complies(planned: dict[str, tuple[str, int]], limits: Limits) -> None:
    slots = [slot for _, slot in planned.values()]
    for limit, window in limits.account_windows:
        assert window_violations(slots, limit, window) == []
    per_fan: dict[str, list[int]] = {}
    for fan, slot in planned.values():
        per_fan.setdefault(fan, []).append(slot)
    for fan_slots in per_fan.values():
        assert spacing_violations(fan_slots, limits.recipient_gap_ms) == []


class TestUrgent:
    """An urgent delivery takes the place of bulk slots planned later (window.make_room)."""

    async def test_an_urgent_delivery_goes_before_the_planned_bulk_ones(self) -> None:
        """15 bulk deliveries fill five windows; an urgent one gets the first slot past the margin (0.5 s)
        instead of the sixth window, and the one bulk delivery it displaced moves to the end — nothing over
        the limit."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        bulk = [await planner.reserve("a", f"fan{i}", f"d{i}", workflow_id="campaign") for i in range(15)]
        assert [r.slot_ms - clock.now for r in bulk] == [w * 1000 for w in range(5) for _ in range(3)]
        urgent = await planner.reserve("a", "vip", "reply", workflow_id="chat", urgent=True)
        # The slots at 0 are within the margin (their approvals may be on their way): 1000 is the first it may take.
        assert urgent.slot_ms - clock.now == 1000
        [moved] = urgent.displaced
        assert (moved.workflow_id, moved.slot_ms - clock.now) == ("campaign", 5000)
        assert moved.delivery_id in {"d3", "d4", "d5"}
        planned: dict[str, tuple[str, int]] = {}
        final_slots(planned, [(f"d{i}", f"fan{i}", r) for i, r in enumerate(bulk)] + [("reply", "vip", urgent)])
        assert_plan_complies(planned, LIMITS)
        window = await planner.window("a")
        assert sorted(window.slots) == sorted(slot for _, slot in planned.values())

    async def test_without_bulk_ahead_an_urgent_delivery_plans_as_any_other(self) -> None:
        """Nothing to displace: the same slot a medium delivery would get."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        for i in range(3):
            await planner.reserve("a", f"fan{i}", f"d{i}", urgent=True)
        urgent = await planner.reserve("a", "vip", "reply", urgent=True)
        assert (urgent.slot_ms - clock.now, urgent.reason, urgent.displaced) == (1000, "account", ())

    async def test_a_bulk_slot_before_its_fans_next_message_stays(self) -> None:
        """Bulk deliveries whose fan has a later one planned never move (the fan's messages keep their order):
        the urgent one takes the next window whose bulk slots are their fans' last."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        fans = [f"fan{i}" for i in range(12)]  # windows 0, 1000, 2000, 3000
        for i, fan in enumerate(fans):
            await planner.reserve("a", fan, f"d{i}")
        for fan in fans[3:6]:  # the fans of window 1000 get a second message, at 4000
            await planner.reserve("a", fan, f"again-{fan}")
        urgent = await planner.reserve("a", "vip", "reply", urgent=True)
        assert urgent.slot_ms - clock.now == 2000
        [moved] = urgent.displaced
        assert moved.recipient_id in fans[6:9] and moved.slot_ms - clock.now == 5000

    async def test_urgent_slots_are_never_displaced(self) -> None:
        """A second urgent delivery does not move the first: it displaces another bulk slot."""
        clock = FakeClock()
        planner = MemoryPlanner(LIMITS, clock=clock)
        for i in range(15):
            await planner.reserve("a", f"fan{i}", f"d{i}")
        first = await planner.reserve("a", "vip1", "r1", urgent=True)
        second = await planner.reserve("a", "vip2", "r2", urgent=True)
        assert (first.slot_ms, second.slot_ms) == (clock.now + 1000, clock.now + 1000)
        assert {d.delivery_id for d in first.displaced}.isdisjoint(d.delivery_id for d in second.displaced)
        again = await planner.reserve("a", "vip1", "r1", urgent=True)
        assert (again.slot_ms, again.reason, again.displaced) == (first.slot_ms, "existing", ())


@pytest.mark.integration
class TestRedisPlanner:
    async def test_fresh_state_is_held_for_one_window(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """With no trace of earlier plans (first use, or lost data), nothing is planned before a window."""
        planner = RedisPlanner(redis_client, LIMITS, prefix=prefix)
        first = await planner.reserve("a", "fan", "d1")
        assert first.data_lost and first.reason == "hold"
        assert first.slot_ms - first.now_ms == LIMITS.window_ms
        second = await planner.reserve("a", "fan2", "d2")
        assert not second.data_lost and second.slot_ms == first.slot_ms

    async def test_a_flush_is_detected_and_held(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """After FLUSHDB (here: the keys of this test) the next reservation starts a new one-window hold,
        whatever the lost plan said."""
        planner = RedisPlanner(redis_client, LIMITS, prefix=prefix)
        await planner.reserve("a", "fan", "d1")
        assert await flush_prefix(redis_client, prefix) > 0
        after = await planner.reserve("a", "fan2", "d2")
        assert after.data_lost and after.slot_ms - after.now_ms == LIMITS.window_ms

    async def test_a_restart_is_detected_by_the_server_run_id(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """State written by another Redis server (a restart from a snapshot, a failover) is not trusted."""
        planner = RedisPlanner(redis_client, LIMITS, prefix=prefix)
        await planner.reserve("a", "fan", "d1")
        await redis_client.set(f"{prefix}epoch", "run-id-of-a-server-that-is-gone")
        assert (await planner.reserve("a", "fan2", "d2")).data_lost

    async def test_lua_plans_exactly_what_the_python_rule_plans(
        self, redis_client: aioredis.Redis, prefix: str
    ) -> None:
        """Each slot the script returns equals earliest_slot() given the slots before it, the fan's spacing
        and the hold — on a random stream of reservations."""
        limits = Limits(account_limit=3, window_ms=500, recipient_gap_ms=300)
        planner = RedisPlanner(redis_client, limits, prefix=prefix)
        rng = random.Random(7)
        slots: list[int] = []
        last: dict[str, int] = {}
        hold = 0
        for i in range(40):
            fan = f"fan{rng.randint(0, 4)}"
            got = await planner.reserve("acct", fan, f"d{i}")
            if got.data_lost:
                hold = got.now_ms + limits.window_ms
            not_before = max(got.now_ms, hold, last.get(fan, -(10**12)) + limits.recipient_gap_ms)
            assert got.slot_ms == earliest_slot(sorted(slots), not_before, limits.account_limit, limits.window_ms)
            slots.append(got.slot_ms)
            last[fan] = got.slot_ms
        assert window_violations(slots, limits.account_limit, limits.window_ms) == []

    async def test_lua_plans_the_hourly_cap_exactly_as_the_python_rule(
        self, redis_client: aioredis.Redis, prefix: str
    ) -> None:
        """With an hourly cap too, each slot the script returns equals earliest_slot_within() over the window
        and the hour, and says which of them pushed it."""
        limits = Limits(account_limit=3, window_ms=500, recipient_gap_ms=300, hourly_limit=7, hour_ms=4000)
        planner = RedisPlanner(redis_client, limits, prefix=prefix)
        rng = random.Random(13)
        slots: list[int] = []
        last: dict[str, int] = {}
        hold = 0
        reasons: set[str] = set()
        for i in range(40):
            fan = f"fan{rng.randint(0, 4)}"
            got = await planner.reserve("acct", fan, f"d{i}")
            if got.data_lost:
                hold = got.now_ms + limits.window_ms
            not_before = max(got.now_ms, hold, last.get(fan, -(10**12)) + limits.recipient_gap_ms)
            slot, pushed_by = earliest_slot_within(sorted(slots), not_before, limits.account_windows)
            assert got.slot_ms == slot
            if pushed_by is not None:
                assert got.reason == ("account", "account_hour")[pushed_by]
            reasons.add(got.reason)
            slots.append(got.slot_ms)
            last[fan] = got.slot_ms
        assert {"account", "account_hour"} <= reasons  # both windows were put to the test
        assert window_violations(slots, limits.account_limit, limits.window_ms) == []
        assert window_violations(slots, limits.hourly_limit, limits.hour_ms) == []

    async def test_lua_makes_room_exactly_as_the_memory_planner(
        self, redis_client: aioredis.Redis, prefix: str
    ) -> None:
        """A random stream of bulk and urgent reservations, with an hourly cap and fans written to twice: each
        reservation the script makes — its slot, reason and the deliveries it displaced, to where — equals
        the memory planner's at the same clock, and the whole plan keeps every limit."""
        limits = Limits(account_limit=3, window_ms=2000, recipient_gap_ms=1500, hourly_limit=8, hour_ms=8000)
        planner = RedisPlanner(redis_client, limits, prefix=prefix)
        held = await planner.reserve("warm-up", "fan", "warm-up")  # the fresh state's hold (the mirror has none)
        await asyncio.sleep((held.slot_ms - held.now_ms) / 1000 + 0.05)
        clock = FakeClock()
        mirror = MemoryPlanner(limits, clock=clock)
        rng = random.Random(11)
        planned: dict[str, tuple[str, int]] = {}
        moved = 0
        for i in range(60):
            fan, urgent = f"fan{rng.randint(0, 14)}", rng.random() < 0.2
            got = await planner.reserve("acct", fan, f"d{i}", workflow_id=f"w{i % 3}", urgent=urgent)
            clock.now = got.now_ms
            assert got == await mirror.reserve("acct", fan, f"d{i}", workflow_id=f"w{i % 3}", urgent=urgent)
            final_slots(planned, [(f"d{i}", fan, got)])
            moved += len(got.displaced)
        assert moved >= 3  # urgent ones did displace bulk ones
        assert_plan_complies(planned, limits)
        window = await planner.window("acct")
        assert sorted(s for s in window.slots if s > window.now_ms) == sorted(
            slot for _, slot in planned.values() if slot > window.now_ms
        )

    async def test_a_burst_over_the_hourly_cap_is_pushed_past_the_hour(
        self, redis_client: aioredis.Redis, prefix: str
    ) -> None:
        """Twelve deliveries at once with a cap of five an hour: no hour holds more than five, the sixth
        is a whole hour after the first, and no window holds more than three."""
        planner = RedisPlanner(redis_client, HOURLY, prefix=prefix)
        got = [await planner.reserve("a", f"fan{i}", f"d{i}") for i in range(12)]
        slots = sorted(r.slot_ms for r in got)
        assert window_violations(slots, HOURLY.hourly_limit, HOURLY.hour_ms) == []
        assert window_violations(slots, HOURLY.account_limit, HOURLY.window_ms) == []
        assert slots[5] - slots[0] == HOURLY.hour_ms and slots[10] - slots[0] == 2 * HOURLY.hour_ms
        assert got[5].reason == "account_hour"

    async def test_the_plan_keeps_one_hour_of_past_slots(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """Slots are kept while they count for the hour, then pruned: an account's plan holds at most the
        hourly cap of past slots, however much it sent before."""
        limits = Limits(account_limit=2, window_ms=50, recipient_gap_ms=0, hourly_limit=3, hour_ms=300)
        planner = RedisPlanner(redis_client, limits, prefix=prefix)
        got = [await planner.reserve("a", f"fan{i}", f"d{i}") for i in range(4)]
        assert got[3].slot_ms - got[0].slot_ms == limits.hour_ms  # the first slots were still counted
        await asyncio.sleep((got[3].slot_ms - got[3].now_ms + limits.hour_ms + 50) / 1000)
        await planner.reserve("a", "fan9", "d9")
        assert await redis_client.zcard(f"{prefix}a:a") == 1

    async def test_replicas_reserving_at_once_never_overbook(self, redis_client: aioredis.Redis, prefix: str) -> None:
        """Three planners on their own connections, 60 concurrent reservations over 3 accounts: every
        account's plan respects the window and every fan's spacing."""
        clients = [aioredis.Redis(connection_pool=redis_client.connection_pool) for _ in range(3)]
        planners: list[SlotPlanner] = [RedisPlanner(c, LIMITS, prefix=prefix) for c in clients]
        jobs = [(f"acct{i % 3}", f"fan{i % 5}", f"d{i}") for i in range(60)]
        results = await asyncio.gather(*(planners[i % 3].reserve(*job) for i, job in enumerate(jobs)))
        per_account: dict[str, list[int]] = {}
        per_fan: dict[tuple[str, str], list[int]] = {}
        for (account, fan, _), got in zip(jobs, results, strict=True):
            per_account.setdefault(account, []).append(got.slot_ms)
            per_fan.setdefault((account, fan), []).append(got.slot_ms)
        for slots in per_account.values():
            assert window_violations(slots, LIMITS.account_limit, LIMITS.window_ms) == []
        for slots in per_fan.values():
            assert spacing_violations(slots, LIMITS.recipient_gap_ms) == []

    async def test_unreachable_redis_raises_limiter_unavailable(self) -> None:
        """A Redis that is down is reported as LimiterUnavailable (the caller's down policy applies)."""
        from libs.ratelimit import LimiterUnavailable, open_planner

        planner = open_planner("redis://127.0.0.1:1/0", LIMITS)
        with pytest.raises(LimiterUnavailable):
            await planner.reserve("a", "fan", "d1")
        with pytest.raises(LimiterUnavailable):
            await planner.ping()
        await planner.close()

    async def test_replicas_reserving_at_once_never_exceed_the_hourly_cap(
        self, redis_client: aioredis.Redis, prefix: str
    ) -> None:
        """Three planners on their own connections, 45 concurrent reservations over 3 accounts with an
        hourly cap: no account's hour holds more than the cap, no window more than the limit."""
        clients = [aioredis.Redis(connection_pool=redis_client.connection_pool) for _ in range(3)]
        planners: list[SlotPlanner] = [RedisPlanner(c, HOURLY, prefix=prefix) for c in clients]
        jobs = [(f"acct{i % 3}", f"fan{i % 5}", f"d{i}") for i in range(45)]
        results = await asyncio.gather(*(planners[i % 3].reserve(*job) for i, job in enumerate(jobs)))
        per_account: dict[str, list[int]] = {}
        for (account, _, _), got in zip(jobs, results, strict=True):
            per_account.setdefault(account, []).append(got.slot_ms)
        for slots in per_account.values():
            assert window_violations(slots, HOURLY.hourly_limit, HOURLY.hour_ms) == []
            assert window_violations(slots, HOURLY.account_limit, HOURLY.window_ms) == []
            assert max(slots) - min(slots) >= 2 * HOURLY.hour_ms  # 15 at 5 an hour: three hours begun
