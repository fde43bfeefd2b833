"""The conformance suite on the in-process memory bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.bus import Bus, RedeliveryPolicy
from libs.bus.memory import MemoryBus
from tests.bus.conformance import BusConformance, MakeBus

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
