"""The conformance suite on the in-process memory bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.bus import Bus, RedeliveryPolicy
from libs.bus import constants as c
from libs.bus.memory import MemoryBus
from tests.bus.conformance import ROUTER, BusConformance, MakeBus, eventually, requested

FAST = RedeliveryPolicy(max_deliveries=3, base_s=0.05, cap_s=0.2)


@pytest.fixture
async def make_bus() -> AsyncIterator[MakeBus]:
    buses: list[Bus] = []

    async def make() -> Bus:
        bus = MemoryBus(policy=FAST)
        await bus.connect()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close(grace_s=1)


class TestMemoryBusConformance(BusConformance):
    DURABLE = False

    async def test_memory_a_full_dead_letter_queue_drops_its_oldest(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With the bound at 3, five dead letters leave the newest three, as RabbitMQ's drop-head does."""
        monkeypatch.setattr(c, "DEAD_LETTER_MAX_LENGTH", 3)
        bus = MemoryBus(policy=FAST)
        sent = [requested(n) for n in range(5)]
        for envelope in sent:
            await bus.publish_raw(ROUTER, envelope.encode().replace(b'"version":1', b'"version":9'))
        await bus.subscribe(ROUTER, {}, prefetch=1)
        await eventually(lambda: len(bus._queues[ROUTER]._queue) == 0 and not bus._consumers[0].in_flight)  # type: ignore[attr-defined]
        assert [i.id for i in await bus.list_dead_letters(ROUTER)] == [str(e.id) for e in sent[2:]]
        assert await bus.dead_letter_depth(ROUTER) == 3
        await bus.close()
