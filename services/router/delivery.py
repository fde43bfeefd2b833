"""What delivery does to a workflow (issue 5), as decisions on in-memory state: no I/O here.

A workflow with `send_to_onlyfans` goes generated → delivering once its text exists, with one
delivery.requested per recipient (`recipient_id` and/or `recipient_ids`) and one `DeliveryView` each in
its status. With `data.personalize` true and several recipients, each recipient gets a text of its own:
the texts are generated one after the other (the workflow stays generating, each finished text is
requested for delivery at once), and the workflow moves to delivering with the last one.

Delivery reports update their view: delivery.scheduled (the slot, `scheduledFor`; with an error when a
failure pushed it back), delivery.completed (sent), delivery.failed. The workflow completes when every
delivery is sent or failed — completed if at least one was sent, failed (with the reason) if none was.
The deadline follows the deliveries: each slot extends it to slot + ROUTER_DELIVERY_GRACE_S. A report on a
workflow that already finished (its deadline passed) is still recorded, without a status change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contracts import Envelope
from contracts.enums import DeliveryState, ErrorType, Provider, RateLimiterState, WorkflowStatus
from contracts.messages import (
    DeliveryCompleted,
    DeliveryFailed,
    DeliveryRequested,
    DeliveryScheduled,
    DeliveryView,
    GenerationCompleted,
    Intent,
    ProviderStates,
    WorkflowCompleted,
)
from services.router.state import Change, Workflow

S = WorkflowStatus
D = DeliveryState
FINAL = frozenset({D.SENT, D.FAILED})

Dispatch = Callable[[Change, Provider], None]
"""Start the next generation (the next personalized text) on a provider."""
Fail = Callable[..., None]
"""Engine._fail(change, error_type, message, **changes)."""


def recipients_of(intent: Intent) -> tuple[str, ...]:
    """Every recipient, once, in the order given (`recipient_id` first)."""
    given = ([intent.recipient_id] if intent.recipient_id else []) + list(intent.recipient_ids)
    return tuple(dict.fromkeys(given))


def personalized(intent: Intent) -> bool:
    return intent.data.get("personalize") is True and len(recipients_of(intent)) > 1


def delivery_id_for(workflow_id: uuid.UUID, recipient_id: str) -> uuid.UUID:
    """Stable: the same workflow and recipient always give the same id (the platform's Idempotency-Key)."""
    return uuid.uuid5(workflow_id, f"delivery:{recipient_id}")


def generation_recipient(workflow: Workflow) -> str | None:
    """The recipient the next generation request writes for (personalized: the first without a text)."""
    if personalized(workflow.intent):
        recipients = recipients_of(workflow.intent)
        done = len(workflow.deliveries)
        return recipients[done] if done < len(recipients) else None
    return workflow.intent.recipient_id


def onlyfans_state(views: tuple[DeliveryView, ...]) -> DeliveryState:
    """`provider_states.onlyFans`: the deliveries summed up."""
    if views and all(v.status in FINAL for v in views):
        return D.SENT if any(v.status is D.SENT for v in views) else D.FAILED
    if any(v.status is D.RATE_LIMITED for v in views):
        return D.RATE_LIMITED
    return D.PENDING


def _states(
    states: ProviderStates, views: tuple[DeliveryView, ...], limiter: RateLimiterState | None
) -> ProviderStates:
    update: dict[str, Any] = {"onlyfans": onlyfans_state(views)}
    if limiter is not None:
        update["rate_limiter"] = limiter
    return states.model_copy(update=update)


@dataclass
class DeliveryDecisions:
    grace_s: float  # ROUTER_DELIVERY_GRACE_S
    dispatch: Dispatch
    fail: Fail

    # --- generation finished -----------------------------------------------------------------------------

    def on_generated(
        self, change: Change, completion: GenerationCompleted, detail: dict[str, Any], **generated: Any
    ) -> None:
        """The text exists: request its delivery (all recipients, or the personalized one)."""
        workflow = change.workflow
        recipients = recipients_of(workflow.intent)
        # Personalized: only the recipient this text was written for; else everyone gets the one text.
        targets = (recipients[len(workflow.deliveries)],) if personalized(workflow.intent) else recipients
        views = workflow.deliveries + tuple(self._request(change, r, completion.content) for r in targets)
        detail = {**detail, "recipients": len(targets)}
        if len(views) < len(recipients):
            change.move(S.GENERATING, "generation_completed", detail, deliveries=views, **generated)
            self.dispatch(change, completion.provider)
            return
        change.move(S.GENERATED, "generation_completed", detail, deliveries=views, **generated)
        current = change.workflow
        change.move(
            S.DELIVERING,
            "delivery_requested",
            {"deliveries": len(views)},
            provider_states=_states(current.provider_states, views, RateLimiterState.CHECKING),
            deadline_at=max(current.deadline_at, change.at + timedelta(seconds=self.grace_s)),
        )
        self._finish_if_done(change)  # personalized: earlier deliveries may be finished already

    def _request(self, change: Change, recipient: str, text: str) -> DeliveryView:
        workflow = change.workflow
        delivery_id = delivery_id_for(workflow.workflow_id, recipient)
        change.emit(
            DeliveryRequested(delivery_id=delivery_id, account_id=workflow.user_id, recipient_id=recipient, text=text)
        )
        return DeliveryView(delivery_id=delivery_id, recipient_id=recipient, status=D.PENDING)

    # --- delivery reports --------------------------------------------------------------------------------

    def on_report(self, workflow: Workflow, envelope: Envelope, now: datetime) -> Change | None:
        """A delivery.scheduled / completed / failed; None when it changes nothing (a duplicate, or a report
        older than what is known: a delivery that is sent or failed stays so)."""
        report = envelope.payload
        assert isinstance(report, DeliveryScheduled | DeliveryCompleted | DeliveryFailed)
        index = next((i for i, v in enumerate(workflow.deliveries) if v.delivery_id == report.delivery_id), None)
        if index is None:
            return None
        view = workflow.deliveries[index]
        change = Change(workflow, envelope, now)
        if view.status in FINAL:
            # Reports race (the slot's report and the send's are handled concurrently): a finished delivery
            # keeps its outcome, but learns the slot it was sent at if that report came second.
            if not isinstance(report, DeliveryScheduled) or view.scheduled_for is not None:
                return None
            view = view.model_copy(update={"scheduled_for": report.slot_at})
            views = (*workflow.deliveries[:index], view, *workflow.deliveries[index + 1 :])
            _progress(
                change, "delivery_scheduled", {"delivery_id": str(view.delivery_id), "late": True}, deliveries=views
            )
            return change
        limiter: RateLimiterState | None = None
        changes: dict[str, Any] = {}
        if isinstance(report, DeliveryScheduled):
            error = report.error
            held = error is not None and error.type is ErrorType.PROVIDER_UNAVAILABLE
            limited = error is not None and error.type is ErrorType.RATE_LIMIT_EXCEEDED
            slot = max(report.slot_at, view.scheduled_for) if view.scheduled_for else report.slot_at
            view = view.model_copy(
                update={"status": D.RATE_LIMITED if limited else D.PENDING, "scheduled_for": slot, "error": error}
            )
            limiter = RateLimiterState.THROTTLED if held else RateLimiterState.APPROVED
            changes["deadline_at"] = max(workflow.deadline_at, slot + timedelta(seconds=self.grace_s))
            if error is not None:
                retries = workflow.retry_attempts
                changes["retry_attempts"] = retries.model_copy(update={"onlyfans": retries.onlyfans + 1})
            event, detail = (
                "delivery_scheduled",
                {"slot_at": slot.isoformat(), "error": error.type.value if error else None},
            )
        elif isinstance(report, DeliveryCompleted):
            view = view.model_copy(
                update={
                    "status": D.SENT,
                    "sent_at": report.sent_at,
                    "platform_message_id": report.platform_message_id,
                    "error": None,
                }
            )
            event, detail = "delivery_sent", {}
        else:
            view = view.model_copy(update={"status": D.FAILED, "error": report.error})
            limiter = RateLimiterState.REJECTED if report.error.type is ErrorType.PROVIDER_UNAVAILABLE else None
            event, detail = "delivery_failed", {"error_type": report.error.type.value}
        views = (*workflow.deliveries[:index], view, *workflow.deliveries[index + 1 :])
        changes.update(deliveries=views, provider_states=_states(workflow.provider_states, views, limiter))
        _progress(change, event, {"delivery_id": str(view.delivery_id), **detail}, **changes)
        self._finish_if_done(change)
        return change

    def _finish_if_done(self, change: Change) -> None:
        workflow = change.workflow
        views = workflow.deliveries
        if workflow.status is not S.DELIVERING or not all(v.status in FINAL for v in views):
            return
        if any(v.status is D.SENT for v in views):
            change.move(
                S.COMPLETED, "completed", {"sent": sum(v.status is D.SENT for v in views)}, completed_at=change.at
            )
            change.emit(
                WorkflowCompleted(
                    provider=workflow.current_provider,
                    content=workflow.result,
                    duration_ms=workflow.duration_ms(change.at),
                    usage=workflow.usage,
                )
            )
            return
        errors = [v.error for v in views if v.error is not None]
        first = errors[0] if errors else None
        error_type = first.type if first else ErrorType.ONLYFANS_API_ERROR
        reason = first.message if first else "no reason given"
        who = f"the delivery to {views[0].recipient_id}" if len(views) == 1 else f"all {len(views)} deliveries"
        self.fail(change, error_type, f"{who} failed; first error: {reason}")


def _progress(change: Change, event: str, detail: dict[str, Any], **changes: Any) -> None:
    """Record a delivery's progress: a self-transition while the workflow runs, a note once it finished."""
    status = change.workflow.status
    if status in (S.GENERATING, S.DELIVERING):
        change.move(status, event, detail, **changes)
    else:
        change.note(event, detail, **changes)


def unfinished_summary(workflow: Workflow) -> str:
    """For the deadline's reason: how many deliveries were not finished, and the next planned slot."""
    open_ = [v for v in workflow.deliveries if v.status not in FINAL]
    slots = sorted(v.scheduled_for for v in open_ if v.scheduled_for is not None)
    nxt = f", next scheduled for {slots[0].isoformat()}" if slots else ""
    errors = [v.error.message for v in open_ if v.error is not None]
    last = f", last error: {errors[-1]}" if errors else ""
    return f"{len(open_)} of {len(recipients_of(workflow.intent))} deliveries unfinished{nxt}{last}"
