"""A workflow's state (DESIGN §5), its legal status transitions, and the record of one handled message's
changes to it (`Change`: the new state, the history events, the outbox).

    accepted ──► generating ──► generated ──► delivering ──► completed
        │            │ ▲            │  │           │ ▲
        │            └─┘            │  └───────────┼─┼──────► completed (nothing to deliver)
        └────────────┴──────────────┴──────────────┴─┴──────► failed

generating → generating records a new attempt (a fallback or a queued retry, or a personalized campaign's
next text), delivering → delivering a delivery's progress. completed and failed are final (a late delivery
report on them is a `note`: recorded, no transition). Anything else raises IllegalTransition.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from contracts import Envelope, Message
from contracts.enums import Provider, WorkflowStatus
from contracts.messages import (
    DeliveryView,
    ErrorInfo,
    FallbackEntry,
    Intent,
    ProviderStates,
    RetryAttempts,
    Usage,
    WorkflowView,
)
from services.router.errors import IllegalTransition
from services.router.outbox import Outgoing

S = WorkflowStatus
TRANSITIONS: Mapping[WorkflowStatus, frozenset[WorkflowStatus]] = MappingProxyType(
    {
        S.ACCEPTED: frozenset({S.GENERATING, S.FAILED}),
        S.GENERATING: frozenset({S.GENERATING, S.GENERATED, S.FAILED}),
        S.GENERATED: frozenset({S.DELIVERING, S.COMPLETED, S.FAILED}),
        S.DELIVERING: frozenset({S.DELIVERING, S.COMPLETED, S.FAILED}),
        S.COMPLETED: frozenset(),
        S.FAILED: frozenset(),
    }
)
TERMINAL = frozenset({S.COMPLETED, S.FAILED})


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
    deliveries: tuple[DeliveryView, ...] = ()
    completed_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def duration_ms(self, now: datetime) -> float:
        return max(0.0, (now - self.created_at).total_seconds() * 1000)

    def to_view(self) -> WorkflowView:
        return WorkflowView(
            workflow_id=self.workflow_id,
            user_id=self.user_id,
            status=self.status,
            intent_type=self.intent.type,
            priority=self.intent.priority,
            current_provider=self.current_provider,
            provider_states=self.provider_states,
            fallback_history=list(self.fallback_history),
            retry_attempts=self.retry_attempts,
            result=self.result,
            model=self.model,
            usage=self.usage,
            error=self.error,
            deliveries=list(self.deliveries),
            trace_id=self.trace_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            deadline_at=self.deadline_at,
            completed_at=self.completed_at,
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

    def note(self, event: str, detail: Mapping[str, Any] | None = None, **changes: Any) -> None:
        """Apply `changes` without a status transition, recorded as an event (a delivery's report on a
        workflow that already finished: the fact is kept, the final status is not touched)."""
        current = self.workflow.status
        self.workflow = replace(self.workflow, updated_at=self.at, **changes)
        self.events.append(Event(event, current, current, self.at, detail or {}))

    def emit(self, payload: Message, *, delay_s: float = 0.0, attempt: int = 1) -> Envelope:
        """Publish `payload` (as a child of the cause) after the commit, `delay_s` from now."""
        envelope = self.cause.child(payload, attempt=attempt)
        self.outbox.append(Outgoing(envelope, self.at + timedelta(seconds=delay_s)))
        return envelope
