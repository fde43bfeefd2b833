"""Thresholds and budgets: one alert per threshold and period whatever the replicas and messages; a budget
change published once as budget.status, lifted when the period ends or the threshold is edited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from contracts import Envelope
from contracts.enums import BudgetAction, CostPeriod
from contracts.messages import BudgetStatus, CostAlert
from contracts.routing import ROUTER
from libs.bus.memory import MemoryBus
from services.cost_tracker.model import (
    Alert,
    AlertFilter,
    BudgetState,
    Delivery,
    DeliveryStatus,
    Severity,
    alert_id_for,
)
from services.cost_tracker.pg_store import PostgresStore
from services.cost_tracker.store import CostStore
from tests.cost_tracker.conftest import (
    ADMIN,
    ALICE,
    BOB,
    FAST,
    Clock,
    Harness,
    eventually,
    start_harness,
    tracker_settings,
    usage,
)

NOON = datetime(2026, 5, 20, 12, tzinfo=UTC)
DAY = datetime(2026, 5, 20, tzinfo=UTC)  # NOON's day


class CountingBus(MemoryBus):
    """The memory bus, remembering what was published (and failing the next `fail` cost.alert publishes)."""

    def __init__(self) -> None:
        super().__init__(policy=FAST)
        self.published: list[Envelope] = []
        self.fail = 0

    async def publish(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        if self.fail and isinstance(envelope.payload, CostAlert):
            self.fail -= 1
            raise RuntimeError("broker down")
        self.published.append(envelope)
        await super().publish(envelope, delay=delay)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e.payload for e in self.published if isinstance(e.payload, kind)]


@pytest.fixture
async def replicas(store: CostStore, request: pytest.FixtureRequest) -> AsyncIterator[list[Harness]]:
    """Two cost-trackers on one bus and one database (for memory: one shared store), the clock at NOON."""
    bus = CountingBus()
    clock = Clock(NOON)
    second: CostStore = store
    if isinstance(store, PostgresStore):
        second = PostgresStore(request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("pg_schema"))
    started = []
    for each in (store, second):
        started.append(await start_harness(each, tracker_settings(), bus=bus, clock=clock))
    await bus.subscribe(ROUTER, {BudgetStatus.TYPE: started[0].on_budget})
    yield started
    await bus.close(grace_s=1)
    for harness in started:
        await harness.tracker.stop()


async def threshold(harness: Harness, **fields: Any) -> dict[str, Any]:
    params = {"op": "create", "period": "daily", "severity": "warning", **fields}
    return dict(await harness.data("thresholds", params, user=ADMIN))


def spend(user: str, dollars: str, *, at: datetime = NOON) -> Envelope:
    """A usage record of `user` costing exactly `dollars` (azure gpt-4: $0.01 per 1K tokens)."""
    return usage(user, prompt=int(Decimal(dollars) * 100_000), completion=0, at=at)


class TestAlerts:
    async def test_a_crossing_raises_one_alert_per_threshold_and_period(self, replicas: list[Harness]) -> None:
        """Many messages over the limit, handled concurrently by two replicas: one alert, one cost.alert; a
        second crossing in the same period none; the next period's crossing one more."""
        one, two = replicas
        bus = one.bus
        assert isinstance(bus, CountingBus)
        created = await threshold(one, user_id=ALICE, limit_usd="0.10")
        messages = [spend(ALICE, "0.03") for _ in range(10)]
        await asyncio.gather(*(h.record(m) for m, h in zip(messages, [one, two] * 5, strict=True)))
        assert len(bus.of(CostAlert)) == 1
        [alert] = bus.of(CostAlert)
        assert (alert.threshold_id, alert.scope_user_id, alert.period) == (created["id"], ALICE, CostPeriod.DAILY)
        assert alert.limit_usd == Decimal("0.10") and Decimal("0.10") <= alert.spent_usd <= Decimal("0.30")
        await one.record(spend(ALICE, "5"))
        await two.tracker.sweep()
        assert len(bus.of(CostAlert)) == 1
        tomorrow = NOON + timedelta(days=1)
        one.clock.at = tomorrow
        await one.record(spend(ALICE, "0.2", at=tomorrow))
        assert [a.period_start.date() for a in bus.of(CostAlert)] == [NOON.date(), tomorrow.date()]

    async def test_daily_and_monthly_global_and_user_thresholds_each_alert(self, harness: Harness) -> None:
        """A user's daily, a user's monthly and a global threshold are separate: each raises its own alert."""
        harness.clock.at = NOON
        await threshold(harness, user_id=ALICE, limit_usd="1")
        await threshold(harness, user_id=ALICE, period="monthly", limit_usd="2")
        await threshold(harness, is_global=True, limit_usd="3", severity="critical")
        await harness.record(spend(ALICE, "1.5"), spend(BOB, "1"))
        alerts = (await harness.data("alerts", {}, user=ADMIN))["alerts"]
        assert sorted((a["user_id"], a["period"], a["severity"]) for a in alerts) == [(ALICE, "daily", "warning")]
        await harness.record(spend(ALICE, "0.5"))
        alerts = (await harness.data("alerts", {}, user=ADMIN))["alerts"]
        assert sorted((a["user_id"] or "*", a["period"]) for a in alerts) == [
            ("*", "daily"),
            (ALICE, "daily"),
            (ALICE, "monthly"),
        ]
        assert (await harness.data("alerts", {}, user=BOB))["alerts"] == []

    async def test_a_threshold_created_below_the_spend_alerts_at_once(self, harness: Harness) -> None:
        """No usage needs to arrive: creating the threshold checks the period's spend."""
        harness.clock.at = NOON
        await harness.record(spend(ALICE, "2"))
        await threshold(harness, user_id=ALICE, limit_usd="1")
        [alert] = (await harness.data("alerts", {}, user=ALICE))["alerts"]
        assert Decimal(alert["spent_usd"]) == Decimal("2")

    async def test_an_alert_whose_publish_failed_is_sent_by_the_sweep(self, replicas: list[Harness]) -> None:
        """The broker refusing the cost.alert fails the handler (the bus redelivers the usage, which is a
        duplicate by then); the stored, unconfirmed alert is published by the next sweep past the grace."""
        one, _ = replicas
        bus = one.bus
        assert isinstance(bus, CountingBus)
        await threshold(one, user_id=ALICE, limit_usd="1")
        bus.fail = 1
        with pytest.raises(RuntimeError):
            await one.record(spend(ALICE, "1"))
        assert bus.of(CostAlert) == []
        await one.tracker.sweep()
        assert bus.of(CostAlert) == []  # still within the grace: the handler may yet publish it
        one.clock.at = NOON + timedelta(minutes=1)
        await one.tracker.sweep()
        assert len(bus.of(CostAlert)) == 1
        await one.tracker.sweep()
        assert len(bus.of(CostAlert)) == 1


class TestBudgets:
    async def test_crossing_a_block_budget_publishes_block_once(self, replicas: list[Harness]) -> None:
        """Two replicas handling the crossing messages: one budget.status (block, the spend and the limit)."""
        one, two = replicas
        bus = one.bus
        assert isinstance(bus, CountingBus)
        await threshold(one, user_id=ALICE, limit_usd="0.10", action="block")
        assert bus.of(BudgetStatus) == []  # nothing spent: allowed, and nothing to say
        await asyncio.gather(*(h.record(spend(ALICE, "0.04")) for h in [one, two] * 3))
        [status] = bus.of(BudgetStatus)
        assert (status.scope_user_id, status.action, status.period) == (ALICE, BudgetAction.BLOCK, CostPeriod.DAILY)
        assert status.limit_usd == Decimal("0.10") and status.spent_usd >= Decimal("0.10")
        await two.record(spend(ALICE, "1"))
        assert len(bus.of(BudgetStatus)) == 1

    async def test_the_most_severe_crossed_action_applies(self, harness: Harness) -> None:
        """Downgrade at $1 then block at $2: downgrade, then block; a global budget is its own scope."""
        harness.clock.at = NOON
        await threshold(harness, user_id=ALICE, limit_usd="1", action="downgrade")
        await threshold(harness, user_id=ALICE, limit_usd="2", action="block")
        await threshold(harness, is_global=True, limit_usd="10", action="downgrade")
        await harness.record(spend(ALICE, "1.5"))
        await harness.record(spend(ALICE, "1"))
        await harness.record(spend(BOB, "8"))
        await eventually(lambda: _count(harness, 3))
        assert [(s.scope_user_id, s.action) for s in harness.budgets] == [
            (ALICE, BudgetAction.DOWNGRADE),
            (ALICE, BudgetAction.BLOCK),
            (None, BudgetAction.DOWNGRADE),
        ]

    async def test_a_new_period_lifts_the_budget(self, harness: Harness) -> None:
        """Blocked today; the first sweep of tomorrow publishes allow (spent 0) for the daily budget."""
        harness.clock.at = NOON
        await threshold(harness, user_id=ALICE, limit_usd="1", action="block")
        await harness.record(spend(ALICE, "1"))
        await eventually(lambda: _count(harness, 1))
        harness.clock.at = NOON + timedelta(hours=11, minutes=59)
        await harness.tracker.sweep()
        assert {s.action for s in harness.budgets} == {BudgetAction.BLOCK}  # still today (re-sent): blocked
        sent = len(harness.budgets)
        harness.clock.at = NOON + timedelta(hours=12, seconds=1)
        await harness.tracker.sweep()
        await eventually(lambda: _count(harness, sent + 1))
        lifted = harness.budgets[-1]
        assert (lifted.scope_user_id, lifted.action, lifted.spent_usd) == (ALICE, BudgetAction.ALLOW, Decimal(0))

    async def test_disabling_or_raising_the_budget_lifts_it_at_once(self, harness: Harness) -> None:
        """An edited threshold is checked immediately: a raised limit allows again, lowering it blocks."""
        harness.clock.at = NOON
        created = await threshold(harness, user_id=ALICE, limit_usd="1", action="block")
        await harness.record(spend(ALICE, "1.5"))
        update = {"op": "update", "threshold_id": created["id"]}
        await harness.data("thresholds", {**update, "limit_usd": "5"}, user=ADMIN)
        await harness.data("thresholds", {**update, "limit_usd": "1.2"}, user=ADMIN)
        await harness.data("thresholds", {**update, "enabled": False}, user=ADMIN)
        await eventually(lambda: _count(harness, 4))
        assert [s.action for s in harness.budgets] == [
            BudgetAction.BLOCK,
            BudgetAction.ALLOW,
            BudgetAction.BLOCK,
            BudgetAction.ALLOW,
        ]

    async def test_budget_states_are_resent_timed_at_their_change(self, harness: Harness) -> None:
        """The periodic re-send carries the change's time, so a router never takes it for a newer state."""
        harness.clock.at = NOON
        await threshold(harness, user_id=ALICE, limit_usd="1", action="block")
        await harness.record(spend(ALICE, "1"))
        await eventually(lambda: _count(harness, 1))
        harness.clock.at = NOON + timedelta(hours=1)  # same day: still blocked, due for a re-send
        await harness.tracker.limits.sweep(unpublished_grace_s=30, republish_s=60)
        await eventually(lambda: _count(harness, 2))
        first, again = harness.budget_envelopes
        assert again.payload == first.payload and again.occurred_at == first.occurred_at
        assert again.id != first.id


async def _count(harness: Harness, n: int) -> bool:
    return len(harness.budgets) >= n


def manual_alert(threshold_id: str = "manual:x", spent: str = "1", **fields: Any) -> Alert:
    values: dict[str, Any] = {
        "id": alert_id_for(threshold_id, CostPeriod.DAILY, DAY),
        "kind": "manual",
        "threshold_id": threshold_id,
        "scope_user_id": None,
        "period": CostPeriod.DAILY,
        "period_start": DAY,
        "spent_usd": Decimal(spent),
        "limit_usd": Decimal(1),
        "severity": Severity.INFO,
        "message": "m",
        "raised_at": NOON,
        "deliveries": (Delivery("slack", DeliveryStatus.PENDING),),
        **fields,
    }
    return Alert(**values)


@pytest.fixture
async def started(store: CostStore) -> AsyncIterator[CostStore]:
    await store.start()
    yield store
    await store.close()


class TestStoreGuards:
    async def test_concurrent_raises_of_one_crossing_store_one_alert(self, started: CostStore) -> None:
        """Twenty concurrent raise_alert calls for one threshold and period: exactly one returns True."""
        threshold_id = str(uuid.uuid4())
        alerts = [manual_alert(threshold_id, str(i)) for i in range(1, 21)]
        results = await asyncio.gather(*(started.raise_alert(a) for a in alerts))
        assert sorted(results) == [False] * 19 + [True]
        stored, counts = await started.alerts(AlertFilter())
        assert counts.total == 1 and len(stored) == 1 and len(stored[0].deliveries) == 1

    async def test_a_delivery_is_leased_to_one_sender(self, started: CostStore) -> None:
        """Of concurrent claims one wins; an expired lease can be taken over; a sent one never again."""
        alert = manual_alert()
        assert await started.raise_alert(alert)
        lease = NOON + timedelta(seconds=30)
        won = await asyncio.gather(*(started.claim_delivery(alert.id, "slack", NOON, lease) for _ in range(10)))
        assert won.count(True) == 1
        assert not await started.claim_delivery(alert.id, "slack", NOON + timedelta(seconds=29), lease)
        later = NOON + timedelta(seconds=31)
        assert await started.claim_delivery(alert.id, "slack", later, later + timedelta(seconds=30))
        await started.finish_delivery(alert.id, "slack", DeliveryStatus.SENT, None, later)
        tomorrow = NOON + timedelta(days=1)
        assert not await started.claim_delivery(alert.id, "slack", tomorrow, tomorrow + timedelta(seconds=30))
        stored = await started.get_alert(alert.id)
        assert stored is not None
        [delivery] = stored.deliveries
        assert (delivery.status, delivery.attempts, delivery.sent_at) == (DeliveryStatus.SENT, 1, later)

    async def test_a_budget_change_is_stored_once_and_only_forward(self, started: CostStore) -> None:
        """The same action twice changes nothing; an older period never overrides a newer one."""
        today = BudgetState(ALICE, CostPeriod.DAILY, BudgetAction.BLOCK, DAY, Decimal(2), Decimal(1), NOON)
        first = await started.change_budget_state(today)
        assert first is not None and first.action is BudgetAction.BLOCK
        assert await started.change_budget_state(today) is None
        yesterday = DAY - timedelta(days=1)
        stale = BudgetState(ALICE, CostPeriod.DAILY, BudgetAction.ALLOW, yesterday, Decimal(0), Decimal(1), NOON)
        assert await started.change_budget_state(stale) is None
        lifted = await started.change_budget_state(
            BudgetState(ALICE, CostPeriod.DAILY, BudgetAction.ALLOW, DAY, Decimal(0), Decimal(1), NOON)
        )
        assert lifted is not None and lifted.changed_at > first.changed_at
        assert [s.action for s in await started.budget_states()] == [BudgetAction.ALLOW]
