"""Slot planning (the rate-limiter): reserve the earliest time a delivery may be sent.

A reservation is idempotent per delivery id (a redelivered request gets the slot it already has) and
respects every limit (the account's window, its hourly cap when set, the fan's spacing) against every slot
planned so far, past and future: the earliest slot that satisfies all of them — except that an urgent
delivery (high or critical) may take the place of bulk slots planned later than PREEMPT_MARGIN_MS from now
(window.make_room); each displaced delivery is planned again at once, after the others, and returned in the
reservation for the rate-limiter to announce. `RedisPlanner` is shared by
every replica (one Lua script, Redis server time); `MemoryPlanner` is the same rule in this process (the
embedded mode, and each replica's own bounded limit under bypass_with_warning).
"""

from __future__ import annotations

import bisect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from libs.ratelimit import constants as c
from libs.ratelimit.errors import LimiterUnavailable
from libs.ratelimit.scripts import PLAN
from libs.ratelimit.settings import Limits
from libs.ratelimit.window import earliest_slot_within, make_room

Clock = Callable[[], int]
"""Now, in epoch milliseconds."""

REASONS = ("none", "hold", "recipient", "account", "existing", "account_hour")
# What pushed a slot, by the index of the account window in Limits.account_windows (the window, the hour).
ACCOUNT_REASONS = ("account", "account_hour")


@dataclass(frozen=True, slots=True)
class AccountWindow:
    """An account's planned slots as a planner holds them at `now_ms`, read without reserving: how many count
    in each rolling window, and when one more send would fit (the reservation's rule, before a fan's spacing)."""

    now_ms: int
    slots: tuple[int, ...]  # sorted: every slot within the account's widest window of now, or later
    hold_until_ms: int = 0  # nothing is planned before this (the shared state was found lost)

    def in_last(self, window_ms: int) -> int:
        """Slots in the rolling window (now - window_ms, now]: the reservations' half-open windows."""
        return bisect.bisect_right(self.slots, self.now_ms) - bisect.bisect_right(self.slots, self.now_ms - window_ms)

    @property
    def planned_ahead(self) -> int:
        """Slots planned later than now: deliveries not sent yet."""
        return len(self.slots) - bisect.bisect_right(self.slots, self.now_ms)

    def next_free_ms(self, limits: Limits) -> int:
        """The earliest time one more send fits every account window of `limits` (now: it fits now)."""
        not_before = max(self.now_ms, self.hold_until_ms)
        return earliest_slot_within(self.slots, not_before, limits.account_windows)[0]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Replanned:
    """A delivery an urgent one displaced: its new slot."""

    delivery_id: str
    workflow_id: str
    recipient_id: str
    slot_ms: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """A planned slot. `reason` says what pushed it past `now_ms`: none, hold (state was lost),
    recipient (the fan's spacing), account (the window), account_hour (the hourly cap, possibly with the
    window), existing (planned before, by an earlier call)."""

    slot_ms: int
    now_ms: int
    reason: str = "none"
    data_lost: bool = False  # this call found the shared state lost and started a one-window hold
    displaced: tuple[Replanned, ...] = ()  # bulk deliveries this (urgent) one took the place of

    @property
    def delay_s(self) -> float:
        return max(0, self.slot_ms - self.now_ms) / 1000


class SlotPlanner(ABC):
    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    @abstractmethod
    async def reserve(
        self, account: str, recipient: str, delivery_id: str, *, workflow_id: str = "", urgent: bool = False
    ) -> Reservation:
        """Plan `delivery_id`'s send to `recipient` on `account`, ahead of bulk slots when `urgent` (raises
        LimiterUnavailable)."""

    @abstractmethod
    async def window(self, account: str) -> AccountWindow:
        """`account`'s planned slots now, read only (raises LimiterUnavailable)."""

    async def ping(self) -> None:
        """Raise LimiterUnavailable when the planner cannot be used (readiness)."""
        return None

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class _Planned:
    slot: int
    recipient: str
    workflow_id: str
    urgent: bool


class MemoryPlanner(SlotPlanner):
    """The planner in this process's memory (nothing is shared, nothing survives the process)."""

    def __init__(self, limits: Limits, *, clock: Clock = wall_clock_ms) -> None:
        super().__init__(limits)
        self._clock = clock
        self._slots: dict[str, list[int]] = {}  # account -> its slots, sorted
        self._plans: dict[str, dict[str, _Planned]] = {}  # account -> delivery id -> its slot
        self._last: dict[tuple[str, str], int] = {}

    async def reserve(
        self, account: str, recipient: str, delivery_id: str, *, workflow_id: str = "", urgent: bool = False
    ) -> Reservation:
        now, limits = self._clock(), self.limits
        known = self._plans.get(account, {}).get(delivery_id)
        if known is not None:
            return Reservation(known.slot, now, "existing")
        self._forget_before(now - limits.horizon_ms)
        plans = self._plans.setdefault(account, {})
        not_before, reason = now, "none"
        last = self._last.get((account, recipient))
        if last is not None and last + limits.recipient_gap_ms > not_before:
            not_before, reason = last + limits.recipient_gap_ms, "recipient"
        slots = self._slots.setdefault(account, [])
        displaced: list[tuple[str, _Planned]] = []
        if urgent:
            slot, pushed_by, displaced = self._make_room(account, recipient, not_before, now)
        else:
            slot, pushed_by = earliest_slot_within(slots, not_before, limits.account_windows)
        if pushed_by is not None:
            reason = ACCOUNT_REASONS[pushed_by]
        for _, moved in displaced:
            slots.remove(moved.slot)
        bisect.insort(slots, slot)
        plans[delivery_id] = _Planned(slot, recipient, workflow_id, urgent)
        self._last[(account, recipient)] = max(slot, last or slot)
        for _, moved in displaced:  # each is its fan's last slot: it may go later, never past the fan's next
            moved.slot = earliest_slot_within(slots, moved.slot, limits.account_windows)[0]
            bisect.insort(slots, moved.slot)
            self._last[(account, moved.recipient)] = moved.slot
        replanned = tuple(Replanned(d, p.workflow_id, p.recipient, p.slot) for d, p in displaced)
        return Reservation(slot, now, reason, displaced=replanned)

    def _make_room(
        self, account: str, recipient: str, not_before: int, now: int
    ) -> tuple[int, int | None, list[tuple[str, _Planned]]]:
        """window.make_room over `account`'s plan: a bulk slot past the margin may move when it is its fan's
        last (moved later, it then never passes the fan's next message) and not `recipient`'s."""
        plans = self._plans[account]
        ahead = now + c.PREEMPT_MARGIN_MS
        # In the order Redis keeps them (by slot, then member), so that both planners move the same ones.
        bulk = sorted(
            ((d, p) for d, p in plans.items() if not p.urgent and p.slot > ahead),
            key=lambda dp: (dp[1].slot, c.plan_member(dp[0], False, dp[1].workflow_id, dp[1].recipient)),
        )
        fixed = sorted(p.slot for p in plans.values() if p.urgent or p.slot <= ahead)
        slot, pushed_by, indexes = make_room(
            fixed,
            [p.slot for _, p in bulk],
            not_before,
            self.limits.account_windows,
            lambda i: (
                bulk[i][1].recipient != recipient and self._last.get((account, bulk[i][1].recipient)) == bulk[i][1].slot
            ),
        )
        return slot, pushed_by, [bulk[i] for i in indexes]

    async def window(self, account: str) -> AccountWindow:
        now = self._clock()
        cutoff = now - self.limits.account_span_ms
        return AccountWindow(now, tuple(s for s in self._slots.get(account, ()) if s > cutoff))

    def _forget_before(self, cutoff: int) -> None:
        for account, slots in list(self._slots.items()):
            old = bisect.bisect_right(slots, cutoff)
            if not old:
                continue
            del slots[:old]
            self._plans[account] = {d: p for d, p in self._plans[account].items() if p.slot > cutoff}
            if not slots:
                del self._slots[account], self._plans[account]
        self._last = {k: s for k, s in self._last.items() if s > cutoff}


class RedisPlanner(SlotPlanner):
    """Shared by every rate-limiter replica; detects lost Redis data and then holds for one window."""

    def __init__(self, client: aioredis.Redis, limits: Limits, *, prefix: str = c.PLANNER_PREFIX) -> None:
        super().__init__(limits)
        self._redis = client
        self._prefix = prefix
        self._plan = client.register_script(PLAN)

    async def reserve(
        self, account: str, recipient: str, delivery_id: str, *, workflow_id: str = "", urgent: bool = False
    ) -> Reservation:
        p, limits = self._prefix, self.limits
        keys = [c.epoch_key(p), c.hold_key(p), c.account_key(p, account), c.recipient_key(p, account, recipient)]
        args: list[str | int] = [
            c.plan_member(delivery_id, urgent, workflow_id, recipient),
            limits.account_limit,
            limits.window_ms,
            limits.recipient_gap_ms,
            limits.hourly_limit,
            limits.hour_ms,
            int(urgent),
            c.recipient_key(p, account, ""),
            c.PREEMPT_MARGIN_MS,
        ]
        try:
            slot, now, lost, reason, *moved = await self._plan(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"slot reservation failed: {type(exc).__name__}: {exc}") from exc
        displaced = []
        for member, moved_slot in zip(moved[::2], moved[1::2], strict=True):
            moved_id, _, moved_workflow, moved_recipient = c.plan_member_parts(member.decode())
            displaced.append(Replanned(moved_id, moved_workflow, moved_recipient, int(moved_slot)))
        return Reservation(int(slot), int(now), REASONS[int(reason)], bool(lost), tuple(displaced))

    async def window(self, account: str) -> AccountWindow:
        # One MULTI: the clock, the hold and the slots as of the same moment, on the server's clock as PLAN.
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.time()
                pipe.get(c.hold_key(self._prefix))
                pipe.zrangebyscore(c.account_key(self._prefix, account), "-inf", "+inf", withscores=True)
                (seconds, micros), hold, planned = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"window read failed: {type(exc).__name__}: {exc}") from exc
        now = int(seconds) * 1000 + int(micros) // 1000
        # PLAN prunes the set only when it reserves: older slots may still be in it.
        cutoff = now - self.limits.account_span_ms
        slots = tuple(sorted(int(score) for _, score in planned if score > cutoff))
        return AccountWindow(now, slots, int(hold or 0))

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"redis unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()


def redis_client(url: str) -> aioredis.Redis:
    """A client that fails fast when Redis is down (the down policy decides what happens then)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=c.REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=c.REDIS_SOCKET_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=c.REDIS_RETRY_CAP_S, base=c.REDIS_RETRY_BASE_S), c.REDIS_RETRIES),
    )


def open_planner(redis_url: str | None, limits: Limits, *, prefix: str = c.PLANNER_PREFIX) -> SlotPlanner:
    """Redis when REDIS_URL is set (shared by replicas), else in this process."""
    if not redis_url:
        return MemoryPlanner(limits)
    return RedisPlanner(redis_client(redis_url), limits, prefix=prefix)
