"""What each message does to a workflow, as decisions on in-memory state: no I/O here (delivery's part
lives in delivery.py).

Each method takes the workflow as stored and returns a `Change` (new state, history events, messages to
publish) for handlers.py to store and publish, or None when the message changes nothing. The only side
effect is on the circuit breakers, whose half-open probe slot a provider choice may claim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from contracts import Envelope
from contracts.enums import ErrorType, Provider, ProviderState, WorkflowStatus
from contracts.messages import (
    DeliveryCounts,
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
from services.router.constants import DEADLINE_HOLD_S, DEADLINE_TOLERANCE_S, MAX_DEADLINE_S, MIN_ATTEMPT_S
from services.router.delivery import (
    DeliveryDecisions,
    TextUpdate,
    is_personalized,
    recipients_of,
    unfinished_reason,
)
from services.router.fallback import FallbackMatrix, GiveUp, Retry
from services.router.selection import Selection
from services.router.state import Change, DeliveryRow, Tally, Workflow

S = WorkflowStatus
_TIMEOUTS = {Provider.AZURE: ErrorType.AZURE_TIMEOUT, Provider.OPENAI: ErrorType.OPENAI_TIMEOUT}


# The model (None: the worker's configured one) and prompt variant (None: the default) a generation request of
# a workflow asks of a provider: its experiment arm's, or its type's routing policy's (policy.PolicyBook.choice).
Models = Callable[[Workflow, Provider], tuple[str | None, str | None]]


def _worker_default(_: Workflow, __: Provider) -> tuple[str | None, str | None]:
    return None, None


def _asked(choice: tuple[str | None, str | None]) -> dict[str, Any]:
    model, variant = choice
    return {"model": model, "prompt_variant": variant}


def _with_state(states: ProviderStates, provider: Provider, state: ProviderState) -> ProviderStates:
    return states.model_copy(update={provider.value: state})


class Engine:
    def __init__(
        self, settings: RouterSettings, matrix: FallbackMatrix, breakers: Breakers, *, models: Models | None = None
    ) -> None:
        self.settings = settings
        self.matrix = matrix
        self.breakers = breakers
        # The model and prompt variant each generation request asks for (policy.PolicyBook.choice).
        self.models: Models = models or _worker_default
        self.delivery = DeliveryDecisions(
            settings.router_delivery_grace_s,
            settings.campaign_generation_concurrency,
            fail=self._fail,
            workflow_deadline_s=settings.router_workflow_deadline_s,
        )

    # --- workflow.requested ------------------------------------------------------------------------------

    def start(self, envelope: Envelope, request: WorkflowRequested, selection: Selection, now: datetime) -> Change:
        """A new workflow: accepted, then generating on `selection`'s provider, until its deadline (which the
        router's sweep enforces: Router.fail_overdue)."""
        assert envelope.workflow_id is not None and envelope.user_id is not None  # checked by the handler
        deadline_s = min(request.deadline_s or self.settings.router_workflow_deadline_s, MAX_DEADLINE_S)
        intent = request.intent
        recipients = recipients_of(intent, request.recipients) if intent.send_to_onlyfans else ()
        personalized = is_personalized(intent, len(recipients))
        workflow = Workflow(
            workflow_id=envelope.workflow_id,
            user_id=envelope.user_id,
            # The recipients live in the delivery rows; generation requests need none of them.
            intent=intent.model_copy(update={"recipient_ids": []}),
            status=S.ACCEPTED,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(seconds=deadline_s),
            trace_id=request.trace_id,
            callback_url=request.callback_url,
            personalized=personalized,
            account_id=request.account_id,
            retry_of=request.retry_of,
            notify=request.notify,
            tally=Tally(total=len(recipients)),
            experiment=selection.experiment,
            routing_policy=selection.policy_id,
        )
        change = Change(workflow, envelope, now, created=True)
        rows = self.delivery.rows_for(workflow.workflow_id, recipients)
        if not personalized:
            only = recipients[0].vars if len(recipients) == 1 else {}
            self._dispatch(
                change, selection.provider, delay_s=0.0, event="generation_requested", reason=selection.reason,
                recipient_vars=only,
            )  # fmt: skip
            change.new_deliveries = rows
            return change
        # One text per recipient: the first `concurrency` requested now, each next one as one finishes.
        first = self.settings.campaign_generation_concurrency
        started = tuple(self._text_request(change, row, selection.provider, 0.0) for row in rows[:first])
        change.new_deliveries = started + rows[first:]
        change.move(
            S.GENERATING,
            "generation_requested",
            {"provider": selection.provider.value, "texts": len(rows), "concurrency": first},
            current_provider=selection.provider,
            provider_states=_with_state(workflow.provider_states, selection.provider, ProviderState.EXECUTING),
        )
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
        if workflow.tally.total:
            self.delivery.on_generated(change, detail, **generated)
            return change
        change.move(S.GENERATED, "generation_completed", detail, **generated)
        change.move(S.COMPLETED, "completed", completed_at=now)
        change.emit(
            WorkflowCompleted(
                provider=result.provider,
                content=result.content,
                duration_ms=workflow.duration_ms(now),
                usage=result.usage,
                **workflow.arm_fields(),
            ),
            cost_told=result.cost_notified,
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

    # --- a personalized campaign's texts ------------------------------------------------------------------

    def on_text(
        self, workflow: Workflow, row: DeliveryRow, successor: DeliveryRow | None, envelope: Envelope, now: datetime
    ) -> TextUpdate:
        """A generation result for one recipient's text: deliver it, retry it, or give it up (that delivery
        fails, not the campaign) — and request the next recipient's text."""
        result = envelope.payload
        assert isinstance(result, GenerationCompleted | GenerationFailed)
        change = Change(workflow, envelope, now)

        def claim(change: Change, successor: DeliveryRow | None) -> DeliveryRow | None:
            if successor is None or successor.generation_id is not None or successor.is_final:
                return None
            return self._text_request(change, successor, self.breakers.choose(result.provider), 0.0)

        if isinstance(result, GenerationCompleted):
            return self.delivery.text_written(change, row, result.content, successor, claim)
        decision = self.matrix.decide(result.provider, result.error, {})
        if isinstance(decision, Retry) and row.attempts >= self.settings.router_max_attempts:
            decision = GiveUp(f"{decision.scenario}: all {row.attempts} attempts spent (ROUTER_MAX_ATTEMPTS)")
        if isinstance(decision, Retry):  # only now, when an attempt will be made, may it claim a probe
            decision = self._reroute(decision, result.provider, result.error)
        if isinstance(decision, GiveUp):
            message = f"{decision.reason}; last error from {result.provider.value}: {result.error.message}"
            error = ErrorInfo(type=result.error.type, message=message, retryable=False)
            return self.delivery.text_given_up(change, row, error, successor, claim)
        assert row.generation_id is not None  # the result was matched to the row by it
        retried = self._text_request(change, row, decision.provider, decision.delay_s)
        return TextUpdate(answered=row.generation_id, row=retried, change=change)

    def _text_request(self, change: Change, row: DeliveryRow, provider: Provider, delay_s: float) -> DeliveryRow:
        """Request `row`'s own text from `provider`; the row as it now waits for that request."""
        workflow = change.workflow
        request = GenerationRequested(
            provider=provider,
            intent=workflow.intent,
            timeout_s=self.settings.timeout_for(provider),
            **_asked(self.models(workflow, provider)),
            recipient_id=row.recipient_id,
            recipient_vars=dict(row.vars),
        )
        sent = change.emit(request, delay_s=delay_s, attempt=row.attempts + 1)
        return replace(row, generation_id=sent.id, attempts=row.attempts + 1, status=row.status)

    # --- fan-out and settling -----------------------------------------------------------------------------

    def fanout(
        self, workflow: Workflow, envelope: Envelope, from_seq: int, rows: list[DeliveryRow], now: datetime
    ) -> Change:
        """One chunk of the shared text's deliveries (nothing once the workflow ended)."""
        change = Change(workflow, envelope, now)
        if workflow.status is S.DELIVERING:
            self.delivery.fanout(change, from_seq, rows)
        return change

    def settle(
        self, workflow: Workflow, envelope: Envelope, now: datetime, first_failed: DeliveryRow | None = None
    ) -> Change | None:
        return self.delivery.settle(workflow, envelope, now, first_failed)

    # --- workflow.timer (deadline) -----------------------------------------------------------------------

    def on_deadline(
        self,
        workflow: Workflow,
        envelope: Envelope,
        now: datetime,
        next_open: DeliveryRow | None = None,
        held: str | None = None,
    ) -> Change | None:
        """End a workflow still running at its deadline, saying where it was stuck. One that was delivering
        (or writing personalized texts) ends by its counts: the unfinished deliveries fail, and it is
        completed if any was sent. One whose work is `held` (the kill switch, a paused account) waits
        instead: its deadline moves DEADLINE_HOLD_S on, so nothing held is failed for having waited."""
        if workflow.is_terminal:
            return None
        if (workflow.deadline_at - now).total_seconds() > DEADLINE_TOLERANCE_S:
            # Not due (yet, or any more: deliveries extended it): the sweep finds the workflow when it is.
            return None
        if held is not None:
            change = Change(workflow, envelope, now)
            change.hold_deadline(now + timedelta(seconds=DEADLINE_HOLD_S), held)
            return change
        if workflow.status is S.DELIVERING or (workflow.status is S.GENERATING and workflow.personalized):
            change = Change(workflow, envelope, now)
            reason = unfinished_reason(workflow, next_open)
            change.close_open(ErrorInfo(type=ErrorType.ONLYFANS_API_ERROR, message=reason, retryable=False))
            if change.workflow.status is S.GENERATING:
                change.move(S.GENERATED, "texts_generated", {"given_up": "deadline"})
                change.move(S.DELIVERING, "delivery_requested", {"deliveries": workflow.tally.scheduled})
            self.delivery.finish(change)
            return change
        provider = workflow.current_provider
        waiting = f"; waiting for {provider.value} (attempt {workflow.attempts})" if provider else ""
        last = f"; last fallback: {workflow.fallback_history[-1].reason}" if workflow.fallback_history else ""
        seconds = (workflow.deadline_at - workflow.created_at).total_seconds()
        message = f"deadline of {seconds:g}s passed while {workflow.status.value}{waiting}{last}"
        states = workflow.provider_states
        error_type = ErrorType.PROVIDER_UNAVAILABLE
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
        limit = self.settings.router_max_attempts
        if workflow.attempts >= limit:
            return GiveUp(f"{decision.scenario}: all {limit} attempts spent (ROUTER_MAX_ATTEMPTS)")
        left = (workflow.deadline_at - now).total_seconds() - decision.delay_s
        if left < MIN_ATTEMPT_S:
            return GiveUp(
                f"{decision.scenario}: the next attempt (in {decision.delay_s:g}s) would leave "
                f"{max(left, 0.0):.1f}s before the deadline"
            )
        return decision

    def _dispatch(
        self,
        change: Change,
        provider: Provider,
        *,
        delay_s: float,
        event: str,
        reason: str,
        recipient_vars: Mapping[str, str] | None = None,
    ) -> None:
        """Send the workflow's next generation request to `provider`, `delay_s` from now, bounded by the
        deadline."""
        workflow = change.workflow
        left = (workflow.deadline_at - change.at).total_seconds() - delay_s
        attempt = workflow.attempts + 1
        retries = workflow.retry_attempts
        if workflow.attempts > 0:
            retries = retries.model_copy(update={provider.value: getattr(retries, provider.value) + 1})
        request = GenerationRequested(
            provider=provider,
            intent=workflow.intent,
            timeout_s=max(min(self.settings.timeout_for(provider), left), MIN_ATTEMPT_S),
            **_asked(self.models(workflow, provider)),
            recipient_id=workflow.intent.recipient_id,
            recipient_vars=dict(recipient_vars or {}),
            # A workflow that ends with its text: its requester is told the cost when the text's usage is
            # recorded (Notify), one hop sooner than from the end.
            notify=workflow.notify if workflow.tally.total == 0 else None,
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

    def _fail(
        self,
        change: Change,
        error_type: ErrorType,
        message: str,
        *,
        counts: DeliveryCounts | None = None,
        **changes: object,
    ) -> None:
        """Fail the workflow: its open deliveries fail with it, and the terminal message carries the counts."""
        error = ErrorInfo(type=error_type, message=message, retryable=False)
        change.close_open(error)
        tally = change.workflow.tally
        counts = counts or (tally.counts() if tally.total else None)
        change.move(
            S.FAILED,
            "failed",
            {"error_type": error_type.value, "reason": message},
            error=error,
            completed_at=change.at,
            **changes,
        )
        ended = change.workflow
        change.emit(
            WorkflowFailed(
                error=error, duration_ms=ended.duration_ms(change.at), deliveries=counts, **ended.arm_fields()
            )
        )
