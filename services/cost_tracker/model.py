"""The cost-tracker's records, as plain frozen data, and the calendar they are summed by.

Periods are calendar hours, days and months in UTC: a daily threshold of $50 means "$50 between 00:00 and
24:00 UTC". Running totals are kept per scope, period and provider (or all providers together). Every
amount is a Decimal.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from contracts.enums import BudgetAction, CostPeriod, IntentType, Provider
from contracts.experiments import Arm
from services.cost_tracker.constants import ALERT_NAMESPACE, CHANNEL_USER_EMAIL, CHANNEL_USER_WEBHOOK, GLOBAL_SCOPE


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ThresholdAction(StrEnum):
    """What crossing a threshold does besides alerting: nothing, or a budget action for the router."""

    NONE = "none"
    DOWNGRADE = "downgrade"
    BLOCK = "block"

    def budget_action(self) -> BudgetAction:
        if self is ThresholdAction.BLOCK:
            return BudgetAction.BLOCK
        return BudgetAction.DOWNGRADE if self is ThresholdAction.DOWNGRADE else BudgetAction.ALLOW


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not tried yet
    SENDING = "sending"  # leased to one replica until `claimed_until`
    RETRYING = "retrying"  # failed, another attempt is scheduled
    SENT = "sent"
    FAILED = "failed"  # permanently (refused, or out of attempts)
    SKIPPED = "skipped"  # the channel is not configured

    @property
    def final(self) -> bool:
        return self in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)


BUDGET_SEVERITY = {BudgetAction.ALLOW: 0, BudgetAction.DOWNGRADE: 1, BudgetAction.BLOCK: 2}

# The periods with running totals and budgets (per_request is a threshold type: one call's cost).
TOTAL_PERIODS: tuple[CostPeriod, ...] = (CostPeriod.HOURLY, CostPeriod.DAILY, CostPeriod.MONTHLY)


# --- the calendar ------------------------------------------------------------------------------------------


def period_start(period: CostPeriod, at: datetime) -> date:
    """The first day of the UTC day or month `at` falls in (an hour's: its day)."""
    day = at.astimezone(UTC).date()
    return day.replace(day=1) if period is CostPeriod.MONTHLY else day


def period_began(period: CostPeriod, at: datetime) -> datetime:
    """The first instant of the UTC hour, day or month `at` falls in (per_request: `at` itself)."""
    if period is CostPeriod.HOURLY:
        return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if period is CostPeriod.PER_REQUEST:
        return at.astimezone(UTC)
    return midnight(period_start(period, at))


def period_end(period: CostPeriod, began: datetime) -> datetime:
    """The first instant after the period that began at `began` (a month's: the 1st of the next)."""
    if period is CostPeriod.HOURLY:
        return began + timedelta(hours=1)
    if period is CostPeriod.DAILY:
        return began + timedelta(days=1)
    return (began.replace(day=28) + timedelta(days=4)).replace(day=1)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def scope_of(user_id: str | None) -> str:
    return GLOBAL_SCOPE if user_id is None else user_id


def user_of(scope: str) -> str | None:
    return None if scope == GLOBAL_SCOPE else scope


@dataclass(frozen=True, slots=True)
class SpendKey:
    """One running total: a scope (user id or GLOBAL_SCOPE), a period, the period's first instant (UTC) and
    a provider (None: every provider's)."""

    scope: str
    period: CostPeriod
    start: datetime
    provider: Provider | None = None


def spend_keys(user_id: str, at: datetime, provider: Provider) -> tuple[SpendKey, ...]:
    """The twelve totals one call of `user_id` on `provider` at `at` adds to (each period, all providers'
    and the provider's own), in the order rows are locked (no deadlocks: every writer locks the global rows
    last, and in the same order)."""
    keys = [
        SpendKey(scope, period, period_began(period, at), each)
        for scope in (user_id, GLOBAL_SCOPE)
        for period in TOTAL_PERIODS
        for each in (None, provider)
    ]
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked (a cost request's requester): a user sees and changes only their own; an admin everyone's."""

    user_id: str
    is_admin: bool = False


# --- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostEntry:
    """One billed provider call, priced (one per usage.recorded message)."""

    message_id: uuid.UUID  # the usage.recorded envelope id: the de-duplication key
    user_id: str
    workflow_id: uuid.UUID | None
    generation_id: uuid.UUID | None
    workflow_type: IntentType
    provider: Provider
    model: str
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool  # the provider gave no usage; the worker counted the tokens itself
    price_estimated: bool  # the model has no price; priced at its provider's rate
    price_entry: str
    prompt_price_per_1k: Decimal
    completion_price_per_1k: Decimal
    cost_usd: Decimal
    occurred_at: datetime
    # Of prompt_tokens, those the provider served from its prompt cache, and their rate.
    cached_prompt_tokens: int = 0
    cached_price_per_1k: Decimal | None = None  # None: the prompt rate


@dataclass(frozen=True, slots=True)
class WorkflowOutcome:
    """How a workflow ended (workflow.completed / .failed / .cancelled), for campaign costs and settling."""

    workflow_id: uuid.UUID
    user_id: str
    status: str  # "completed" | "failed" | "cancelled"
    provider: Provider | None
    prompt_tokens: int | None  # the final generation's usage, as the router reported it
    completion_tokens: int | None
    duration_ms: float
    finished_at: datetime
    experiment_id: uuid.UUID | None = None  # the experiment arm the router assigned it to
    arm: str | None = None
    error_type: str | None = None  # a failure's error type


@dataclass(frozen=True, slots=True)
class WorkflowSpend:
    """What a workflow's recorded calls cost, read when its end is stored (the WorkflowCost metric)."""

    calls: int
    cost_usd: Decimal
    last_provider: Provider | None  # the provider of the latest entry (None: no entries)


@dataclass(frozen=True, slots=True)
class Threshold:
    id: uuid.UUID
    scope_user_id: str | None  # None: global
    period: CostPeriod
    limit_usd: Decimal
    severity: Severity
    action: ThresholdAction
    channels: tuple[str, ...]
    enabled: bool
    name: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    provider: Provider | None = None  # None: every provider's spend; else only this provider's (alerts only)

    @property
    def scope(self) -> str:
        return scope_of(self.scope_user_id)


@dataclass(frozen=True, slots=True)
class AlertDestination:
    """Where a user's own alerts go besides the alert list: their e-mail address and their webhook."""

    user_id: str
    email: str | None
    webhook_url: str | None
    updated_at: datetime | None  # None: never set

    def channels(self) -> tuple[str, ...]:
        named = ((CHANNEL_USER_EMAIL, self.email), (CHANNEL_USER_WEBHOOK, self.webhook_url))
        return tuple(channel for channel, address in named if address)


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    status: DeliveryStatus
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    claimed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    id: uuid.UUID
    kind: str  # "threshold" | "manual"
    threshold_id: str  # a threshold's id, or "manual:<alert id>"
    scope_user_id: str | None
    period: CostPeriod
    period_start: datetime  # the period's first instant (per_request: the call's time)
    spent_usd: Decimal
    limit_usd: Decimal
    severity: Severity
    message: str
    raised_at: datetime
    created_by: str | None = None
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    published_at: datetime | None = None
    deliveries: tuple[Delivery, ...] = field(default_factory=tuple)


def alert_id_for(threshold_id: uuid.UUID | str, period: CostPeriod, start: datetime) -> uuid.UUID:
    """The id of a threshold's alert for the period beginning at `start`: a day's and a month's keyed by the
    day (as before hours existed: ids of stored alerts never change), an hour's by its first instant."""
    key = start.isoformat() if period is CostPeriod.HOURLY else start.astimezone(UTC).date().isoformat()
    return uuid.uuid5(ALERT_NAMESPACE, f"{threshold_id}|{key}")


def request_alert_id(threshold_id: uuid.UUID, message_id: uuid.UUID) -> uuid.UUID:
    """The id of a per-request threshold's alert for one billed call (its usage.recorded id)."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{threshold_id}|request|{message_id}")


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The budget action last decided for a scope and period (what the routers were told)."""

    scope: str
    period: CostPeriod
    action: BudgetAction
    period_start: datetime
    spent_usd: Decimal
    limit_usd: Decimal | None
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """An applied routing policy: a workflow type routed to a provider and model, until reverted or replaced."""

    id: uuid.UUID
    workflow_type: IntentType
    provider: Provider
    model: str | None  # None: the worker's configured model
    recommendation_id: uuid.UUID | None
    estimated_saving_usd: Decimal | None
    applied_by: str
    applied_at: datetime
    reverted_by: str | None = None
    reverted_at: datetime | None = None
    automatic: bool = False  # applied by the automatic mode, which reverts only these

    @property
    def in_force(self) -> bool:
        return self.reverted_at is None


@dataclass(frozen=True, slots=True)
class AutoSettings:
    """The automatic optimisation mode: on within a budget rule, or off."""

    enabled: bool
    threshold_id: uuid.UUID | None
    trigger_percent: Decimal
    min_saving_percent: Decimal
    lookback_days: int
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What an apply or revert left stored: the policy (None: unknown), the set's version, whether it changed."""

    policy: PolicyRecord | None
    version: int
    changed: bool


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    """An A/B experiment: a workflow type's new workflows split between arms, running until stopped."""

    id: uuid.UUID
    name: str
    workflow_type: IntentType
    bucket_by: str  # "user" | "workflow"
    arms: tuple[Arm, ...]
    created_by: str
    created_at: datetime
    status: str = "running"  # "running" | "stopped"
    promoted_arm: str | None = None
    stopped_by: str | None = None
    stopped_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArmSample:
    """One ended workflow of an experiment: its arm and what it cost, took and went through."""

    arm: str
    status: str  # "completed" | "failed" | "cancelled"
    duration_ms: float
    error_type: str | None
    cost_usd: Decimal
    providers: frozenset[Provider]  # of its billed calls
    rewrites: int  # calls beyond the first of one generation: drafts rewritten for the content gate


Dim = Literal["provider", "model", "day", "type", "workflow", "user"]
"""A dimension cost entries can be grouped by ("day": the UTC date, as YYYY-MM-DD)."""


@dataclass(frozen=True, slots=True)
class EntryFilter:
    user_id: str | None = None  # None: everyone's
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    workflow_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """Cost entries summed over one combination of dimension values (`keys`, in the order asked)."""

    keys: tuple[str, ...]
    cost_usd: Decimal
    calls: int
    prompt_tokens: int
    completion_tokens: int
    workflows: int
    estimated_cost_usd: Decimal  # the part priced at a provider's rate (model without a price)
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True, slots=True)
class AlertFilter:
    scope_user_id: str | None = None
    only_scope: bool = False  # True: exactly scope_user_id's alerts (None: the global ones)
    severity: Severity | None = None
    acknowledged: bool | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 50
