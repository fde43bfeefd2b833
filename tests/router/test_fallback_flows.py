"""Every row of the fallback matrix end to end on the memory bus, with the workers scripting the fault,
and the bounds every workflow obeys (non-retryable errors, attempts, deadline)."""

from __future__ import annotations

import pytest

from contracts.enums import ErrorType, IntentType, Provider, ProviderState, WorkflowStatus
from contracts.messages import WorkflowFailed
from services.router.fallback import RuleOverride
from tests.router.harness import TEST_MATRIX, Harness, fail, hang, intent, ok


def calls(harness: Harness, provider: Provider) -> int:
    return len(harness.workers.calls[provider])


class TestMatrixRows:
    async def test_azure_timeout_falls_back_to_openai(self, harness: Harness) -> None:
        """An azure timeout moves the work to openai, recorded in fallback_history."""
        harness.workers.script(Provider.AZURE, fail(ErrorType.AZURE_TIMEOUT))
        view, finished = await harness.run(intent(IntentType.CONTENT_PLANNING))
        assert view.status is WorkflowStatus.COMPLETED
        assert view.current_provider is Provider.OPENAI
        assert isinstance(finished.payload, type(finished.payload)) and finished.payload.provider is Provider.OPENAI  # type: ignore[attr-defined]
        assert view.provider_states.azure is ProviderState.TIMEOUT
        assert view.provider_states.openai is ProviderState.COMPLETED
        [entry] = view.fallback_history
        assert (entry.from_provider, entry.to) == (Provider.AZURE, "openai")
        assert entry.reason.startswith("azure_timeout")
        assert view.retry_attempts.openai == 1 and view.retry_attempts.azure == 0

    async def test_azure_rate_limit_falls_back_to_openai(self, harness: Harness) -> None:
        """An azure 429 moves the work to openai (azure's Retry-After does not delay openai)."""
        harness.workers.script(Provider.AZURE, fail(ErrorType.RATE_LIMIT_EXCEEDED, retry_after_s=30, status_code=429))
        view, _ = await harness.run(intent(IntentType.CONTENT_PLANNING))
        assert view.status is WorkflowStatus.COMPLETED and view.current_provider is Provider.OPENAI
        assert view.fallback_history[0].reason.startswith("azure_rate_limited")
        gap = harness.workers.calls[Provider.OPENAI][0].at - harness.workers.calls[Provider.AZURE][0].at
        assert gap < 5

    async def test_openai_timeout_falls_back_to_azure(self, harness: Harness) -> None:
        """An openai timeout moves the work to azure."""
        harness.workers.script(Provider.OPENAI, fail(ErrorType.OPENAI_TIMEOUT))
        view, _ = await harness.run(intent(IntentType.MESSAGE_GENERATION))
        assert view.status is WorkflowStatus.COMPLETED and view.current_provider is Provider.AZURE
        assert (view.fallback_history[0].from_provider, view.fallback_history[0].to) == (Provider.OPENAI, "azure")
        assert view.retry_attempts.azure == 1

    async def test_openai_rate_limit_is_queued_and_retried_after_the_delay(self, harness: Harness) -> None:
        """An openai 429 retries openai itself, no sooner than the row's delay."""
        harness.workers.script(Provider.OPENAI, fail(ErrorType.RATE_LIMIT_EXCEEDED, status_code=429), ok())
        view, _ = await harness.run(intent())
        assert view.status is WorkflowStatus.COMPLETED and view.current_provider is Provider.OPENAI
        first, second = harness.workers.calls[Provider.OPENAI]
        assert second.at - first.at >= TEST_MATRIX["openai_rate_limited"].delay_s  # type: ignore[operator]
        assert calls(harness, Provider.AZURE) == 0
        [entry] = view.fallback_history
        assert (entry.from_provider, entry.to) == (Provider.OPENAI, "queue")
        assert view.retry_attempts.openai == 1

    async def test_queued_retry_honours_a_longer_retry_after(self, harness: Harness) -> None:
        """When openai's Retry-After is longer than the row's delay, the retry waits for Retry-After."""
        harness.workers.script(Provider.OPENAI, fail(ErrorType.RATE_LIMIT_EXCEEDED, retry_after_s=0.6), ok())
        await harness.run(intent())
        first, second = harness.workers.calls[Provider.OPENAI]
        assert second.at - first.at >= 0.6

    async def test_openai_rate_limited_twice_fails(self, harness: Harness) -> None:
        """openai_rate_limited allows one queued retry (max_retries 0): a second 429 fails the workflow."""
        harness.workers.script(Provider.OPENAI, fail(ErrorType.RATE_LIMIT_EXCEEDED))
        view, finished = await harness.run(intent())
        assert view.status is WorkflowStatus.FAILED
        assert calls(harness, Provider.OPENAI) == 2
        assert isinstance(finished.payload, WorkflowFailed)
        assert "openai_rate_limited occurred 2 times" in finished.payload.error.message

    async def test_both_providers_down_fails_with_the_reason_within_the_deadline(self, harness: Harness) -> None:
        """With both providers answering 5xx the workflow fails, saying why, long before its deadline."""
        for provider in Provider:
            harness.workers.script(provider, fail(ErrorType.PROVIDER_UNAVAILABLE, status_code=503))
        view, finished = await harness.run(intent(IntentType.CONTENT_PLANNING))
        assert view.status is WorkflowStatus.FAILED
        assert isinstance(finished.payload, WorkflowFailed)
        error = finished.payload.error
        assert error.type is ErrorType.PROVIDER_UNAVAILABLE and not error.retryable
        assert "provider_unavailable occurred 3 times" in error.message
        assert view.error == error
        assert [e.to for e in view.fallback_history] == ["openai", "azure"]
        assert calls(harness, Provider.AZURE) == 2 and calls(harness, Provider.OPENAI) == 1
        assert view.completed_at is not None and view.completed_at < view.deadline_at

    async def test_invalid_request_fails_at_once_without_fallback(self, harness: Harness) -> None:
        """A 400 (invalid_request, not retryable) fails the workflow with no fallback."""
        harness.workers.script(Provider.AZURE, fail(ErrorType.INVALID_REQUEST, retryable=False, status_code=400))
        view, finished = await harness.run(intent(IntentType.CONTENT_PLANNING))
        assert view.status is WorkflowStatus.FAILED
        assert view.fallback_history == []
        assert calls(harness, Provider.OPENAI) == 0
        assert finished.payload.error.type is ErrorType.INVALID_REQUEST  # type: ignore[attr-defined]
        assert view.provider_states.azure is ProviderState.FAILED

    async def test_compliance_violation_never_falls_back_even_if_flagged_retryable(self, harness: Harness) -> None:
        """compliance_violation fails at once whatever its retryable flag says."""
        harness.workers.script(Provider.OPENAI, fail(ErrorType.COMPLIANCE_VIOLATION, retryable=True))
        view, _ = await harness.run(intent())
        assert view.status is WorkflowStatus.FAILED and view.fallback_history == []


class TestFallbackAndBreakers:
    async def test_fallback_to_an_open_circuit_goes_back_to_the_failed_provider(self, harness: Harness) -> None:
        """When the matrix's target has an open circuit and the failed provider's is closed, the work is
        retried on the failed provider, and fallback_history says why."""
        openai = harness.router.engine.breakers[Provider.OPENAI]
        for _ in range(openai.failure_threshold):
            openai.record_failure()
        harness.workers.script(Provider.AZURE, fail(ErrorType.PROVIDER_UNAVAILABLE, status_code=502), ok())
        view, _ = await harness.run(intent(IntentType.CONTENT_PLANNING))
        assert view.status is WorkflowStatus.COMPLETED and view.current_provider is Provider.AZURE
        assert calls(harness, Provider.OPENAI) == 0 and calls(harness, Provider.AZURE) == 2
        [entry] = view.fallback_history
        assert entry.to == "queue" and entry.reason.endswith("(circuit open on openai)")


class TestBounds:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        # A generous row, so that only the attempts bound can stop the ping-pong.
        matrix = {**TEST_MATRIX, "provider_unavailable": RuleOverride(max_retries=50, delay_s=0.01)}
        return {"router_max_attempts": 3, "router_fallback_matrix": matrix}

    async def test_total_attempts_bound_ends_ping_pong(self, harness: Harness) -> None:
        """However generous the matrix, a workflow makes at most ROUTER_MAX_ATTEMPTS generation requests."""
        for provider in Provider:
            harness.workers.script(provider, fail(ErrorType.PROVIDER_UNAVAILABLE))
        view, finished = await harness.run(intent())
        assert view.status is WorkflowStatus.FAILED
        assert calls(harness, Provider.AZURE) + calls(harness, Provider.OPENAI) == 3
        assert "all 3 attempts spent" in finished.payload.error.message  # type: ignore[attr-defined]

    async def test_no_retry_is_scheduled_past_the_deadline(self, harness: Harness) -> None:
        """A queued retry that would start after the deadline is not scheduled: the workflow fails now."""
        harness.workers.script(Provider.OPENAI, fail(ErrorType.RATE_LIMIT_EXCEEDED, retry_after_s=30))
        view, finished = await harness.run(intent(), deadline_s=3)
        assert view.status is WorkflowStatus.FAILED
        assert calls(harness, Provider.OPENAI) == 1
        assert "before the deadline" in finished.payload.error.message  # type: ignore[attr-defined]
        assert view.completed_at is not None and (view.completed_at - view.created_at).total_seconds() < 2

    async def test_attempt_timeout_is_capped_by_the_deadline(self, harness: Harness) -> None:
        """A request gets no more time than is left before the workflow's deadline."""
        harness.workers.script(Provider.OPENAI, hang())
        accepted = await harness.request(intent(), deadline_s=1.5)
        assert accepted.workflow is not None
        await harness.sink.wait(accepted.workflow.workflow_id)
        request = harness.workers.calls[Provider.OPENAI][0].request
        assert request.payload.timeout_s <= 1.5  # type: ignore[attr-defined]
