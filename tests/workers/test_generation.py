"""Both LLM workers end to end on the memory bus: generation.requested → the real openai SDK → the real LLM
simulator → generation.completed / generation.failed and usage.recorded, as the router and cost-tracker see them."""

from __future__ import annotations

import time

import pytest

from contracts.enums import ErrorType, IntentType, Provider
from contracts.messages import GenerationCompleted, GenerationFailed, UsageRecorded
from libs.bus.memory import MemoryBus
from libs.llm.prompts import build_prompt
from libs.simulators import LLMSimulator
from tests.workers.conftest import Recorder, StartWorker, generation_request, tokens

PROVIDERS = [Provider.AZURE, Provider.OPENAI]
DEFAULT_MODEL = {Provider.AZURE: "gpt-4", Provider.OPENAI: "gpt-4o-mini"}
TIMEOUT_TYPE = {Provider.AZURE: ErrorType.AZURE_TIMEOUT, Provider.OPENAI: ErrorType.OPENAI_TIMEOUT}


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.value)
def provider(request: pytest.FixtureRequest) -> Provider:
    return Provider(request.param)


class TestCompletion:
    async def test_request_yields_completion_and_usage_with_simulator_token_counts(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A request becomes generation.completed and usage.recorded, children of the request, whose token
        counts are the simulator's real counts of the prompt sent and the text returned."""
        await start_worker(provider)
        request = generation_request(provider)
        await bus.publish(request)
        (completed,) = await recorder.wait_for(GenerationCompleted.TYPE)
        (usage,) = await recorder.wait_for(UsageRecorded.TYPE)

        result = completed.payload
        assert isinstance(result, GenerationCompleted)
        rendered = build_prompt(request.payload.intent)  # type: ignore[attr-defined]
        assert result.provider is provider
        assert result.model == DEFAULT_MODEL[provider]
        assert result.content.startswith("Content plan [sim-")
        assert result.usage.prompt_tokens == tokens(rendered.system) + tokens(rendered.user)
        assert result.usage.completion_tokens == tokens(result.content)
        assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
        assert not result.usage.estimated
        assert result.latency_ms > 0
        recorded = usage.payload
        assert isinstance(recorded, UsageRecorded)
        assert recorded.usage == result.usage
        assert recorded.generation_id == request.id
        assert recorded.workflow_type is IntentType.CONTENT_PLANNING
        assert recorded.model == result.model
        for child in (completed, usage):
            assert child.causation_id == request.id
            assert child.workflow_id == request.workflow_id
            assert child.user_id == request.user_id
        assert sim.request_count(provider.value) == 1

    @pytest.mark.parametrize(
        ("intent_type", "marker"),
        [
            (IntentType.CONTENT_PLANNING, "Content plan"),
            (IntentType.CONTENT_VALIDATION, "Verdict: APPROVED"),
            (IntentType.MESSAGE_GENERATION, "Thanks for being here"),
            (IntentType.CAMPAIGN_EXECUTION, "Campaign [sim-"),
        ],
    )
    async def test_each_intent_type_gets_its_own_prompt(
        self,
        intent_type: IntentType,
        marker: str,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
    ) -> None:
        """Every intent type's prompt asks for its kind of work (the simulator answers by the task named)."""
        await start_worker(Provider.OPENAI)
        await bus.publish(generation_request(Provider.OPENAI, intent_type))
        (completed,) = await recorder.wait_for(GenerationCompleted.TYPE)
        assert isinstance(completed.payload, GenerationCompleted)
        assert marker in completed.payload.content

    async def test_request_model_overrides_the_configured_model(
        self, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A request naming a model is answered by that model (OpenAI routes by the body's model)."""
        await start_worker(Provider.OPENAI)
        await bus.publish(generation_request(Provider.OPENAI, model="gpt-4o"))
        (completed,) = await recorder.wait_for(GenerationCompleted.TYPE)
        assert isinstance(completed.payload, GenerationCompleted)
        assert completed.payload.model == "gpt-4o"

    async def test_azure_calls_the_configured_deployment(
        self, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """The Azure worker calls /openai/deployments/{AZURE_OPENAI_DEPLOYMENT}/chat/completions."""
        await start_worker(Provider.AZURE, azure_openai_deployment="planner-gpt4")
        await bus.publish(generation_request(Provider.AZURE))
        await recorder.wait_for(GenerationCompleted.TYPE)
        assert sim.counts().by_path == {"/openai/deployments/planner-gpt4/chat/completions": 1}


class TestFaults:
    async def _failure(
        self, bus: MemoryBus, recorder: Recorder, provider: Provider, **request: float
    ) -> GenerationFailed:
        envelope = generation_request(provider, **request)  # type: ignore[arg-type]
        await bus.publish(envelope)
        (failed,) = await recorder.wait_for(GenerationFailed.TYPE)
        assert failed.causation_id == envelope.id
        assert isinstance(failed.payload, GenerationFailed)
        assert failed.payload.provider is provider
        return failed.payload

    async def test_rate_limit_is_retryable_with_retry_after(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A 429 with Retry-After: 7 is rate_limit_exceeded, retryable, retry_after_s 7, and bills nothing."""
        await start_worker(provider)
        sim.add_fault("rate_limit", retry_after=7)
        failed = await self._failure(bus, recorder, provider)
        assert failed.error.type is ErrorType.RATE_LIMIT_EXCEEDED
        assert failed.error.retryable
        assert failed.error.retry_after_s == 7.0
        assert failed.error.status_code == 429
        await recorder.settle()
        assert recorder.of(UsageRecorded.TYPE) == []

    async def test_fractional_retry_after_is_kept(
        self, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """Azure's fractional Retry-After ("1.5") is read as 1.5 s."""
        await start_worker(Provider.AZURE)
        sim.add_fault("rate_limit", retry_after=1.5)
        failed = await self._failure(bus, recorder, Provider.AZURE)
        assert failed.error.retry_after_s == 1.5

    async def test_server_error_is_provider_unavailable(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A 500 is provider_unavailable and retryable."""
        await start_worker(provider)
        sim.add_fault("server_error")
        failed = await self._failure(bus, recorder, provider)
        assert failed.error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert failed.error.retryable
        assert failed.error.status_code == 500

    async def test_hang_times_out_with_the_providers_timeout_type(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A hung call ends at the worker's timeout as azure_timeout / openai_timeout, retryable."""
        timeout = {"azure_timeout_s": 0.3} if provider is Provider.AZURE else {"openai_timeout_s": 0.3}
        await start_worker(provider, **timeout)
        sim.add_fault("hang")
        started = time.monotonic()
        failed = await self._failure(bus, recorder, provider)
        assert 0.3 <= time.monotonic() - started < 2.0
        assert failed.error.type is TIMEOUT_TYPE[provider]
        assert failed.error.retryable
        assert "0.3s" in failed.error.message

    async def test_request_timeout_bounds_the_call_below_the_worker_timeout(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """The call's budget is min(worker timeout, request timeout_s): a 0.25 s request times out in time."""
        await start_worker(provider)  # 45 s / 30 s
        sim.add_fault("hang")
        started = time.monotonic()
        failed = await self._failure(bus, recorder, provider, timeout_s=0.25)
        assert time.monotonic() - started < 2.0
        assert failed.error.type is TIMEOUT_TYPE[provider]
        assert failed.latency_ms >= 250

    async def test_malformed_json_is_an_invalid_response(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A 200 whose body is cut short is provider_unavailable, retryable, "provider returned an invalid response"."""
        await start_worker(provider)
        sim.add_fault("malformed")
        failed = await self._failure(bus, recorder, provider)
        assert failed.error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert failed.error.retryable
        assert failed.error.message.startswith("provider returned an invalid response")

    async def test_bad_shape_is_an_invalid_response_that_still_bills(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A 200 without choices is an invalid response; the usage it reports was billed and is recorded."""
        await start_worker(provider)
        sim.add_fault("bad_shape")
        failed = await self._failure(bus, recorder, provider)
        assert failed.error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert failed.error.retryable
        assert failed.error.message == "provider returned an invalid response (no choices)"
        (usage,) = await recorder.wait_for(UsageRecorded.TYPE)
        assert isinstance(usage.payload, UsageRecorded)
        assert usage.payload.usage.total_tokens > 0
        assert not usage.payload.usage.estimated
