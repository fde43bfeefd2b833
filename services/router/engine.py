"""What each message does to a workflow, as decisions on in-memory state: no I/O here (delivery's part
lives in delivery.py).

Each method takes the workflow as stored and returns a `Change` (new state, history events, messages to
publish) for handlers.py to store and publish, or None when the message changes nothing. The only side
effect is on the circuit breakers, whose half-open probe slot a provider choice may claim.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts import Envelope
from contracts.enums import ErrorType, Provider, ProviderState, WorkflowStatus
from contracts.messages import (
    ErrorInfo,
    FallbackEntry,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    ProviderStates,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRequested,
)
from services.router.breaker import Breakers
from services.router.config import RouterSettings
from services.router.constants import DEADLINE_TOLERANCE_S, MAX_DEADLINE_S, MIN_ATTEMPT_S
from services.router.delivery import DeliveryDecisions, generation_recipient, unfinished_summary
from services.router.fallback import FallbackMatrix, GiveUp, Retry
from services.router.selection import Selection
from services.router.state import Change, Workflow

S = WorkflowStatus
_TIMEOUTS = {Provider.AZURE: ErrorType.AZURE_TIMEOUT, Provider.OPENAI: ErrorType.OPENAI_TIMEOUT}


def _with_state(states: ProviderStates, provider: Provider, state: ProviderState) -> ProviderStates:
    return states.model_copy(update={provider.value: state})


class Engine:
    def __init__(self, settings: RouterSettings, matrix: FallbackMatrix, breakers: Breakers) -> None:
        self.settings = settings
        self.matrix = matrix
        self.breakers = breakers
        self.delivery = DeliveryDecisions(settings.router_delivery_grace_s, dispatch=self._next_text, fail=self._fail)

    # --- workflow.requested ------------------------------------------------------------------------------

    def start(self, envelope: Envelope, request: WorkflowRequested, selection: Selection, now: datetime) -> Change:
        """A new workflow: accepted, then generating on `selection`'s provider, until its deadline (which the
        router's sweep enforces: Router.fail_overdue)."""
        assert envelope.workflow_id is not None and envelope.user_id is not None  # checked by the handler
        deadline_s = min(request.deadline_s or self.settings.router_workflow_deadline_s, MAX_DEADLINE_S)
        workflow = Workflow(
            workflow_id=envelope.workflow_id,
            user_id=envelope.user_id,
            intent=request.intent,
            status=S.ACCEPTED,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(seconds=deadline_s),
            trace_id=request.trace_id,
        )
        change = Change(workflow, envelope, now, created=True)
        self._dispatch(change, selection.provider, delay_s=0.0, event="generation_requested", reason=selection.reason)
        return change

    # --- generation results ------------------------------------------------------------------------------

    @staticmethod
    def ignore_reason(workflow: Workflow, result: Envelope) -> str | None:
        """Why a generation result must not move `workflow` (None: it is the answer being waited for)."""
        if workflow.status is not S.GENERATING:
            return f"workflow is {workflow.status.value}"
        if result.causation_id != workflow.generation_id:
            return "superseded attempt"
        return None

    def on_completed(self, workflow: Workflow, envelope: Envelope, now: datetime) -> Change:
        result = envelope.payload
        assert isinstance(result, GenerationCompleted)
        change = Change(workflow, envelope, now)
        detail = {"provider": result.provider.value, "model": result.model, "latency_ms": result.latency_ms}
        generated = {
            "provider_states": _with_state(workflow.provider_states, result.provider, ProviderState.COMPLETED),
            "current_provider": result.provider,
            "result": result.content,
            "model": result.model,
            "usage": result.usage,
        }
        if workflow.intent.send_to_onlyfans:
            self.delivery.on_generated(change, result, detail, **generated)
            return change
        change.move(S.GENERATED, "generation_completed", detail, **generated)
        change.move(S.COMPLETED, "completed", completed_at=now)
        change.emit(
            WorkflowCompleted(
                provider=result.provider,
                content=result.content,
                duration_ms=workflow.duration_ms(now),
                usage=result.usage,
            )
        )
        return change

    def on_failed(self, workflow: Workflow, envelope: Envelope, now: datetime) -> Change:
        failure = envelope.payload
        assert isinstance(failure, GenerationFailed)
        failed, error = failure.provider, failure.error
        state = ProviderState.TIMEOUT if error.type in _TIMEOUTS.values() else ProviderState.FAILED
        states = _with_state(workflow.provider_states, failed, state)
        change = Change(workflow, envelope, now)
        decision = self._bounded(workflow, self.matrix.decide(failed, error, workflow.recoveries), now)
        if isinstance(decision, Retry):
            # Only now, when an attempt will be made, may the choice claim a half-open circuit's probe.
            decision = self._bounded(workflow, self._reroute(decision, failed, error), now)
        if isinstance(decision, GiveUp):
            message = f"{decision.reason}; last error from {failed.value}: {error.message}"
            self._fail(change, error.type, message, provider_states=states)
            return change
        rerouted = f" (circuit open on {decision.rerouted_from.value})" if decision.rerouted_from else ""
        reason = f"{decision.scenario}: {error.message}{rerouted}"
        entry = FallbackEntry(from_provider=failed, to=decision.to, reason=reason, timestamp=now)
        change.move(
            S.GENERATING,
            "generation_failed",
            {"provider": failed.value, "error_type": error.type.value, "status_code": error.status_code},
            provider_states=states,
            fallback_history=(*workflow.fallback_history, entry),
            recoveries={**workflow.recoveries, decision.scenario: workflow.recoveries.get(decision.scenario, 0) + 1},
        )
        event = "retry_queued" if decision.provider is failed else "fallback"
        self._dispatch(change, decision.provider, delay_s=decision.delay_s, event=event, reason=reason)
        return change

    # --- delivery reports (delivery.scheduled / completed / failed) ---------------------------------------

    def on_delivery(self, workflow: Workflow, envelope: Envelope, now: datetime) -> Change | None:
        return self.delivery.on_report(workflow, envelope, now)

    # --- workflow.timer (deadline) -----------------------------------------------------------------------

    def on_deadline(self, workflow: Workflow, envelope: Envelope, now: datetime) -> Change | None:
        """Fail a workflow still running at its deadline, saying where it was stuck."""
        if workflow.is_terminal:
            return None
        if (workflow.deadline_at - now).total_seconds() > DEADLINE_TOLERANCE_S:
            # Not due (yet, or any more: deliveries extended it): the sweep finds the workflow when it is.
            return None
        provider = workflow.current_provider
        waiting = f"; waiting for {provider.value} (attempt {workflow.attempts})" if provider else ""
        last = f"; last fallback: {workflow.fallback_history[-1].reason}" if workflow.fallback_history else ""
        seconds = (workflow.deadline_at - workflow.created_at).total_seconds()
        message = f"deadline of {seconds:g}s passed while {workflow.status.value}{waiting}{last}"
        states = workflow.provider_states
        error_type = ErrorType.PROVIDER_UNAVAILABLE
        if workflow.status is S.DELIVERING:
            message = f"deadline passed while delivering: {unfinished_summary(workflow)}"
            error_type = ErrorType.ONLYFANS_API_ERROR
        if provider is not None and workflow.status is S.GENERATING:
            error_type = _TIMEOUTS[provider]
            if getattr(states, provider.value) in (ProviderState.EXECUTING, ProviderState.PENDING):
                states = _with_state(states, provider, ProviderState.TIMEOUT)
        change = Change(workflow, envelope, now)
        self._fail(change, error_type, message, provider_states=states)
        return change

    # --- shared ------------------------------------------------------------------------------------------

    def _reroute(self, decision: Retry, failed: Provider, error: ErrorInfo) -> Retry:
        """`decision` sent elsewhere when its target's circuit is open and the other's is not."""
        target = self.breakers.choose(decision.provider)
        if target is decision.provider:
            return decision
        delay = decision.delay_s
        if target is failed and error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)  # back to the provider that asked us to wait
        to = "queue" if target is failed else target.value
        return Retry(target, delay, decision.scenario, to, rerouted_from=decision.provider)

    def _bounded(self, workflow: Workflow, decision: Retry | GiveUp, now: datetime) -> Retry | GiveUp:
        """The matrix's decision, unless the workflow's own bounds (attempts, deadline) forbid it."""
        if isinstance(decision, GiveUp):
            return decision
        # Each personalized text already generated earned its own attempts: the budget is per text.
        limit = self.settings.router_max_attempts + len(workflow.deliveries)
        if workflow.attempts >= limit:
            return GiveUp(f"{decision.scenario}: all {limit} attempts spent (ROUTER_MAX_ATTEMPTS)")
        left = (workflow.deadline_at - now).total_seconds() - decision.delay_s
        if left < MIN_ATTEMPT_S:
            return GiveUp(
                f"{decision.scenario}: the next attempt (in {decision.delay_s:g}s) would leave "
                f"{max(left, 0.0):.1f}s before the deadline"
            )
        return decision

    def _next_text(self, change: Change, provider: Provider) -> None:
        """A personalized campaign's next text, on the provider that wrote the last one (unless its circuit
        opened meanwhile)."""
        recipient = generation_recipient(change.workflow)
        target = self.breakers.choose(provider)
        reason = f"personalized text for {recipient}"
        self._dispatch(change, target, delay_s=0.0, event="generation_requested", reason=reason, fresh=True)

    def _dispatch(
        self, change: Change, provider: Provider, *, delay_s: float, event: str, reason: str, fresh: bool = False
    ) -> None:
        """Send the next generation request to `provider`, `delay_s` from now, bounded by the deadline
        (`fresh`: a new text of a personalized campaign, not a retry)."""
        workflow = change.workflow
        left = (workflow.deadline_at - change.at).total_seconds() - delay_s
        attempt = workflow.attempts + 1
        retries = workflow.retry_attempts
        if workflow.attempts > 0 and not fresh:
            retries = retries.model_copy(update={provider.value: getattr(retries, provider.value) + 1})
        request = GenerationRequested(
            provider=provider,
            intent=workflow.intent,
            timeout_s=max(min(self.settings.timeout_for(provider), left), MIN_ATTEMPT_S),
            recipient_id=generation_recipient(workflow),
        )
        sent = change.emit(request, delay_s=delay_s, attempt=attempt)
        state = ProviderState.PENDING if delay_s > 0 else ProviderState.EXECUTING
        change.move(
            S.GENERATING,
            event,
            {"provider": provider.value, "attempt": attempt, "delay_s": delay_s, "reason": reason},
            current_provider=provider,
            provider_states=_with_state(workflow.provider_states, provider, state),
            retry_attempts=retries,
            attempts=attempt,
            generation_id=sent.id,
        )

    def _fail(self, change: Change, error_type: ErrorType, message: str, **changes: object) -> None:
        error = ErrorInfo(type=error_type, message=message, retryable=False)
        change.move(
            S.FAILED,
            "failed",
            {"error_type": error_type.value, "reason": message},
            error=error,
            completed_at=change.at,
            **changes,
        )
        change.emit(WorkflowFailed(error=error, duration_ms=change.workflow.duration_ms(change.at)))
