"""A workflow's state, its legal status transitions, and the record of one handled message's changes to it
(`Change`: the new state, the history events, the outbox). The states: docs/architecture.md#workflow-states.

    accepted ──► generating ──► generated ──► delivering ──► completed
        │            │ ▲            │  │           │ ▲
        │            └─┘            │  └───────────┼─┼──────► completed (nothing to deliver)
        └────────────┴──────────────┴──────────────┴─┴──────► failed, or cancelled (an operator's cancel)

generating → generating records a new attempt (a fallback or a queued retry). completed, failed and
cancelled are final. Anything else raises IllegalTransition.

A workflow's deliveries are not part of this state: each is its own row (`DeliveryRow`), and the workflow
keeps only their counters (`Tally`), which the store updates in the same statement as a delivery's row —
never by saving the workflow (delivery.py says who changes what).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from contracts import Envelope, Message
from contracts.enums import TERMINAL_STATUSES, DeliveryState, Provider, RateLimiterState, WorkflowStatus
from contracts.messages import (
    DeliveryCounts,
    DeliveryView,
    ErrorInfo,
    FallbackEntry,
    Intent,
    Notify,
    Progress,
    ProviderStates,
    RetryAttempts,
    Usage,
    WebhookRequested,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowSummary,
    WorkflowView,
)
from services.router.errors import IllegalTransition
from services.router.outbox import Outgoing

S = WorkflowStatus
TRANSITIONS: Mapping[WorkflowStatus, frozenset[WorkflowStatus]] = MappingProxyType(
    {
        S.ACCEPTED: frozenset({S.GENERATING, S.FAILED, S.CANCELLED}),
        S.GENERATING: frozenset({S.GENERATING, S.GENERATED, S.FAILED, S.CANCELLED}),
        S.GENERATED: frozenset({S.DELIVERING, S.COMPLETED, S.FAILED, S.CANCELLED}),
        S.DELIVERING: frozenset({S.DELIVERING, S.COMPLETED, S.FAILED, S.CANCELLED}),
        S.COMPLETED: frozenset(),
        S.FAILED: frozenset(),
        S.CANCELLED: frozenset(),
    }
)
TERMINAL = TERMINAL_STATUSES
D = DeliveryState
FINAL_DELIVERY = frozenset({D.SENT, D.FAILED, D.CANCELLED})
_WEBHOOK_EVENTS: Mapping[WorkflowStatus, Literal["workflow.completed", "workflow.failed", "workflow.cancelled"]] = {
    S.COMPLETED: "workflow.completed",
    S.FAILED: "workflow.failed",
    S.CANCELLED: "workflow.cancelled",
}
WEBHOOK_NAMESPACE = uuid.UUID("8d0f5b7e-2c41-5a93-b6e8-0f7a1d3c9e24")  # event ids: uuid5(this, workflow id)


@dataclass(frozen=True, slots=True)
class Tally:
    """A workflow's delivery counters. Owned by the store's per-delivery writes (a report, a personalized
    text): a workflow save never writes them, so concurrent reports never conflict with a transition."""

    total: int = 0
    generated: int = 0  # personalized texts written (a shared text counts for every delivery: `Workflow.progress`)
    ungenerated: int = 0  # personalized texts given up on (their deliveries are failed, and counted there too)
    scheduled: int = 0  # deliveries that got a slot
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    retries: int = 0  # a delivery pushed back by a failure (retry_attempts.onlyFans)
    last_slot_at: datetime | None = None
    limiter: RateLimiterState | None = None  # the latest report's verdict of the rate limiter

    @property
    def finished(self) -> int:
        return self.sent + self.failed + self.cancelled

    @property
    def all_finished(self) -> bool:
        return self.total > 0 and self.finished >= self.total

    @property
    def texts_done(self) -> bool:
        """Every personalized text was written or given up on."""
        return self.generated + self.ungenerated >= self.total

    def counts(self) -> DeliveryCounts:
        return DeliveryCounts(total=self.total, sent=self.sent, failed=self.failed, cancelled=self.cancelled)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One delivery of a workflow (table deliveries): a recipient, in campaign order (`seq`)."""

    seq: int
    delivery_id: uuid.UUID
    recipient_id: str
    vars: Mapping[str, str] = field(default_factory=dict)
    status: DeliveryState = D.PENDING
    text: str | None = None  # personalized: this recipient's own text
    generation_id: uuid.UUID | None = None  # personalized: the generation request its text waits for
    attempts: int = 0  # personalized: generation requests for its text
    scheduled_for: datetime | None = None
    sent_at: datetime | None = None
    platform_message_id: str | None = None
    error: ErrorInfo | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_DELIVERY

    def to_view(self) -> DeliveryView:
        return DeliveryView(
            delivery_id=self.delivery_id,
            recipient_id=self.recipient_id,
            status=self.status,
            scheduled_for=self.scheduled_for,
            sent_at=self.sent_at,
            platform_message_id=self.platform_message_id,
            error=self.error,
            seq=self.seq,
            text=self.text,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a workflow's history (table workflow_events)."""

    name: str
    from_status: WorkflowStatus | None
    to_status: WorkflowStatus
    at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Workflow:
    """Everything the router persists about one workflow (table hybrid_workflows).

    Besides what the status view shows, it keeps the bookkeeping of its own decisions: `version`
    (optimistic concurrency: bumped by every write), `attempts` (generation requests so far, all providers),
    `generation_id` (the envelope id of the current generation request — results caused by any other are
    superseded) and `recoveries` (how often each fallback scenario was recovered from).
    """

    workflow_id: uuid.UUID
    user_id: str
    intent: Intent
    status: WorkflowStatus
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    version: int = 1
    trace_id: str | None = None
    current_provider: Provider | None = None
    provider_states: ProviderStates = field(default_factory=ProviderStates)
    fallback_history: tuple[FallbackEntry, ...] = ()
    retry_attempts: RetryAttempts = field(default_factory=RetryAttempts)
    recoveries: Mapping[str, int] = field(default_factory=dict)
    attempts: int = 0
    generation_id: uuid.UUID | None = None
    result: str | None = None
    model: str | None = None
    usage: Usage | None = None
    error: ErrorInfo | None = None
    completed_at: datetime | None = None
    callback_url: str | None = None
    personalized: bool = False  # each recipient gets a text of its own (delivery.py)
    tally: Tally = field(default_factory=Tally)
    account_id: str | None = None  # the creator account it sends from; None: user_id (`sends_as`)
    retry_of: uuid.UUID | None = None  # the failed workflow this one retries
    experiment: str | None = None  # "<experiment id>:<arm>": the experiment arm it was assigned (policy.py)
    routing_policy: uuid.UUID | None = None  # the routing policy its provider was chosen by (policy.py)

    def arm(self) -> tuple[uuid.UUID, str] | None:
        """The experiment and the arm it was assigned (None: none)."""
        if self.experiment is None:
            return None
        experiment_id, arm = self.experiment.split(":", 1)
        return uuid.UUID(experiment_id), arm

    def arm_fields(self) -> dict[str, Any]:
        """The experiment_id and arm of its workflow.completed / .failed (None: not in an experiment)."""
        assigned = self.arm()
        return {"experiment_id": assigned[0] if assigned else None, "arm": assigned[1] if assigned else None}

    notify: Notify | None = None  # whom to tell when it ends (a ?wait=true): see Change.emit, Router._committed

    @property
    def sends_as(self) -> str:
        """The platform account its messages are sent from."""
        return self.account_id or self.user_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def duration_ms(self, now: datetime) -> float:
        return max(0.0, (now - self.created_at).total_seconds() * 1000)

    def progress(self, now: datetime, next_slot_at: datetime | None) -> Progress | None:
        """Where the deliveries stand (None: the workflow delivers nothing). The expected end is the last
        reserved slot once every open delivery has one, else the pace so far carried forward."""
        tally = self.tally
        if tally.total == 0:
            return None
        generated = tally.generated if self.personalized else (tally.total if self.result is not None else 0)
        left = tally.total - tally.finished
        estimate: datetime | None = None
        if self.is_terminal:
            estimate = self.completed_at
        elif left > 0 and tally.scheduled >= tally.total - tally.ungenerated and tally.last_slot_at is not None:
            estimate = max(tally.last_slot_at, now)
        elif tally.finished > 0:
            pace_s = (now - self.created_at).total_seconds() / tally.finished
            estimate = now + timedelta(seconds=pace_s * left)
        return Progress(
            total=tally.total,
            generated=generated,
            scheduled=tally.scheduled,
            sent=tally.sent,
            failed=tally.failed,
            cancelled=tally.cancelled,
            next_slot_at=None if self.is_terminal else next_slot_at,
            estimated_completion_at=estimate,
        )

    def _delivery_states(self) -> tuple[ProviderStates, RetryAttempts]:
        """provider_states.onlyFans / rateLimiter and retry_attempts.onlyFans, from the counters."""
        tally = self.tally
        if tally.total == 0:
            return self.provider_states, self.retry_attempts
        if tally.all_finished:
            onlyfans = D.SENT if tally.sent else D.FAILED
        else:
            onlyfans = D.SENDING if tally.sent else D.PENDING
        limiter = tally.limiter or self.provider_states.rate_limiter
        states = self.provider_states.model_copy(update={"onlyfans": onlyfans, "rate_limiter": limiter})
        return states, self.retry_attempts.model_copy(update={"onlyfans": tally.retries})

    def to_view(
        self,
        deliveries: tuple[DeliveryRow, ...] = (),
        next_slot_at: datetime | None = None,
        *,
        now: datetime | None = None,
    ) -> WorkflowView:
        """The status view; `deliveries` listed (a small workflow's), `next_slot_at` and `now` for its
        progress."""
        states, retries = self._delivery_states()
        return WorkflowView(
            workflow_id=self.workflow_id,
            user_id=self.user_id,
            status=self.status,
            intent_type=self.intent.type,
            priority=self.intent.priority,
            current_provider=self.current_provider,
            provider_states=states,
            fallback_history=list(self.fallback_history),
            retry_attempts=retries,
            result=self.result,
            model=self.model,
            usage=self.usage,
            error=self.error,
            deliveries=[row.to_view() for row in deliveries],
            trace_id=self.trace_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            deadline_at=self.deadline_at,
            completed_at=self.completed_at,
            progress=self.progress(now or self.updated_at, next_slot_at),
            account_id=self.account_id,
            retry_of=self.retry_of,
            routing_policy_id=self.routing_policy,
            **self.arm_fields(),
        )

    def webhook(self) -> WebhookRequested | None:
        """The completion webhook of a finished workflow that asked for one (its event id is stable)."""
        if self.callback_url is None or not self.is_terminal:
            return None
        summary = WorkflowSummary(
            workflow_id=self.workflow_id,
            user_id=self.user_id,
            status=self.status,
            intent_type=self.intent.type,
            deliveries=self.tally.counts() if self.tally.total else None,
            error=self.error,
            trace_id=self.trace_id,
            created_at=self.created_at,
            completed_at=self.completed_at or self.updated_at,
        )
        return WebhookRequested(
            url=self.callback_url,
            event_id=uuid.uuid5(WEBHOOK_NAMESPACE, str(self.workflow_id)),
            event=_WEBHOOK_EVENTS[self.status],
            summary=summary,
        )


class Change:
    """What handling one message does to one workflow: moves through legal transitions, each recorded as
    an event, and the messages to publish once the new state is stored (children of `cause`)."""

    def __init__(self, workflow: Workflow, cause: Envelope, at: datetime, *, created: bool = False) -> None:
        self.before = None if created else workflow
        self.workflow = workflow
        self.cause = cause
        self.at = at
        self.events: list[Event] = []
        self.outbox: list[Outgoing] = []
        self.new_deliveries: tuple[DeliveryRow, ...] = ()  # a created workflow's deliveries
        self.closing: ErrorInfo | None = None  # set by close_open: the open deliveries fail with this
        self.cancelling = False  # set by cancel_open: the open deliveries are cancelled
        if created:
            self.events.append(Event("accepted", None, workflow.status, at, {}))

    @property
    def created(self) -> bool:
        return self.before is None

    @property
    def expected_version(self) -> int:
        """The version the stored row must still have for this change to apply (0: must not exist)."""
        return 0 if self.before is None else self.before.version

    def result(self) -> Workflow:
        """The state to store: the changed workflow at the next version."""
        return replace(self.workflow, version=self.expected_version + 1)

    def move(self, to: WorkflowStatus, event: str, detail: Mapping[str, Any] | None = None, **changes: Any) -> None:
        """Go to `to` (raising IllegalTransition unless the machine allows it) and apply `changes`."""
        current = self.workflow.status
        if to not in TRANSITIONS[current]:
            raise IllegalTransition(self.workflow.workflow_id, current.value, to.value, event)
        self.workflow = replace(self.workflow, status=to, updated_at=self.at, **changes)
        self.events.append(Event(event, current, to, self.at, detail or {}))
        webhook = self.workflow.webhook()
        if webhook is not None:
            self.emit(webhook)

    def hold_deadline(self, until: datetime, reason: str) -> None:
        """Move the deadline to `until` without a transition (the workflow's work is held: `reason`)."""
        status = self.workflow.status
        self.workflow = replace(self.workflow, deadline_at=until, updated_at=self.at)
        self.events.append(Event("deadline_held", status, status, self.at, {"reason": reason}))

    def close_open(self, error: ErrorInfo) -> None:
        """Fail every delivery not yet finished, with `error`, in the same write as this change (the workflow
        is ending without them); the counters say so from here on."""
        tally = self.workflow.tally
        if self.closing is not None or tally.all_finished or tally.total == 0:
            return
        self.closing = error
        closed = replace(tally, failed=tally.total - tally.sent - tally.cancelled)
        self.workflow = replace(self.workflow, tally=closed)

    def cancel_open(self) -> None:
        """Cancel every delivery not yet finished, in the same write as this change (the workflow is being
        cancelled); the counters say so from here on. A send already under way may still report `sent`: the
        report then moves its delivery from cancelled to sent (it was)."""
        tally = self.workflow.tally
        if self.closing is not None or self.cancelling or tally.all_finished or tally.total == 0:
            return
        self.cancelling = True
        cancelled = replace(tally, cancelled=tally.total - tally.sent - tally.failed)
        self.workflow = replace(self.workflow, tally=cancelled)

    def emit(
        self,
        payload: Message,
        *,
        delay_s: float = 0.0,
        attempt: int = 1,
        id: uuid.UUID | None = None,
        cost_told: bool = False,
    ) -> Envelope:
        """Publish `payload` (as a child of the cause) after the commit, `delay_s` from now (`id`: a derived
        id, for a message that must be the same whoever emits it). Otherwise a random id is safe here: the
        outbox is stored with the change, and a redelivered cause re-publishes the stored envelopes, ids and
        all. A workflow's end carries its requester's `notify`, so the cost-tracker can tell them the cost —
        unless it was `cost_told` already, when it recorded the usage of the text the workflow ends with."""
        notify = self.workflow.notify
        ended = isinstance(payload, WorkflowCompleted | WorkflowFailed | WorkflowCancelled)
        if notify is not None and ended and not cost_told:
            payload = payload.model_copy(update={"notify": notify})
        envelope = self.cause.child(payload, attempt=attempt, id=id)
        self.outbox.append(Outgoing(envelope, self.at + timedelta(seconds=delay_s)))
        return envelope
