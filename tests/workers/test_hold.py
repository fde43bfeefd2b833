"""The kill switch at the workers: while it is off no provider is called — a generation request goes back on
the bus and waits — and when it is on again the request is answered, once."""

from __future__ import annotations

import asyncio

from contracts.enums import Provider
from contracts.messages import GenerationCompleted
from libs.bus.memory import MemoryBus
from libs.flags import FlagUpdate, MemoryFlagStore
from libs.flags.client import open_flag_client
from libs.flags.settings import FlagSettings
from libs.runtime import Shared
from libs.simulators import LLMSimulator
from tests.workers.conftest import Recorder, StartWorker, generation_request


class TestKillSwitch:
    async def test_requests_wait_while_off_and_are_answered_once_when_on(
        self, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator, start_worker: StartWorker
    ) -> None:
        """Off: no provider call for 2.5 s and no result; on: exactly one call and one generation.completed."""
        store = MemoryFlagStore()
        switch = open_flag_client(FlagSettings(redis_url=None), store=store)
        await switch.start()
        try:
            await switch.update(FlagUpdate(hybrid_orchestrator_enabled=False), updated_by="ops")
            await start_worker(Provider.OPENAI, shared=Shared(flag_store=store), flags_refresh_s=0.1)
            await bus.publish(generation_request(Provider.OPENAI))
            await asyncio.sleep(2.5)
            assert sim.request_count() == 0 and recorder.results() == []
            await switch.update(FlagUpdate(hybrid_orchestrator_enabled=True), updated_by="ops")
            [result] = await recorder.wait_for(GenerationCompleted.TYPE, timeout=5)
            await recorder.settle()
            assert sim.request_count() == 1 and len(recorder.results()) == 1
            assert result.payload.provider is Provider.OPENAI  # type: ignore[attr-defined]
        finally:
            await switch.stop()

    async def test_the_environment_switch_holds_whatever_the_store_says(
        self, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator, start_worker: StartWorker
    ) -> None:
        """HYBRID_ORCHESTRATOR_ENABLED=false in the worker's settings: held although the store says on."""
        await start_worker(Provider.AZURE, hybrid_orchestrator_enabled=False)
        await bus.publish(generation_request(Provider.AZURE))
        await asyncio.sleep(1.5)
        assert sim.request_count() == 0 and recorder.results() == []
