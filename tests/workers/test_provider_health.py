"""A worker's provider report (azureProvider, openaiProvider): judged from its latest calls' outcomes."""

from __future__ import annotations

import pytest

from contracts.enums import ErrorType, Provider
from contracts.messages import ErrorInfo, GenerationCompleted, GenerationFailed
from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.llm.health import FAILURE_STREAK, CallOutcomes, ProviderUnhealthy
from libs.runtime import Runtime
from libs.runtime.health import run_checks
from services.azure_worker.service import create as create_azure
from tests.workers.conftest import CannedProvider, Recorder, completion_body, generation_request


def _error(type_: ErrorType, status: int | None = None) -> ErrorInfo:
    return ErrorInfo(type=type_, message="m", retryable=True, status_code=status)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestCallOutcomes:
    def test_no_call_yet_is_healthy(self) -> None:
        """Before any call nothing says the provider is down: the report passes."""
        CallOutcomes(Provider.AZURE).raise_if_failing()

    def test_a_streak_of_provider_failures_fails_with_the_latest(self) -> None:
        """FAILURE_STREAK provider-side failures in a row fail the report, naming the latest and its age."""
        clock = FakeClock()
        outcomes = CallOutcomes(Provider.OPENAI, clock=clock)
        outcomes.record(None)
        for _ in range(FAILURE_STREAK - 1):
            outcomes.record(_error(ErrorType.PROVIDER_UNAVAILABLE, 503))
        outcomes.raise_if_failing()
        outcomes.record(_error(ErrorType.OPENAI_TIMEOUT))
        clock.now += 7
        with pytest.raises(ProviderUnhealthy, match=r"last 3 calls failed, latest openai_timeout 7 s ago"):
            outcomes.raise_if_failing()

    def test_refused_requests_do_not_count_and_an_answer_resets(self) -> None:
        """An invalid request or a content refusal says nothing about the provider; one answer ends a streak."""
        outcomes = CallOutcomes(Provider.AZURE)
        for _ in range(FAILURE_STREAK):
            outcomes.record(_error(ErrorType.INVALID_REQUEST, 400))
            outcomes.record(_error(ErrorType.COMPLIANCE_VIOLATION))
        outcomes.raise_if_failing()
        for _ in range(FAILURE_STREAK):
            outcomes.record(_error(ErrorType.INVALID_REQUEST, 401))  # a refused key is the provider's problem
        with pytest.raises(ProviderUnhealthy, match=r"HTTP 401"):
            outcomes.raise_if_failing()
        outcomes.record(None)
        outcomes.raise_if_failing()


class TestWorkerReport:
    async def test_failing_provider_fails_the_report_not_readiness(
        self, bus: MemoryBus, recorder: Recorder, canned: CannedProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Three 503s from the provider fail azureProvider while readiness stays ok; one answer clears it."""
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", canned.url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
        monkeypatch.delenv("REDIS_URL", raising=False)
        runtime = Runtime(bus=bus, settings=CommonSettings())
        service = await create_azure(runtime)
        await service.start(runtime)
        try:
            for _ in range(FAILURE_STREAK):
                canned.respond(503, {"error": {"message": "overloaded", "code": None}})
                await bus.publish(generation_request(Provider.AZURE))
            failed = await recorder.wait_for(GenerationFailed.TYPE, FAILURE_STREAK)
            assert len(failed) == FAILURE_STREAK
            report = (await run_checks(service.reports))["azureProvider"]
            assert report.startswith("ProviderUnhealthy: last 3 calls failed, latest provider_unavailable (HTTP 503)")
            assert set((await run_checks(service.checks)).values()) == {"ok"}
            canned.respond(200, completion_body("Plan"))
            await bus.publish(generation_request(Provider.AZURE))
            await recorder.wait_for(GenerationCompleted.TYPE)
            assert await run_checks(service.reports) == {"azureProvider": "ok"}
        finally:
            await service.stop()
