"""Payloads of every v1 message type. One class per (type, version); the bus decodes by `TYPE`/`VERSION`.

A published schema never changes incompatibly: add optional fields only, otherwise define a `V2` class
beside the old one (tests/test_contracts.py compares against contracts/frozen/).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.enums import (
    BudgetAction,
    CostPeriod,
    DeliveryState,
    ErrorType,
    IntentType,
    Priority,
    Provider,
    ProviderState,
    RateLimiterState,
    WorkflowStatus,
)
from contracts.envelope import Message, register


class Part(BaseModel):
    """A plain value object inside a payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Intent(Part):
    """What the user asked for (the original plan's intent, snake_case on the bus)."""

    type: IntentType
    data: dict[str, Any] = Field(default_factory=dict)
    platforms: list[str] = Field(default_factory=list)
    content_type: str | None = None
    send_to_onlyfans: bool = False
    recipient_id: str | None = None
    recipient_ids: list[str] = Field(default_factory=list)
    requires_multi_platform: bool = False
    force_provider: Provider | None = None
    priority: Priority = Priority.MEDIUM


class ErrorInfo(Part):
    """A classified failure (docs/architecture.md#generation-and-fallback)."""

    type: ErrorType
    message: str
    retryable: bool
    retry_after_s: float | None = None
    status_code: int | None = None
    # Optional addition: True when what was unavailable is a delivery limiter's own Redis (the rate-limiter's
    # or the of-sender's), not a provider: the delivery was held or given up by RATE_LIMITER_DOWN_POLICY.
    limiter_down: bool = False


class Recipient(Part):
    """One fan of a campaign: the platform id, and (with `data.personalize`) what to say to that fan."""

    id: str
    vars: dict[str, str] = Field(default_factory=dict)


class DeliveryCounts(Part):
    """How a workflow's deliveries ended (or stand): the terminal state's summary."""

    total: int = Field(default=0, ge=0)
    sent: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    cancelled: int = Field(default=0, ge=0)


class Usage(Part):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)
    estimated: bool = False
    # Optional addition to v1: the part of prompt_tokens the provider served from its prompt cache
    # (OpenAI's prompt_tokens_details.cached_tokens), billed at the cached rate.
    cached_prompt_tokens: int = Field(default=0, ge=0)


class Notify(Part):
    """Where a requester waiting for a workflow's end (the gateway's ?wait=true) wants it told, instead of
    asking: its instance's reply queue, and a correlation id per thing told. When the workflow is terminal
    the router sends a WorkflowStatusReply with the terminal view (`end_correlation_id`), and the cost-tracker,
    once it has recorded the end, a WorkflowCostReply with what it recorded (`cost_correlation_id`). Both are
    best effort: a requester that hears nothing (it restarted, the broker lost its queue) asks instead.

    For a workflow without deliveries the router also hands it to the workflow's generation requests, and the
    worker to the usage of the one that succeeds (`cost_notified`): the cost-tracker tells the cost once that
    usage is recorded, while the router is still finishing the workflow, and the end then carries no `notify`.
    Anything else (deliveries, a failure, a cancellation, a text written again after a refused draft) is told
    its cost at the end (docs/decisions/0022-cost-told-at-the-texts-usage.md)."""

    reply_to: str
    end_correlation_id: str
    cost_correlation_id: str


# --- workflow -------------------------------------------------------------------------------------------


@register
class WorkflowRequested(Message):
    TYPE = "workflow.requested"
    intent: Intent
    trace_id: str | None = None
    idempotency_key: str | None = None
    deadline_s: float | None = Field(default=None, gt=0)
    # Optional additions to v1: the campaign's fans with their personalisation (instead of, or besides,
    # intent.recipient_ids), and where to POST the summary when the workflow ends.
    recipients: list[Recipient] = Field(default_factory=list)
    callback_url: str | None = None
    # Optional additions to v1: the creator's platform account the messages are sent from (None: the
    # requester's own id, as before), and the failed workflow this one retries.
    account_id: str | None = None
    retry_of: uuid.UUID | None = None
    # Optional addition to v1: tell the requester when the workflow ends (None: it asks, if it wants to know).
    notify: Notify | None = None


@register
class WorkflowCompleted(Message):
    TYPE = "workflow.completed"
    provider: Provider | None
    content: str | None
    duration_ms: float = Field(ge=0)
    usage: Usage | None = None
    cost_usd: Decimal | None = None
    deliveries: DeliveryCounts | None = None  # optional addition: a delivering workflow's outcome
    # Optional additions: the experiment arm the workflow was assigned to (contracts/experiments.py).
    experiment_id: uuid.UUID | None = None
    arm: str | None = None
    notify: Notify | None = None  # optional addition: the request's, so the cost-tracker tells the cost


@register
class WorkflowTimer(Message):
    """A router-to-router wake-up, delayed on the bus: a deadline to enforce or a retry to start."""

    TYPE = "workflow.timer"
    purpose: Literal["deadline", "retry"]
    provider: Provider | None = None


@register
class WorkflowFailed(Message):
    TYPE = "workflow.failed"
    error: ErrorInfo
    duration_ms: float = Field(ge=0)
    deliveries: DeliveryCounts | None = None  # optional addition: a delivering workflow's outcome
    # Optional additions: the experiment arm the workflow was assigned to (contracts/experiments.py).
    experiment_id: uuid.UUID | None = None
    arm: str | None = None
    notify: Notify | None = None  # optional addition: the request's, so the cost-tracker tells the cost


@register
class WorkflowFanout(Message):
    """A router-to-router step of a campaign's fan-out: request the deliveries from `from_seq` on, one chunk
    per message, so no handler publishes (or holds) a whole campaign at once."""

    TYPE = "workflow.fanout"
    from_seq: int = Field(ge=0)


# --- generation -----------------------------------------------------------------------------------------


@register
class GenerationRequested(Message):
    TYPE = "generation.requested"
    provider: Provider
    intent: Intent
    timeout_s: float = Field(gt=0)
    model: str | None = None
    recipient_id: str | None = None
    # Optional addition: the prompt variant an experiment's arm asks for (contracts/experiments.py; None: default).
    prompt_variant: str | None = None
    # Optional addition: the recipient's personalisation (name, last purchase, ...) for this text's prompt.
    recipient_vars: dict[str, str] = Field(default_factory=dict)
    # Optional addition: the workflow's requester waiting for its cost (set on the workflow's own text only).
    notify: Notify | None = None


@register
class GenerationCompleted(Message):
    TYPE = "generation.completed"
    provider: Provider
    model: str
    content: str
    usage: Usage
    latency_ms: float = Field(ge=0)
    request_id: str | None = None
    # Optional addition: this generation's usage (its only one) carries the request's `notify`, so the
    # cost-tracker tells the workflow's cost when it records it and the workflow's end need not ask it to.
    cost_notified: bool = False


@register
class GenerationFailed(Message):
    TYPE = "generation.failed"
    provider: Provider
    error: ErrorInfo
    latency_ms: float = Field(ge=0)


@register
class UsageRecorded(Message):
    TYPE = "usage.recorded"
    provider: Provider
    model: str
    usage: Usage
    workflow_type: IntentType
    generation_id: uuid.UUID
    # Optional addition: the request's `notify` on the usage of a generation that succeeded: the cost-tracker
    # tells the workflow's cost once it is recorded.
    notify: Notify | None = None


# --- delivery -------------------------------------------------------------------------------------------


@register
class DeliveryRequested(Message):
    TYPE = "delivery.requested"
    delivery_id: uuid.UUID
    account_id: str
    recipient_id: str
    text: str
    # Optional addition: set by the rate-limiter on a request it holds while its Redis is unreachable — when
    # the hold began (RATE_LIMITER_DOWN_MAX_HOLD_S counts from it). None: not held.
    held_since: AwareDatetime | None = None


@register
class DeliveryApproved(Message):
    TYPE = "delivery.approved"
    delivery_id: uuid.UUID
    account_id: str
    recipient_id: str
    text: str
    slot_at: AwareDatetime


@register
class DeliveryReplanned(Message):
    """The rate-limiter moved a planned delivery to a later slot (an urgent delivery took its place): its
    approval, already delayed in the bus for the old slot, is to wait for `slot_at` instead."""

    TYPE = "delivery.replanned"
    delivery_id: uuid.UUID
    account_id: str
    slot_at: AwareDatetime


@register
class DeliveryScheduled(Message):
    """When a delivery's send is planned (`scheduledFor` in the status): the rate limiter's slot, or a later
    one the of-sender moved it to."""

    TYPE = "delivery.scheduled"
    delivery_id: uuid.UUID
    recipient_id: str
    slot_at: AwareDatetime
    # Set when the delivery was pushed back by a failure (a platform 429 or 5xx, an unreachable limiter):
    # the send is retried at `slot_at`. None: a plain (re)scheduled slot.
    error: ErrorInfo | None = None


@register
class DeliveryCompleted(Message):
    TYPE = "delivery.completed"
    delivery_id: uuid.UUID
    recipient_id: str
    platform_message_id: str
    sent_at: AwareDatetime


@register
class DeliveryFailed(Message):
    TYPE = "delivery.failed"
    delivery_id: uuid.UUID
    recipient_id: str
    error: ErrorInfo


# --- cost -----------------------------------------------------------------------------------------------


@register
class CostAlert(Message):
    TYPE = "cost.alert"
    threshold_id: str
    period: CostPeriod
    period_start: AwareDatetime
    scope_user_id: str | None = None
    spent_usd: Decimal
    limit_usd: Decimal
    # Optional additions: the stored alert this message announces, and what to tell people about it.
    alert_id: uuid.UUID | None = None
    severity: Literal["info", "warning", "critical"] | None = None
    message: str | None = None


@register
class BudgetStatus(Message):
    TYPE = "budget.status"
    scope_user_id: str | None = None
    action: BudgetAction
    period: CostPeriod
    spent_usd: Decimal
    limit_usd: Decimal | None = None


# --- request / reply (read endpoints ask the owning service) --------------------------------------------


class FallbackEntry(Part):
    from_provider: Provider
    to: str  # a provider, or "queue" for a delayed retry of the same one
    reason: str
    timestamp: AwareDatetime


class ProviderStates(Part):
    azure: ProviderState = ProviderState.PENDING
    openai: ProviderState = ProviderState.PENDING
    rate_limiter: RateLimiterState = RateLimiterState.PENDING
    onlyfans: DeliveryState = DeliveryState.PENDING


class RetryAttempts(Part):
    azure: int = 0
    openai: int = 0
    onlyfans: int = 0


class DeliveryView(Part):
    delivery_id: uuid.UUID
    recipient_id: str
    status: DeliveryState
    scheduled_for: AwareDatetime | None = None
    sent_at: AwareDatetime | None = None
    platform_message_id: str | None = None
    error: ErrorInfo | None = None
    # Optional additions: the delivery's position in its campaign (the page cursor) and its own text.
    seq: int | None = None
    text: str | None = None


class Progress(Part):
    """Where a delivering workflow stands: counts by stage, the next reserved slot, and the expected end."""

    total: int = Field(ge=0)
    generated: int = Field(ge=0)
    scheduled: int = Field(ge=0)
    sent: int = Field(ge=0)
    failed: int = Field(ge=0)
    cancelled: int = Field(default=0, ge=0)
    next_slot_at: AwareDatetime | None = None
    estimated_completion_at: AwareDatetime | None = None


class WorkflowView(Part):
    """A workflow's whole persisted state, for the status endpoint (docs/architecture.md#workflow-states)."""

    workflow_id: uuid.UUID
    user_id: str
    status: WorkflowStatus
    intent_type: IntentType
    priority: Priority
    current_provider: Provider | None = None
    provider_states: ProviderStates
    fallback_history: list[FallbackEntry] = Field(default_factory=list)
    retry_attempts: RetryAttempts
    result: str | None = None
    model: str | None = None
    usage: Usage | None = None
    cost_usd: Decimal | None = None
    error: ErrorInfo | None = None
    deliveries: list[DeliveryView] = Field(default_factory=list)
    trace_id: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    deadline_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    # Optional addition: a workflow with deliveries. `deliveries` above lists them only for a small workflow
    # (delivery.list.query pages through any).
    progress: Progress | None = None
    # Optional additions to v1: the account it sends from (None: user_id), the workflow it retries.
    account_id: str | None = None
    retry_of: uuid.UUID | None = None
    # Optional additions: the routing policy its provider was chosen by, the experiment arm it runs
    # (contracts/costs.py RoutingPolicy).
    routing_policy_id: uuid.UUID | None = None
    experiment_id: uuid.UUID | None = None
    arm: str | None = None


@register
class WorkflowAccepted(Message):
    """The router's reply to workflow.requested (sent as a request): persisted, or refused and why."""

    TYPE = "workflow.accepted"
    accepted: bool
    workflow: WorkflowView | None = None
    error: ErrorInfo | None = None
    # Optional addition to v1: this request created the workflow and its `notify` will be told the end (a
    # replayed request's is not: the first one's is; false from a router that does not tell).
    notifies: bool = False


@register
class WorkflowStatusQuery(Message):
    TYPE = "workflow.status.query"
    workflow_id: uuid.UUID
    requester_user_id: str
    requester_is_admin: bool = False
    # Answer when the workflow is terminal, or after this many seconds with its state then (the router may
    # hold for less); None: answer at once. What ?wait=true asks instead of polling.
    wait_s: float | None = Field(default=None, gt=0, le=300)


@register
class WorkflowStatusReply(Message):
    TYPE = "workflow.status.reply"
    found: bool
    workflow: WorkflowView | None = None


@register
class DeliveryListQuery(Message):
    """A page of a workflow's deliveries, in campaign order (keyset: the deliveries after `after_seq`)."""

    TYPE = "delivery.list.query"
    workflow_id: uuid.UUID
    requester_user_id: str
    requester_is_admin: bool = False
    status: DeliveryState | None = None
    after_seq: int | None = Field(default=None, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


@register
class DeliveryListReply(Message):
    TYPE = "delivery.list.reply"
    found: bool
    deliveries: list[DeliveryView] = Field(default_factory=list)
    next_cursor: int | None = None  # the after_seq of the next page; None: this was the last


class Requester(Part):
    """Who asks an operator question of the router: their id, whether an admin, the accounts they act for."""

    user_id: str
    is_admin: bool = False
    accounts: list[str] = Field(default_factory=list)  # the token's `accounts` claim


@register
class WorkflowCancelRequest(Message):
    """Cancel a workflow: nothing more is generated or sent for it (owner, an account's user, or admin)."""

    TYPE = "workflow.cancel"
    workflow_id: uuid.UUID
    requester: Requester


@register
class WorkflowCancelReply(Message):
    """`cancelled` (the workflow as it is now, with `sent_before`), or why not."""

    TYPE = "workflow.cancel.reply"
    outcome: Literal["cancelled", "not_found", "forbidden", "finished"]
    workflow: WorkflowView | None = None
    sent_before: int = Field(default=0, ge=0)  # deliveries sent before the cancel took effect


@register
class WorkflowCancelled(Message):
    """Announced when a workflow is cancelled: the of-sender sends none of its deliveries from then on, and
    the cost-tracker records how the workflow ended."""

    TYPE = "workflow.cancelled"
    workflow_id: uuid.UUID
    account_id: str
    cancelled_at: AwareDatetime
    duration_ms: float = Field(default=0.0, ge=0)  # from acceptance to the cancel
    deliveries: DeliveryCounts | None = None  # the counts the cancel left (a workflow that delivers)
    notify: Notify | None = None  # optional addition: the request's, so the cost-tracker tells the cost


class WorkflowListItem(Part):
    """One line of a workflow list: what it is, whose, how far it got."""

    workflow_id: uuid.UUID
    user_id: str
    account_id: str | None = None
    status: WorkflowStatus
    intent_type: IntentType
    priority: Priority
    deliveries: DeliveryCounts | None = None
    error: ErrorInfo | None = None
    retry_of: uuid.UUID | None = None
    trace_id: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    completed_at: AwareDatetime | None = None


@register
class WorkflowListQuery(Message):
    """The requester's workflows (an admin's: anyone's), newest first, filtered; keyset pages."""

    TYPE = "workflow.list.query"
    requester: Requester
    status: WorkflowStatus | None = None
    account_id: str | None = None
    intent_type: IntentType | None = None
    created_from: AwareDatetime | None = None  # inclusive
    created_to: AwareDatetime | None = None  # exclusive
    cursor: str | None = Field(default=None, max_length=200)  # the previous reply's next_cursor
    limit: int = Field(default=50, ge=1, le=500)


@register
class WorkflowListReply(Message):
    TYPE = "workflow.list.reply"
    ok: bool
    workflows: list[WorkflowListItem] = Field(default_factory=list)
    next_cursor: str | None = None  # None: this was the last page
    error: str | None = None  # why a query was refused (a cursor that is not one of ours)


@register
class WorkflowRetryRequest(Message):
    """Start a failed workflow again as a new workflow linked by `retry_of` (a campaign: its unsent fans)."""

    TYPE = "workflow.retry"
    workflow_id: uuid.UUID
    requester: Requester


@register
class WorkflowRetryReply(Message):
    TYPE = "workflow.retry.reply"
    outcome: Literal["retried", "not_found", "forbidden", "not_failed", "refused"]
    workflow: WorkflowView | None = None  # the new workflow
    error: ErrorInfo | None = None  # refused: why the new workflow was not accepted (a spent budget)


class WorkflowSummary(Part):
    """What a completion webhook tells: how the workflow ended (the body is its camelCase form)."""

    workflow_id: uuid.UUID
    user_id: str
    status: WorkflowStatus
    intent_type: IntentType
    deliveries: DeliveryCounts | None = None
    error: ErrorInfo | None = None
    trace_id: str | None = None
    created_at: AwareDatetime
    completed_at: AwareDatetime


@register
class WebhookRequested(Message):
    """POST `summary` to the requester's callback URL, signed; retried with backoff until it is accepted."""

    TYPE = "webhook.requested"
    url: str
    event_id: uuid.UUID  # stable across retries: the receiver's de-duplication key
    event: Literal["workflow.completed", "workflow.failed", "workflow.cancelled"]
    summary: WorkflowSummary
