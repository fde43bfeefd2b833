"""The cost API on the bus: one request type per cost query or change, each answered by a typed reply.

    gateway ── cost.stats.query ──▶ cost-tracker ── cost.stats.reply (data: CostStats) ──▶ gateway

Every request names its `requester` (the cost-tracker decides what they may see and change) and is routed to
the cost-tracker (contracts.routing). A reply carries `data`, or `code` (invalid_parameter, forbidden,
not_found) and `error` when the request was refused. Shapes are snake_case with amounts as Decimal (exact
decimal strings on the bus); the gateway's camelCase HTTP models are derived from these classes
(services/gateway/cost_schemas.py), so each field is declared once, here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Final, Literal

from pydantic import AwareDatetime, Field, StrictBool, StringConstraints, field_validator, model_validator

from contracts.enums import CostPeriod, IntentType, Provider
from contracts.envelope import Message, register
from contracts.experiments import (
    MAX_ARMS,
    MIN_ARMS,
    Arm,
    ArmName,
    BucketBy,
    Experiment,
    ExperimentResults,
    ExperimentRule,
    Experiments,
)
from contracts.ids import USER_ID_MAX_LENGTH, USER_ID_PATTERN
from contracts.messages import Part, Requester

# Query limits every side agrees on: a list holds at most MAX_LIST_LIMIT items, a range or lookback spans
# at most MAX_RANGE_DAYS days. Times outside QUERY_MIN_TIME..QUERY_MAX_TIME are refused, never computed
# with (near datetime's limits the time in UTC overflowed: issue 14).
MAX_LIST_LIMIT: Final = 500
DEFAULT_LIST_LIMIT: Final = 50
MAX_RANGE_DAYS: Final = 366
QUERY_MIN_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
QUERY_MAX_TIME: Final = datetime(2200, 1, 1, tzinfo=UTC)

# A user id (contracts.ids): never "*", the global scope.
UserId = Annotated[str, StringConstraints(min_length=1, max_length=USER_ID_MAX_LENGTH, pattern=USER_ID_PATTERN)]
# An amount asked for: positive, read exactly, at most 10 digits before the point and 10 after.
Amount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False, max_digits=20, decimal_places=10)]
Limit = Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT, description="at most this many items")]
Lookback = Annotated[int, Field(ge=1, le=MAX_RANGE_DAYS, description="days of history used")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Severity = Literal["info", "warning", "critical"]
Action = Literal["none", "downgrade", "block"]
Channel = Literal["slack", "sns", "email"]
Channels = Annotated[list[Channel], Field(max_length=3)]
GroupBy = Literal["provider", "model", "day", "type"]
# A breakdown's groups split once more (groupBy=day, splitBy=provider: each day's cost per provider).
SplitBy = Literal["provider", "model"]
# A budget is on every provider's spend over a period (what the routers act on).
BUDGET_RULE: Final = "a per_request threshold, or one on a provider's spend, alerts only: its action must be none"
RefusalCode = Literal["invalid_parameter", "forbidden", "not_found", "conflict"]
# An e-mail address: one @ and a dot in the domain, no spaces or control characters (the mail service judges
# the rest).
Email = Annotated[
    str,
    StringConstraints(
        max_length=254, strip_whitespace=True, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$"
    ),
]
# A webhook URL (https; the cost-tracker checks it as the router checks callback URLs: libs.callbacks).
WebhookUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]

# --- what the cost-tracker answers -----------------------------------------------------------------------


class ProviderAmounts(Part):
    azure: Decimal = Decimal(0)
    openai: Decimal = Decimal(0)


class CostStats(Part):
    user_id: str | None = Field(description="whose costs; null: everyone's (an admin without userId)")
    today_total: Decimal = Field(description="USD since 00:00 UTC")
    month_total: Decimal = Field(description="USD since the 1st, 00:00 UTC")
    provider_breakdown: ProviderAmounts = Field(description="today's split: sums to today's total")
    month_provider_breakdown: ProviderAmounts = Field(description="the month's split: sums to the month's total")
    today_provider_breakdown: ProviderAmounts = Field(description="the same as providerBreakdown (earlier clients)")
    requests: int = Field(description="billed provider calls, month to date")
    today_requests: int
    workflows: int = Field(description="workflows with costs, month to date")
    average_cost_per_workflow: Decimal = Field(description="the month's total / its workflows")
    estimated_total: Decimal = Field(
        description="month to date, priced at a provider's flat rate (model without a price)"
    )
    day_start: AwareDatetime
    month_start: AwareDatetime
    currency: Literal["USD"] = "USD"


class BreakdownPart(Part):
    """One provider's or model's share of a breakdown group (splitBy)."""

    key: str = Field(description="the provider or model")
    cost: Decimal
    requests: int


class BreakdownGroup(Part):
    key: str = Field(description="the provider, model, day (YYYY-MM-DD) or workflow type")
    cost: Decimal
    requests: int
    prompt_tokens: int
    completion_tokens: int
    workflows: int
    estimated_cost: Decimal
    share: Decimal = Field(description="percent of the total")
    # Optional addition: the group split by provider or model (split_by).
    parts: list[BreakdownPart] | None = Field(
        default=None,
        description="splitBy: the group's cost per provider (every one) or model (every one with costs in the "
        "range), the same keys in every group; null without splitBy",
    )


class CostBreakdown(Part):
    user_id: str | None
    start: AwareDatetime
    end: AwareDatetime = Field(description="exclusive")
    group_by: GroupBy
    total: Decimal
    requests: int
    prompt_tokens: int
    completion_tokens: int
    groups: list[BreakdownGroup]
    # Optional addition: what each group's parts are split by.
    split_by: SplitBy | None = None


class CallCost(Part):
    provider: Provider
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    tokens_estimated: bool = Field(description="the provider gave no usage; tokens were counted locally")
    price_estimated: bool = Field(description="the model has no price; its provider's flat rate applied")
    price_entry: str = Field(description="the price table entry that priced the call")
    occurred_at: AwareDatetime
    cached_prompt_tokens: int = Field(default=0, description="of the prompt tokens, those billed at the cached rate")


def final_usage_recorded(
    calls: Iterable[CallCost], provider: Provider | None, prompt_tokens: int, completion_tokens: int
) -> bool:
    """Whether the usage of a workflow's final generation (from `provider`; None: any) is among its recorded
    `calls`: then its total will not change (the worker publishes a generation's usage before its result, but
    the two travel separately)."""
    return any(
        call.prompt_tokens == prompt_tokens
        and call.completion_tokens == completion_tokens
        and (provider is None or call.provider is provider)
        for call in calls
    )


class WorkflowCost(Part):
    workflow_id: uuid.UUID
    user_id: str
    workflow_type: IntentType | None = Field(description="null: the workflow ended before any call was billed")
    status: Literal["running", "completed", "failed", "cancelled"]
    total_cost: Decimal
    requests: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost: Decimal
    first_at: AwareDatetime | None
    last_at: AwareDatetime | None
    # With one workflow: it ended and the usage of its final generation is recorded (the total will not
    # change). In lists it says only that the workflow ended.
    settled: bool = Field(description="the workflow ended and its costs are all recorded")
    calls: list[CallCost] | None = Field(default=None, description="with workflowId only")


class CampaignCosts(Part):
    user_id: str | None
    start: AwareDatetime
    end: AwareDatetime
    total: Decimal
    count: int = Field(description="workflows with costs in the range (the list holds at most `limit`)")
    workflows: list[WorkflowCost]


class Threshold(Part):
    id: uuid.UUID
    user_id: str | None = Field(description="null: global")
    period: CostPeriod
    limit_usd: Decimal = Field(description="USD")
    severity: Severity
    action: Action
    notification_channels: list[str]
    enabled: bool
    name: str | None
    created_by: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    # Optional addition: a threshold on one provider's spend.
    provider: Provider | None = Field(default=None, description="only this provider's spend; null: every provider's")


class ThresholdSummary(Part):
    total: int
    enabled: int
    by_period: dict[str, int]
    by_severity: dict[str, int]
    by_action: dict[str, int]


class Thresholds(Part):
    thresholds: list[Threshold]
    summary: ThresholdSummary


class AlertDelivery(Part):
    channel: str
    status: Literal["pending", "sending", "retrying", "sent", "failed", "skipped"]
    attempts: int
    last_error: str | None
    sent_at: AwareDatetime | None


class Alert(Part):
    id: uuid.UUID
    kind: Literal["threshold", "manual"]
    threshold_id: str
    user_id: str | None = Field(description="null: global")
    period: CostPeriod
    period_start: date = Field(description="the UTC day the period began (per_request: the call's day)")
    spent_usd: Decimal = Field(description="the period's spend when raised (per_request: the call's cost), USD")
    limit_usd: Decimal = Field(description="USD")
    severity: Severity
    message: str
    raised_at: AwareDatetime
    created_by: str | None
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: AwareDatetime | None
    deliveries: list[AlertDelivery]
    # Optional addition: the period's first instant (an hour's is not a day).
    period_started_at: AwareDatetime | None = Field(
        default=None, description="the period's first instant, UTC (per_request: the call's time)"
    )


class AlertSummary(Part):
    total: int
    unacknowledged: int
    by_severity: dict[str, int]


class Alerts(Part):
    alerts: list[Alert]
    summary: AlertSummary


class AlertDestination(Part):
    """Where a user's own alerts go besides the alert list (every alert of their scope)."""

    user_id: str
    email: str | None = Field(description="e-mailed here (SES); null: not by e-mail")
    webhook_url: str | None = Field(
        description="POSTed here as JSON, signed like the workflow webhooks (X-Signature); null: no webhook"
    )
    updated_at: AwareDatetime | None = Field(description="null: never set")


class DailyCost(Part):
    date: date
    cost: Decimal


class ForecastWindow(Part):
    days: int
    total: Decimal
    lower: Decimal
    upper: Decimal


class WeekdayEffect(Part):
    """How far one weekday's cost lies from the week's average day, with its 95% interval."""

    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    effect: Decimal = Field(description="USD above (below: negative) the average day of the week")
    lower: Decimal
    upper: Decimal


class CostForecast(Part):
    user_id: str | None
    method: Literal["linear_trend", "daily_mean", "no_history", "weekly_season"]
    lookback_days: int
    history_days: int = Field(description="days the fit used (from the first day with costs, to yesterday)")
    history: list[DailyCost]
    daily_average: Decimal
    trend_per_day: Decimal = Field(description="change of the daily cost per day, USD")
    interval_level: Decimal = Field(description="the intervals' confidence (0.95)")
    next_7_days: ForecastWindow
    next_30_days: ForecastWindow
    generated_at: AwareDatetime
    # Optional addition: with weekly_season (three weeks of history or more), each weekday's effect.
    weekly_effect: list[WeekdayEffect] | None = Field(
        default=None, description="weekly_season: each weekday's effect, Monday first"
    )


class Recommendation(Part):
    # Optional addition: what `cost.policy.apply` names (uuid5 of kind, type, providers and model: the same
    # advice has the same id whatever its figures).
    id: uuid.UUID | None = Field(default=None, description="apply it by this id (switch_provider)")
    kind: Literal["switch_provider", "price_missing"]
    workflow_type: IntentType | None = None
    from_provider: Provider | None = None
    to_provider: Provider | None = None
    model: str | None = None
    requests: int
    current_cost: Decimal
    projected_cost: Decimal
    estimated_saving: Decimal
    saving_percent: Decimal = Field(description="percent")
    description: str


class CostOptimization(Part):
    user_id: str | None
    lookback_days: int
    start: AwareDatetime
    end: AwareDatetime
    total_cost: Decimal
    potential_saving: Decimal
    recommendations: list[Recommendation]


class PolicyRule(Part):
    """One intent type's routing in the policy in force: the provider, and the model asked of it."""

    policy_id: uuid.UUID
    workflow_type: IntentType
    provider: Provider
    model: str | None = Field(description="the model asked of the provider; null: the worker's configured one")
    recommendation_id: uuid.UUID | None = Field(description="the recommendation it was applied from")
    applied_by: str
    applied_at: AwareDatetime


class Policy(PolicyRule):
    """An applied routing policy, in force or reverted."""

    estimated_saving: Decimal | None = Field(description="the recommendation's saving when applied, USD")
    in_force: bool
    automatic: bool = Field(default=False, description="applied by the automatic mode (reverted by it too)")
    reverted_by: str | None = Field(description="who reverted it, or applied the next one of its type")
    reverted_at: AwareDatetime | None


class AutoOptimize(Part):
    """The automatic mode: while the spend of a budget rule's period is past `trigger_percent` of its limit,
    the current switch_provider recommendations saving at least `min_saving_percent` are applied as routing
    policies (applied_by "auto-optimize"); below it, or switched off, those policies are reverted."""

    enabled: bool
    threshold_id: uuid.UUID | None = Field(description="the budget rule (a global threshold with an action)")
    trigger_percent: Decimal = Field(description="act from this share of the rule's limit, percent")
    min_saving_percent: Decimal = Field(description="apply only recommendations saving at least this, percent")
    lookback_days: int
    active: bool = Field(description="acting now: the rule's period spend is past the trigger")
    spent_usd: Decimal | None = Field(description="the rule's period spend now")
    limit_usd: Decimal | None = Field(description="the rule's limit")
    updated_by: str | None
    updated_at: AwareDatetime | None
    version: int = Field(description="the routing set's version")
    in_force: list[Policy] = Field(description="the routing policies in force, automatic ones included")


class Policies(Part):
    version: int = Field(description="the routing set's version: one more with every change (0: none)")
    policies: list[Policy] = Field(description="in force first, then reverted ones, newest first")


# --- replies ---------------------------------------------------------------------------------------------


class CostReply(Message):
    """Base of the cost replies: `data`, or `code` and `error` when the request was refused."""

    code: RefusalCode | None = None
    error: str | None = None


@register
class CostStatsReply(CostReply):
    TYPE = "cost.stats.reply"
    data: CostStats | None = None


@register
class CostBreakdownReply(CostReply):
    TYPE = "cost.breakdown.reply"
    data: CostBreakdown | None = None


@register
class WorkflowCostReply(CostReply):
    TYPE = "cost.workflow.reply"
    data: WorkflowCost | None = None


@register
class CampaignCostsReply(CostReply):
    TYPE = "cost.campaigns.reply"
    data: CampaignCosts | None = None


@register
class ThresholdsReply(CostReply):
    TYPE = "cost.thresholds.reply"
    data: Thresholds | None = None


@register
class ThresholdReply(CostReply):
    TYPE = "cost.threshold.reply"
    data: Threshold | None = None


@register
class AlertsReply(CostReply):
    TYPE = "cost.alerts.reply"
    data: Alerts | None = None


@register
class AlertReply(CostReply):
    TYPE = "cost.alert.reply"
    data: Alert | None = None


@register
class AlertDestinationReply(CostReply):
    TYPE = "cost.destination.reply"
    data: AlertDestination | None = None


@register
class PolicyReply(CostReply):
    TYPE = "cost.policy.reply"
    data: Policy | None = None


@register
class PoliciesReply(CostReply):
    TYPE = "cost.policies.reply"
    data: Policies | None = None


@register
class AutoOptimizeReply(CostReply):
    TYPE = "cost.optimize.reply"
    data: AutoOptimize | None = None


@register
class ExperimentReply(CostReply):
    TYPE = "cost.experiment.reply"
    data: Experiment | None = None


@register
class ExperimentsReply(CostReply):
    TYPE = "cost.experiments.reply"
    data: Experiments | None = None


@register
class ExperimentResultsReply(CostReply):
    TYPE = "cost.experiment.results.reply"
    data: ExperimentResults | None = None


@register
class CostForecastReply(CostReply):
    TYPE = "cost.forecast.reply"
    data: CostForecast | None = None


@register
class CostOptimizationReply(CostReply):
    TYPE = "cost.optimization.reply"
    data: CostOptimization | None = None


# --- requests --------------------------------------------------------------------------------------------


class CostRequest(Message):
    """Base of the cost requests; REPLY is the type they are answered with."""

    REPLY: ClassVar[type[CostReply]]
    requester: Requester


class UserScoped(CostRequest):
    user_id: UserId | None = Field(
        default=None, description="admin: whose costs (default: everyone's); others: only their own id"
    )


class RangeRequest(UserScoped):
    """[start, end); by default from the 1st of this month, 00:00 UTC, to now."""

    start: AwareDatetime | None = None
    end: AwareDatetime | None = Field(default=None, description="exclusive")

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        """In UTC, and within QUERY_MIN_TIME..QUERY_MAX_TIME (an overflow is the caller's bad input)."""
        if value is None:
            return None
        try:
            value = value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("out of range") from exc
        if not QUERY_MIN_TIME <= value <= QUERY_MAX_TIME:
            raise ValueError(f"must be between {QUERY_MIN_TIME.date()} and {QUERY_MAX_TIME.date()}")
        return value


@register
class CostStatsQuery(UserScoped):
    """Today's and this month's costs."""

    TYPE = "cost.stats.query"
    REPLY = CostStatsReply


@register
class CostBreakdownQuery(RangeRequest):
    """Costs over a range, grouped."""

    TYPE = "cost.breakdown.query"
    REPLY = CostBreakdownReply
    group_by: GroupBy = "provider"
    # Optional addition: each group's cost per provider or model too (groupBy=day: the daily series).
    split_by: SplitBy | None = Field(default=None, description="each group's cost per provider or model too")


@register
class WorkflowCostQuery(UserScoped):
    """One workflow's cost with its calls."""

    TYPE = "cost.workflow.query"
    REPLY = WorkflowCostReply
    workflow_id: uuid.UUID


@register
class CampaignCostsQuery(RangeRequest):
    """The workflows with costs in a range, the latest first."""

    TYPE = "cost.campaigns.query"
    REPLY = CampaignCostsReply
    limit: Limit = DEFAULT_LIST_LIMIT


@register
class ThresholdsQuery(UserScoped):
    """The thresholds the requester may see."""

    TYPE = "cost.thresholds.query"
    REPLY = ThresholdsReply
    period: CostPeriod | None = Field(default=None, description="hourly, daily, monthly or per_request")
    enabled: bool | None = Field(default=None, description="only enabled (true) or disabled (false) ones")


@register
class ThresholdCreate(UserScoped):
    """A threshold: an alert once per period when spend reaches it, and a budget with an action."""

    TYPE = "cost.threshold.create"
    REPLY = ThresholdReply
    period: CostPeriod = Field(
        description="hourly, daily or monthly (UTC calendar hours, days and months), or per_request (each call's cost)"
    )
    limit_usd: Amount = Field(description="USD")
    severity: Severity = "warning"
    action: Action = Field(
        default="none",
        description=(
            "block: new workflows refused; downgrade: sent to openai (not with per_request or a provider: "
            "those alert only)"
        ),
    )
    notification_channels: Channels | None = Field(
        default=None,
        description=(
            "admins only (a user's thresholds alert in-app, in the alert list); default: every channel for an "
            "admin's threshold (unconfigured ones are skipped), none for a user's"
        ),
    )
    enabled: StrictBool = True
    name: Name | None = None
    is_global: StrictBool = Field(default=False, description="everyone's spend together (admin)")
    provider: Provider | None = Field(default=None, description="only this provider's spend (default: all together)")

    @model_validator(mode="after")
    def _global_has_no_user(self) -> ThresholdCreate:
        if self.is_global and self.user_id is not None:
            raise ValueError("a global threshold has no user id")
        if self.action != "none" and (self.period is CostPeriod.PER_REQUEST or self.provider is not None):
            raise ValueError(BUDGET_RULE)
        return self


@register
class ThresholdUpdate(CostRequest):
    """A threshold changed: the fields given change, the others stay (a threshold's user never changes)."""

    TYPE = "cost.threshold.update"
    REPLY = ThresholdReply
    threshold_id: uuid.UUID
    period: CostPeriod | None = None
    limit_usd: Amount | None = None
    severity: Severity | None = None
    action: Action | None = None
    notification_channels: Channels | None = None
    enabled: StrictBool | None = None
    name: Name | None = None

    @model_validator(mode="after")
    def _per_request_alerts_only(self) -> ThresholdUpdate:
        if self.action not in (None, "none") and self.period is CostPeriod.PER_REQUEST:
            raise ValueError(BUDGET_RULE)
        return self


@register
class AlertsQuery(RangeRequest):
    """Raised alerts, newest first, with their deliveries."""

    TYPE = "cost.alerts.query"
    REPLY = AlertsReply
    severity: Severity | None = Field(default=None, description="only this severity")
    acknowledged: bool | None = Field(default=None, description="only acknowledged (true) or open (false) ones")
    limit: Limit = DEFAULT_LIST_LIMIT


@register
class AlertCreate(UserScoped):
    """An alert raised now by an admin, delivered to the channels like any other."""

    TYPE = "cost.alert.create"
    REPLY = AlertReply
    message: Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]
    limit_usd: Amount = Field(description="the figure the alert is about, USD")
    period: Literal["hourly", "daily", "monthly"] = Field(default="daily", description="the period it is about")
    severity: Severity = "warning"
    notification_channels: Channels | None = None


@register
class AlertUpdate(CostRequest):
    """An alert acknowledged (or reopened)."""

    TYPE = "cost.alert.update"
    REPLY = AlertReply
    alert_id: uuid.UUID
    acknowledged: StrictBool


@register
class AlertDestinationQuery(UserScoped):
    """Where the user's own alerts go."""

    TYPE = "cost.destination.query"
    REPLY = AlertDestinationReply


@register
class AlertDestinationUpdate(UserScoped):
    """Where the user's own alerts go, replaced: a destination left out is removed."""

    TYPE = "cost.destination.update"
    REPLY = AlertDestinationReply
    email: Email | None = Field(default=None, description="the user's e-mail address")
    webhook_url: WebhookUrl | None = Field(default=None, description="https URL the alerts are POSTed to")


@register
class CostForecastQuery(UserScoped):
    """The next 7 and 30 days' cost from the daily history."""

    TYPE = "cost.forecast.query"
    REPLY = CostForecastReply
    lookback_days: Lookback = 28


@register
class CostOptimizationQuery(UserScoped):
    """Recommendations from the recorded history."""

    TYPE = "cost.optimization.query"
    REPLY = CostOptimizationReply
    lookback_days: Lookback = 30


@register
class PolicyApply(CostRequest):
    """A switch_provider recommendation applied (admin): its workflow type routed to its provider and model."""

    TYPE = "cost.policy.apply"
    REPLY = PolicyReply
    recommendation_id: uuid.UUID = Field(description="a recommendation's id, as the optimization query answers it")
    lookback_days: Lookback = Field(default=30, description="the history it must still be recommended by")


@register
class PolicyRevert(CostRequest):
    """An applied policy reverted (admin): its workflow type routed by the default rules again."""

    TYPE = "cost.policy.revert"
    REPLY = PolicyReply
    policy_id: uuid.UUID


@register
class PoliciesQuery(CostRequest):
    """The routing policies, in force and reverted, with the set's version."""

    TYPE = "cost.policies.query"
    REPLY = PoliciesReply


@register
class AutoOptimizeQuery(CostRequest):
    """The automatic mode and the policies in force (admin)."""

    TYPE = "cost.optimize.query"
    REPLY = AutoOptimizeReply


Percent = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False, max_digits=6, decimal_places=2)]


@register
class AutoOptimizeUpdate(CostRequest):
    """The automatic mode switched on (within a budget rule) or off (its policies reverted) (admin)."""

    TYPE = "cost.optimize.update"
    REPLY = AutoOptimizeReply
    enabled: StrictBool
    threshold_id: uuid.UUID | None = Field(default=None, description="the budget rule it acts within (to enable)")
    trigger_percent: Percent = Field(default=Decimal(80), description="act from this share of the rule's limit")
    min_saving_percent: Percent = Field(default=Decimal(10), description="the least saving worth applying")
    lookback_days: Lookback = 30


@register
class ExperimentCreate(CostRequest):
    """An A/B experiment started (admin): the workflow type's new workflows split between its arms."""

    TYPE = "cost.experiment.create"
    REPLY = ExperimentReply
    name: Name
    workflow_type: IntentType
    bucket_by: BucketBy = "user"
    arms: list[Arm] = Field(min_length=MIN_ARMS, max_length=MAX_ARMS)

    @model_validator(mode="after")
    def _arms_split_something(self) -> ExperimentCreate:
        if sum((arm.weight for arm in self.arms), Decimal(0)) <= 0:
            raise ValueError("the arms' weights must add up to more than 0")
        if len({arm.name for arm in self.arms}) != len(self.arms):
            raise ValueError("each arm needs a name of its own")
        return self


@register
class ExperimentsQuery(CostRequest):
    """The experiments (admin)."""

    TYPE = "cost.experiments.query"
    REPLY = ExperimentsReply


@register
class ExperimentResultsQuery(CostRequest):
    """An experiment's results per arm from the recorded history (admin)."""

    TYPE = "cost.experiment.results.query"
    REPLY = ExperimentResultsReply
    experiment_id: uuid.UUID


@register
class ExperimentStop(CostRequest):
    """An experiment stopped (admin); with `promote_arm`, that arm's provider and model become the type's
    routing policy."""

    TYPE = "cost.experiment.stop"
    REPLY = ExperimentReply
    experiment_id: uuid.UUID
    promote_arm: ArmName | None = None


# --- to the routers --------------------------------------------------------------------------------------


@register
class RoutingPolicy(Message):
    """The routing policy in force, whole: sent by the cost-tracker on every change and again periodically;
    a router stores the highest `version` it saw and routes new workflows of each rule's type by it."""

    TYPE = "routing.policy"
    version: int = Field(ge=1, description="one more with every change: a policy applied or reverted, an experiment")
    rules: list[PolicyRule] = Field(description="at most one per workflow type")
    # Optional addition: the running experiments (contracts/experiments.py), at most one per workflow type;
    # an experiment's type is routed by its arms rather than by its rule.
    experiments: list[ExperimentRule] = Field(default_factory=list, description="the running experiments")


# Every cost request, for the routing table, the permissions and the cost-tracker's handlers.
COST_REQUESTS: tuple[type[CostRequest], ...] = (
    CostStatsQuery,
    CostBreakdownQuery,
    WorkflowCostQuery,
    CampaignCostsQuery,
    ThresholdsQuery,
    ThresholdCreate,
    ThresholdUpdate,
    AlertsQuery,
    AlertCreate,
    AlertUpdate,
    AlertDestinationQuery,
    AlertDestinationUpdate,
    CostForecastQuery,
    CostOptimizationQuery,
    PolicyApply,
    PolicyRevert,
    PoliciesQuery,
    AutoOptimizeQuery,
    AutoOptimizeUpdate,
    ExperimentCreate,
    ExperimentsQuery,
    ExperimentResultsQuery,
    ExperimentStop,
)
