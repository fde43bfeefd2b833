"""The rate-limiter on the memory bus: a slot per delivery, the approval delayed to it, the router told the
slot; the down policies when Redis is unreachable."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts import Envelope
from contracts.enums import ErrorType
from contracts.messages import DeliveryApproved, DeliveryFailed, DeliveryRequested, DeliveryScheduled
from contracts.rate_window import RateWindowQuery
from contracts.routing import OF_SENDER, RATE_LIMITER, ROUTER
from libs.bus import RedeliveryPolicy
from libs.bus.memory import MemoryBus
from libs.ratelimit import DownPolicy
from libs.runtime import Runtime
from services.rate_limiter.config import RateLimiterSettings
from services.rate_limiter.service import create
from tests.delivery.compliance import window_violations

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
LIMIT, WINDOW_S = 2, 0.4


@dataclass
class Collected:
    envelope: Envelope
    at: float  # time.time() when it was handed to the consumer


@dataclass
class Listener:
    """Stands in for the router and the of-sender: records what reaches them, and when."""

    got: list[Collected] = field(default_factory=list)

    async def handle(self, envelope: Envelope) -> None:
        self.got.append(Collected(envelope, time.time()))

    def of(self, kind: type) -> list[Collected]:
        return [c for c in self.got if isinstance(c.envelope.payload, kind)]

    async def wait_for(self, kind: type, count: int, timeout: float = 5.0) -> list[Collected]:
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < count:
            assert time.monotonic() < deadline, f"{count} {kind.__name__} expected, got {len(self.of(kind))}"
            await asyncio.sleep(0.01)
        return self.of(kind)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def bus(settings_overrides: dict[str, Any]) -> AsyncIterator[tuple[MemoryBus, Listener]]:
    values: dict[str, Any] = {
        "redis_url": None,
        "of_account_limit": LIMIT,
        "of_account_window_s": WINDOW_S,
        "of_recipient_min_interval_s": 0.1,
        "of_safety_margin_s": 0.0,
        "rate_limiter_down_retry_s": 0.05,
        **settings_overrides,
    }
    memory = MemoryBus(policy=RedeliveryPolicy(max_deliveries=3, base_s=0.01, cap_s=0.05))
    runtime = Runtime(bus=memory, settings=RateLimiterSettings(**values))
    service = await create(runtime)
    await service.start(runtime)
    listener = Listener()
    await memory.subscribe(ROUTER, {DeliveryScheduled.TYPE: listener.handle, DeliveryFailed.TYPE: listener.handle})
    await memory.subscribe(OF_SENDER, {DeliveryApproved.TYPE: listener.handle})
    yield memory, listener
    await memory.close(grace_s=1)
    await service.stop()


def request(account: str = "acct", fan: str = "fan") -> Envelope:
    payload = DeliveryRequested(delivery_id=uuid.uuid4(), account_id=account, recipient_id=fan, text="hi")
    return Envelope.new(payload, workflow_id=uuid.uuid4(), user_id=account)


class TestRateLimiterService:
    async def test_handles_delivery_requests_and_window_queries(self, bus: tuple[MemoryBus, Listener]) -> None:
        """The service consumes delivery.requested on its queues and rate.window.query on its query lane."""
        runtime = Runtime(bus=MemoryBus(), settings=RateLimiterSettings(redis_url=None))
        service = await create(runtime)
        assert service.name == RATE_LIMITER
        assert set(service.handlers) == {DeliveryRequested.TYPE, RateWindowQuery.TYPE}
        await service.checks["planner"]()

    async def test_approvals_arrive_at_their_slots_never_before(self, bus: tuple[MemoryBus, Listener]) -> None:
        """Five requests at once: the router hears each slot at once; each approval reaches the of-sender
        no earlier than its slot; the slots respect the window."""
        memory, listener = bus
        sent = [request(fan=f"fan{i}") for i in range(5)]
        for envelope in sent:
            await memory.publish(envelope)
        scheduled = await listener.wait_for(DeliveryScheduled, 5, timeout=1.0)
        approved = await listener.wait_for(DeliveryApproved, 5)
        slots = {c.envelope.payload.delivery_id: c.envelope.payload.slot_at for c in scheduled}  # type: ignore[attr-defined]
        for c in approved:
            approval = c.envelope.payload
            assert isinstance(approval, DeliveryApproved) and approval.slot_at == slots[approval.delivery_id]
            assert c.at >= approval.slot_at.timestamp() - 0.002
            assert c.envelope.causation_id in {e.id for e in sent}
        assert window_violations([s.timestamp() for s in slots.values()], LIMIT, WINDOW_S - 0.001) == []

    async def test_a_redelivered_request_publishes_the_same_envelopes(self, bus: tuple[MemoryBus, Listener]) -> None:
        """The same request twice: the same slot, and envelopes with the same ids (consumers dedupe)."""
        memory, listener = bus
        envelope = request()
        await memory.publish(envelope)
        await listener.wait_for(DeliveryApproved, 1)
        await memory.publish(envelope)
        approved = await listener.wait_for(DeliveryApproved, 2)
        first, again = approved[0].envelope, approved[1].envelope
        assert (first.id, first.payload) == (again.id, again.payload)
        scheduled = listener.of(DeliveryScheduled)
        assert scheduled[0].envelope.id == scheduled[1].envelope.id

    @pytest.mark.parametrize("settings_overrides", [{"of_account_hourly_limit": 3}])
    async def test_the_hourly_cap_pushes_slots_past_the_hour(self, bus: tuple[MemoryBus, Listener]) -> None:
        """OF_ACCOUNT_HOURLY_LIMIT=3: three requests are planned within the window's pace, the fourth an hour
        after the first (the router hears that slot at once)."""
        memory, listener = bus
        for i in range(4):
            await memory.publish(request(fan=f"fan{i}"))
        scheduled = await listener.wait_for(DeliveryScheduled, 4, timeout=1.0)
        slots = sorted(c.envelope.payload.slot_at.timestamp() for c in scheduled)  # type: ignore[attr-defined]
        assert slots[2] - slots[0] < 1 and slots[3] - slots[0] == pytest.approx(3600, abs=0.002)


class TestDownPolicy:
    @pytest.mark.parametrize(
        "settings_overrides", [{"redis_url": UNREACHABLE_REDIS, "rate_limiter_down_max_hold_s": 0.25}]
    )
    async def test_hold_approves_nothing_and_fails_after_the_bound(self, bus: tuple[MemoryBus, Listener]) -> None:
        """Redis unreachable, policy hold: no approval; the router hears of the hold once, then the
        delivery fails with the reason after RATE_LIMITER_DOWN_MAX_HOLD_S."""
        memory, listener = bus
        await memory.publish(request())
        [failed] = await listener.wait_for(DeliveryFailed, 1)
        error = failed.envelope.payload.error  # type: ignore[attr-defined]
        assert error.type is ErrorType.PROVIDER_UNAVAILABLE and not error.retryable
        [held] = listener.of(DeliveryScheduled)
        assert held.envelope.payload.error.retryable and "held" in held.envelope.payload.error.message  # type: ignore[attr-defined]
        assert listener.of(DeliveryApproved) == []

    @pytest.mark.parametrize(
        "settings_overrides",
        [{"redis_url": UNREACHABLE_REDIS, "rate_limiter_down_policy": DownPolicy.BYPASS_WITH_WARNING}],
    )
    async def test_bypass_plans_with_the_replicas_conservative_limit(self, bus: tuple[MemoryBus, Listener]) -> None:
        """bypass_with_warning approves without Redis, one per account and window on this replica."""
        memory, listener = bus
        for i in range(3):
            await memory.publish(request(fan=f"fan{i}"))
        approved = await listener.wait_for(DeliveryApproved, 3, timeout=3)
        times = [c.envelope.payload.slot_at.timestamp() for c in approved]  # type: ignore[attr-defined]
        assert window_violations(times, 1, WINDOW_S - 0.001) == []
