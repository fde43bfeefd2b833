"""The router's health reports: each provider's circuit (azureProvider, openaiProvider) and the orchestrator."""

from __future__ import annotations

import asyncio

from contracts.enums import Provider
from libs.flags import FlagSettings, FlagUpdate, MemoryFlagStore, open_flag_client
from libs.runtime.health import run_checks
from services.router.breaker import Breakers
from services.router.service import health_reports
from tests.router.test_breaker import Clock


class TestHealthReports:
    async def test_an_open_circuit_fails_its_provider_only(self) -> None:
        """Failures opening azure's circuit fail azureProvider (with since when) and leave openaiProvider ok;
        a success closes it and clears the report."""
        clock = Clock()
        breakers = Breakers(failure_threshold=2, open_s=30, probe_timeout_s=60, clock=clock)
        flags = open_flag_client(FlagSettings(redis_url=None), store=MemoryFlagStore())
        reports = health_reports(breakers, flags, [])
        assert set((await run_checks(reports)).values()) == {"ok"}
        breakers[Provider.AZURE].record_failure()
        breakers[Provider.AZURE].record_failure()
        clock.now += 12
        results = await run_checks(reports)
        assert results["azureProvider"] == "Unhealthy: circuit open for 12 s, after 2 failed calls"
        assert (results["openaiProvider"], results["orchestrator"]) == ("ok", "ok")
        clock.now += 30
        assert (await run_checks(reports))["azureProvider"].startswith("Unhealthy: circuit half_open for 42 s")
        breakers[Provider.AZURE].record_success()
        assert (await run_checks(reports))["azureProvider"] == "ok"

    async def test_orchestrator_reports_held_work_and_a_dead_task(self) -> None:
        """The kill switch off, or a background task that ended, fail the orchestrator report."""
        store = MemoryFlagStore()
        flags = open_flag_client(FlagSettings(redis_url=None), store=store)
        await flags.start()
        task = asyncio.create_task(asyncio.sleep(0), name="router.deadline_sweep")
        reports = health_reports(Breakers(failure_threshold=2, open_s=30, probe_timeout_s=60), flags, [task])
        try:
            await flags.update(FlagUpdate(hybrid_orchestrator_enabled=False), updated_by="ops")
            assert (await run_checks(reports))["orchestrator"].startswith("Unhealthy: new work is held")
            await flags.update(FlagUpdate(hybrid_orchestrator_enabled=True), updated_by="ops")
            await task
            ended = (await run_checks(reports))["orchestrator"]
            assert ended == "Unhealthy: background task ended: router.deadline_sweep"
        finally:
            await flags.stop()
