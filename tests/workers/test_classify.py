"""Error classification of provider answers the simulator does not produce — 4xx bodies, quota,
content filters, completions without usage — through a worker and the real SDK, against a canned provider."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from contracts.enums import ErrorType, Provider
from contracts.messages import ErrorInfo, GenerationCompleted, GenerationFailed, UsageRecorded
from libs.bus.memory import MemoryBus
from libs.llm import classify, estimate_tokens, retry_after_s
from libs.llm.prompts import build_prompt
from tests.workers.conftest import CannedProvider, Recorder, StartWorker, completion_body, generation_request

PROVIDERS = [Provider.AZURE, Provider.OPENAI]


def openai_error(message: str, code: str | None, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


AZURE_CONTENT_FILTER = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"sexual": {"filtered": True}}},
    }
}


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.value)
def provider(request: pytest.FixtureRequest) -> Provider:
    return Provider(request.param)


async def start_canned_worker(start_worker: StartWorker, provider: Provider, url: str) -> None:
    if provider is Provider.AZURE:
        await start_worker(provider, azure_openai_endpoint=url, azure_openai_api_key="azure-key")
    else:
        await start_worker(provider, openai_base_url=f"{url}/v1", openai_api_key="sk-test-canned")


async def outcome(
    bus: MemoryBus, recorder: Recorder, provider: Provider, canned: CannedProvider, start_worker: StartWorker
) -> GenerationCompleted | GenerationFailed:
    await start_canned_worker(start_worker, provider, canned.url)
    await bus.publish(generation_request(provider))
    result = (await recorder.result()).payload
    assert isinstance(result, GenerationCompleted | GenerationFailed)
    return result


async def failure(
    bus: MemoryBus, recorder: Recorder, provider: Provider, canned: CannedProvider, start_worker: StartWorker
) -> ErrorInfo:
    result = await outcome(bus, recorder, provider, canned, start_worker)
    assert isinstance(result, GenerationFailed)
    return result.error


class TestClientErrors:
    @pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
    async def test_client_errors_are_invalid_request_and_final(
        self,
        status: int,
        provider: Provider,
        canned: CannedProvider,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
    ) -> None:
        """400/401/403/404/422 are invalid_request, not retryable, with the provider's own message."""
        canned.respond(status, openai_error("Invalid value for 'temperature'.", None))
        error = await failure(bus, recorder, provider, canned, start_worker)
        assert error.type is ErrorType.INVALID_REQUEST
        assert not error.retryable
        assert error.status_code == status
        assert "Invalid value for 'temperature'." in error.message
        assert len(canned.requests) == 1  # the SDK's own retries are off

    async def test_azure_content_filter_is_a_compliance_violation(
        self, canned: CannedProvider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder
    ) -> None:
        """Azure's 400 with code content_filter is compliance_violation, not retryable."""
        canned.respond(400, AZURE_CONTENT_FILTER)
        error = await failure(bus, recorder, Provider.AZURE, canned, start_worker)
        assert error.type is ErrorType.COMPLIANCE_VIOLATION
        assert not error.retryable
        assert error.status_code == 400

    async def test_filtered_completion_is_a_compliance_violation(
        self,
        provider: Provider,
        canned: CannedProvider,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
    ) -> None:
        """A 200 whose choice finished with content_filter is compliance_violation; its tokens were billed."""
        canned.respond(200, completion_body(None, finish_reason="content_filter"))
        error = await failure(bus, recorder, provider, canned, start_worker)
        assert error.type is ErrorType.COMPLIANCE_VIOLATION
        assert not error.retryable
        (usage,) = await recorder.wait_for(UsageRecorded.TYPE)
        assert isinstance(usage.payload, UsageRecorded)
        assert usage.payload.usage.total_tokens == 18


class TestRetryableErrors:
    async def test_retry_after_ms_wins_over_retry_after(
        self,
        provider: Provider,
        canned: CannedProvider,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
    ) -> None:
        """A 429's retry-after-ms (milliseconds) is preferred to its Retry-After."""
        headers = {"retry-after-ms": "250", "retry-after": "9"}
        canned.respond(429, openai_error("Rate limit reached", "rate_limit_exceeded", "requests"), headers)
        error = await failure(bus, recorder, provider, canned, start_worker)
        assert error.type is ErrorType.RATE_LIMIT_EXCEEDED
        assert error.retryable
        assert error.retry_after_s == 0.25

    async def test_exhausted_quota_is_provider_unavailable(
        self, canned: CannedProvider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder
    ) -> None:
        """A 429 insufficient_quota is no burst limit: provider_unavailable, so the router falls back."""
        canned.respond(
            429, openai_error("You exceeded your current quota.", "insufficient_quota", "insufficient_quota")
        )
        error = await failure(bus, recorder, Provider.OPENAI, canned, start_worker)
        assert error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert error.retryable
        assert error.retry_after_s is None

    async def test_503_with_retry_after_is_provider_unavailable(
        self,
        provider: Provider,
        canned: CannedProvider,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
    ) -> None:
        """A 503 is provider_unavailable, retryable, and keeps its Retry-After."""
        canned.respond(503, openai_error("Service unavailable", None, "server_error"), {"retry-after": "3"})
        error = await failure(bus, recorder, provider, canned, start_worker)
        assert error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert error.retryable
        assert error.retry_after_s == 3.0

    async def test_408_is_the_providers_timeout(
        self,
        provider: Provider,
        canned: CannedProvider,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
    ) -> None:
        """A 408 from the provider counts as that provider's timeout."""
        canned.respond(408, openai_error("Request timed out", None, "timeout"))
        error = await failure(bus, recorder, provider, canned, start_worker)
        expected = ErrorType.AZURE_TIMEOUT if provider is Provider.AZURE else ErrorType.OPENAI_TIMEOUT
        assert error.type is expected
        assert error.status_code == 408

    async def test_unreachable_provider_is_provider_unavailable(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder
    ) -> None:
        """A refused connection is provider_unavailable, retryable."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        await start_canned_worker(start_worker, provider, f"http://127.0.0.1:{closed_port}")
        await bus.publish(generation_request(provider))
        result = (await recorder.result()).payload
        assert isinstance(result, GenerationFailed)
        assert result.error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert result.error.retryable
        assert result.error.status_code is None

    async def test_empty_content_is_an_invalid_response(
        self, canned: CannedProvider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder
    ) -> None:
        """A 200 whose message has no content is an invalid response (retryable)."""
        canned.respond(200, completion_body(None))
        error = await failure(bus, recorder, Provider.OPENAI, canned, start_worker)
        assert error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert error.message == "provider returned an invalid response (empty content)"


class TestUsage:
    async def test_missing_usage_is_estimated_and_flagged(
        self,
        provider: Provider,
        canned: CannedProvider,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
    ) -> None:
        """A completion without usage gets a deterministic estimate of both sides, flagged estimated."""
        canned.respond(200, completion_body("Monday: teaser. Wednesday: poll!", usage=False))
        result = await outcome(bus, recorder, provider, canned, start_worker)
        assert isinstance(result, GenerationCompleted)
        sent = canned.requests[0][2]["messages"]
        assert result.usage.estimated
        assert result.usage.prompt_tokens == sum(estimate_tokens(m["content"]) for m in sent)
        assert result.usage.completion_tokens == estimate_tokens("Monday: teaser. Wednesday: poll!") == 8
        (usage,) = await recorder.wait_for(UsageRecorded.TYPE)
        assert isinstance(usage.payload, UsageRecorded)
        assert usage.payload.usage.estimated

    async def test_cached_prompt_tokens_are_passed_on(
        self, provider: Provider, canned: CannedProvider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder
    ) -> None:
        """prompt_tokens_details.cached_tokens reaches usage.recorded as cached_prompt_tokens (billed cheaper)."""
        body = completion_body("Hello fans")
        body["usage"]["prompt_tokens_details"] = {"cached_tokens": 8, "audio_tokens": 0}
        canned.respond(200, body)
        result = await outcome(bus, recorder, provider, canned, start_worker)
        assert isinstance(result, GenerationCompleted)
        (usage,) = await recorder.wait_for(UsageRecorded.TYPE)
        assert isinstance(usage.payload, UsageRecorded)
        assert (usage.payload.usage.prompt_tokens, usage.payload.usage.cached_prompt_tokens) == (11, 8)
        assert not usage.payload.usage.estimated

    async def test_reported_model_and_request_id_are_kept(
        self, canned: CannedProvider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder
    ) -> None:
        """The model the provider reports (what prices are keyed by) and its x-request-id are passed on."""
        canned.respond(200, completion_body("Hello fans"), {"x-request-id": "req_abc123"})
        result = await outcome(bus, recorder, Provider.AZURE, canned, start_worker)
        assert isinstance(result, GenerationCompleted)
        assert result.model == "gpt-4o-2024-08-06"
        assert result.request_id == "req_abc123"

    async def test_request_carries_the_prompt_and_limits(
        self, provider: Provider, canned: CannedProvider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder
    ) -> None:
        """The call sends the intent's prompt, its completion limit under the provider's parameter name and
        its temperature, to the provider's path with its credential."""
        canned.respond(200, completion_body("Plan"))
        await start_canned_worker(start_worker, provider, canned.url)
        request = generation_request(provider)
        await bus.publish(request)
        await recorder.result()
        path, headers, body = canned.requests[0]
        rendered = build_prompt(request.payload.intent)  # type: ignore[attr-defined]
        assert body["messages"] == [
            {"role": "system", "content": rendered.system},
            {"role": "user", "content": rendered.user},
        ]
        assert body["temperature"] == rendered.prompt.temperature
        if provider is Provider.AZURE:
            assert path == "/openai/deployments/gpt-4/chat/completions?api-version=2024-06-01"
            assert headers["api-key"] == "azure-key"
            assert body["max_tokens"] == rendered.prompt.max_tokens
        else:
            assert path == "/v1/chat/completions"
            assert headers["Authorization"] == "Bearer sk-test-canned"
            assert body["max_completion_tokens"] == rendered.prompt.max_tokens


class TestClassifyFunction:
    def test_foreign_exceptions_are_not_provider_failures(self) -> None:
        """An exception that is no provider failure is not classified (the caller re-raises it)."""
        assert classify(KeyError("x"), Provider.OPENAI, timeout_s=1) is None
        assert classify(ValueError("x"), Provider.AZURE, timeout_s=1) is None

    def test_retry_after_reads_an_http_date(self) -> None:
        """Retry-After as an HTTP date is the seconds until then."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        headers = {"retry-after": format_datetime(now + timedelta(seconds=30), usegmt=True)}
        assert retry_after_s(headers, now=now.timestamp()) == 30.0

    def test_retry_after_ignores_garbage_and_clamps_the_past(self) -> None:
        """Unparseable values give None; a date in the past or a negative delay gives 0."""
        assert retry_after_s({"retry-after": "soon"}) is None
        assert retry_after_s({}) is None
        assert retry_after_s({"retry-after": "-4"}) == 0.0
        assert retry_after_s({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}) == 0.0
        assert retry_after_s({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0
