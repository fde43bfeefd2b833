"""An of-sender on the memory bus against the platform simulator, with a sink standing in for the router."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts import Envelope
from contracts.messages import DeliveryApproved, DeliveryCompleted, DeliveryFailed, DeliveryScheduled
from contracts.routing import ROUTER
from libs.bus import RedeliveryPolicy
from libs.bus.memory import MemoryBus
from libs.flags import FlagStore
from libs.runtime import Runtime, Service, Shared
from libs.simulators import PlatformLimits, PlatformSimulator
from services.of_sender.config import OfSenderSettings
from services.of_sender.service import create
from services.of_sender.store import MemoryMessageStore, MessageStore

FAST_REDELIVERY = RedeliveryPolicy(max_deliveries=3, base_s=0.01, cap_s=0.05)
WAIT_S = 10.0
# Short limits so that a test sees several windows in well under a second.
LIMIT, WINDOW_S, GAP_S = 2, 0.5, 0.2


def sender_settings(**overrides: Any) -> OfSenderSettings:
    values: dict[str, Any] = {
        "database_url": None,
        "redis_url": None,
        "onlyfans_api_token": "token",
        "of_account_limit": LIMIT,
        "of_account_window_s": WINDOW_S,
        "of_recipient_min_interval_s": GAP_S,
        # Absorbs the jitter between the last check and the arrival (the simulator measures on arrival).
        "of_safety_margin_s": 0.05,
        "of_retry_base_s": 0.05,
        "of_retry_cap_s": 0.1,
        "of_rate_limited_delay_s": 0.05,
        "rate_limiter_down_retry_s": 0.05,
        "of_lookup_delay_s": 0.1,
    }
    values.update(overrides)
    return OfSenderSettings(**values)


@dataclass
class RouterSink:
    """Collects what the of-sender reports to the router."""

    bus: MemoryBus
    reports: dict[uuid.UUID, list[Envelope]] = field(default_factory=lambda: defaultdict(list))
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> None:
        types = (DeliveryScheduled.TYPE, DeliveryCompleted.TYPE, DeliveryFailed.TYPE)
        await self.bus.subscribe(ROUTER, dict.fromkeys(types, self._collect))

    async def _collect(self, envelope: Envelope) -> None:
        async with self._arrived:
            self.reports[envelope.payload.delivery_id].append(envelope)  # type: ignore[attr-defined]
            self._arrived.notify_all()

    def of(self, delivery_id: uuid.UUID, kind: type) -> list[Any]:
        return [e.payload for e in self.reports[delivery_id] if isinstance(e.payload, kind)]

    async def wait(self, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(check), timeout)

    async def final(self, delivery_id: uuid.UUID, timeout: float = WAIT_S) -> DeliveryCompleted | DeliveryFailed:
        """The first delivery.completed / delivery.failed of `delivery_id`."""

        def done() -> bool:
            return bool(self.of(delivery_id, DeliveryCompleted) or self.of(delivery_id, DeliveryFailed))

        await self.wait(done, timeout)
        return (self.of(delivery_id, DeliveryCompleted) + self.of(delivery_id, DeliveryFailed))[0]  # type: ignore[no-any-return]


@dataclass
class SenderHarness:
    bus: MemoryBus
    sim: PlatformSimulator
    store: MessageStore
    sink: RouterSink
    service: Service

    @classmethod
    async def start(
        cls,
        sim: PlatformSimulator,
        settings: OfSenderSettings,
        store: MessageStore | None = None,
        bus: MemoryBus | None = None,
        flag_store: FlagStore | None = None,
    ) -> SenderHarness:
        bus = bus or MemoryBus(policy=FAST_REDELIVERY)
        store = store or MemoryMessageStore()
        settings = settings.model_copy(update={"onlyfans_api_url": sim.url})
        # flag_store: the flags a test flips (libs.flags), shared as the embedded mode shares them
        runtime = Runtime(bus=bus, settings=settings, shared=Shared(flag_store=flag_store))
        service = await create(runtime, store=store)
        await service.start(runtime)
        sink = RouterSink(bus)
        await sink.start()
        return cls(bus, sim, store, sink, service)

    async def close(self) -> None:
        await self.bus.close(grace_s=1.0)
        await self.service.stop()

    async def approve(
        self, account: str = "acct", fan: str = "fan", *, delivery_id: uuid.UUID | None = None
    ) -> Envelope:
        envelope = approval(account, fan, delivery_id=delivery_id)
        await self.bus.publish(envelope)
        return envelope


def approval(account: str = "acct", fan: str = "fan", *, delivery_id: uuid.UUID | None = None) -> Envelope:
    """A delivery.approved for `fan`, due now."""
    payload = DeliveryApproved(
        delivery_id=delivery_id or uuid.uuid4(),
        account_id=account,
        recipient_id=fan,
        text=f"hello {fan}",
        slot_at=datetime.now(UTC),
    )
    return Envelope.new(payload, workflow_id=uuid.uuid4(), user_id=account)


def platform(
    limit: int = LIMIT, window_s: float = WINDOW_S, gap_s: float = GAP_S, *, honour_idempotency: bool = True
) -> PlatformSimulator:
    limits = PlatformLimits(account_limit=limit, window_s=window_s, recipient_min_interval_s=gap_s)
    return PlatformSimulator(limits, honour_idempotency=honour_idempotency)


def elapsed(since: float) -> float:
    return time.monotonic() - since
