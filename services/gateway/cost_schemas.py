"""The cost API's request and response bodies (camelCase; the original plan's names where it has them: a threshold's
`type` and `threshold`, an alert's `threshold`, `currentValue` and `timestamp`).

Response models validate the cost-tracker's snake_case reply data by field name (services/cost_tracker/
views.py has the same names) and dump camelCase by alias; amounts are Decimal inside and JSON numbers with
the same digits on the wire (schemas.Money).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

from contracts.enums import CostPeriod, IntentType, Provider
from services.gateway.schemas import ApiModel, Money, UserId

Severity = Literal["info", "warning", "critical"]
Action = Literal["none", "downgrade", "block"]
Channel = Literal["slack", "sns", "email"]
# Money in a request: a positive JSON number (or a decimal string), read exactly (0.1 is one tenth).
# Pydantic documents a Decimal as any string; the document says what is accepted instead: a positive
# amount with at most 10 digits before the point and 10 after (max_digits=20, decimal_places=10).
AMOUNT_MAX: Final = 10**10
AMOUNT_STEP: Final = 1e-10
AMOUNT_PATTERN: Final = r"^0*([1-9]\d{0,9}(\.\d{0,10}0*)?|\.\d{0,9}[1-9]0*)$"
Amount = Annotated[
    Money,
    Field(gt=0, allow_inf_nan=False, max_digits=20, decimal_places=10),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": AMOUNT_MAX, "multipleOf": AMOUNT_STEP},
                {"type": "string", "pattern": AMOUNT_PATTERN},
            ]
        },
        mode="validation",
    ),
]
Percent = Annotated[Money, Field(description="percent")]

# --- requests ------------------------------------------------------------------------------------------


class CostRequest(BaseModel):
    """Request bodies: camelCase only, unknown fields refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=False, validate_by_alias=True, extra="forbid", frozen=True
    )


class ThresholdCreateRequest(CostRequest):
    """POST /api/v2/costs/thresholds. A threshold with an action other than "none" is also a budget."""

    # The handler's rule "a global threshold has no userId", in the document too.
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["global", "userId"],
                "properties": {"global": {"const": True}, "userId": {"type": "string"}},
            }
        }
    )

    period: CostPeriod = Field(alias="type", description="daily or monthly (UTC calendar days and months)")
    limit_usd: Amount = Field(alias="threshold", description="USD")
    severity: Severity = "warning"
    action: Action = Field(default="none", description="block: new workflows refused; downgrade: sent to openai")
    notification_channels: list[Channel] | None = Field(
        default=None,
        max_length=3,
        description=(
            "admins only (a user's thresholds alert in-app, in the alert list); default: every channel for an "
            "admin's threshold (unconfigured ones are skipped), none for a user's"
        ),
    )
    enabled: StrictBool = True
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    user_id: UserId | None = Field(default=None, description="whose spend (admin only for others); default: yours")
    is_global: StrictBool = Field(default=False, alias="global", description="everyone's spend together (admin)")


class ThresholdUpdateRequest(CostRequest):
    """PUT /api/v2/costs/thresholds: the fields given change, the others stay."""

    threshold_id: uuid.UUID
    period: CostPeriod | None = Field(default=None, alias="type")
    limit_usd: Amount | None = Field(default=None, alias="threshold")
    severity: Severity | None = None
    action: Action | None = None
    notification_channels: list[Channel] | None = Field(default=None, max_length=3)
    enabled: StrictBool | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class AlertCreateRequest(CostRequest):
    """POST /api/v2/costs/alerts (admin): raise an alert now, delivered to the channels."""

    message: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    limit_usd: Amount = Field(alias="threshold", description="the figure the alert is about, USD")
    period: CostPeriod = Field(default=CostPeriod.DAILY, alias="type")
    severity: Severity = "warning"
    user_id: UserId | None = Field(default=None, description="whose spend; absent: global")
    notification_channels: list[Channel] | None = Field(default=None, max_length=3)


class AlertUpdateRequest(CostRequest):
    """PUT /api/v2/costs/alerts: acknowledge (or un-acknowledge) an alert."""

    alert_id: uuid.UUID
    acknowledged: StrictBool


# --- responses -----------------------------------------------------------------------------------------


class ProviderAmounts(ApiModel):
    azure: Money
    openai: Money


class CostStatsData(ApiModel):
    user_id: str | None = Field(description="whose costs; null: everyone's (an admin without userId)")
    today_total: Money = Field(description="USD since 00:00 UTC")
    month_total: Money = Field(description="USD since the 1st, 00:00 UTC")
    provider_breakdown: ProviderAmounts = Field(description="today's split, summing to todayTotal")
    month_provider_breakdown: ProviderAmounts = Field(description="the month's split, summing to monthTotal")
    today_provider_breakdown: ProviderAmounts = Field(description="the same as providerBreakdown (earlier clients)")
    requests: int = Field(description="billed provider calls, month to date")
    today_requests: int
    workflows: int = Field(description="workflows with costs, month to date")
    average_cost_per_workflow: Money = Field(description="monthTotal / workflows")
    estimated_total: Money = Field(description="month to date, priced at a provider's rate (model without a price)")
    day_start: AwareDatetime
    month_start: AwareDatetime
    currency: Literal["USD"]


class CostStatsResponse(ApiModel):
    success: Literal[True] = True
    data: CostStatsData


class BreakdownGroup(ApiModel):
    key: str = Field(description="the provider, model, day (YYYY-MM-DD) or workflow type")
    cost: Money
    requests: int
    prompt_tokens: int
    completion_tokens: int
    workflows: int
    estimated_cost: Money
    share: Percent


class CostBreakdownData(ApiModel):
    user_id: str | None
    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to", description="exclusive")
    group_by: Literal["provider", "model", "day", "type"]
    total: Money
    requests: int
    prompt_tokens: int
    completion_tokens: int
    groups: list[BreakdownGroup]


class CostBreakdownResponse(ApiModel):
    success: Literal[True] = True
    data: CostBreakdownData


class CallCost(ApiModel):
    provider: Provider
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: Money
    tokens_estimated: bool = Field(description="the provider gave no usage; tokens were counted locally")
    price_estimated: bool = Field(description="the model has no price; its provider's rate applied")
    price_entry: str
    occurred_at: AwareDatetime


class WorkflowCost(ApiModel):
    workflow_id: uuid.UUID
    user_id: str
    workflow_type: IntentType | None
    status: Literal["running", "completed", "failed", "cancelled"]
    total_cost: Money
    requests: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost: Money
    first_at: AwareDatetime | None
    last_at: AwareDatetime | None
    settled: bool = Field(description="the workflow ended and its costs are all recorded")
    calls: list[CallCost] | None = Field(default=None, description="with workflowId only")


class CampaignCostsData(ApiModel):
    user_id: str | None
    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")
    total: Money
    count: int = Field(description="workflows with costs in the range (the list holds at most `limit`)")
    workflows: list[WorkflowCost]


class CampaignCostsResponse(ApiModel):
    success: Literal[True] = True
    data: CampaignCostsData | WorkflowCost


class Threshold(ApiModel):
    id: uuid.UUID
    user_id: str | None = Field(description="null: global")
    period: CostPeriod = Field(alias="type")
    limit_usd: Money = Field(alias="threshold", description="USD")
    severity: Severity
    action: Action
    notification_channels: list[str]
    enabled: bool
    name: str | None
    created_by: str
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ThresholdSummary(ApiModel):
    total: int
    enabled: int
    by_period: dict[str, int] = Field(alias="byType")
    by_severity: dict[str, int]
    by_action: dict[str, int]


class ThresholdsData(ApiModel):
    thresholds: list[Threshold]
    summary: ThresholdSummary


class ThresholdsResponse(ApiModel):
    success: Literal[True] = True
    data: ThresholdsData


class ThresholdResponse(ApiModel):
    success: Literal[True] = True
    data: Threshold


class AlertDelivery(ApiModel):
    channel: str
    status: Literal["pending", "sending", "retrying", "sent", "failed", "skipped"]
    attempts: int
    last_error: str | None
    sent_at: AwareDatetime | None


class Alert(ApiModel):
    id: uuid.UUID
    kind: Literal["threshold", "manual"]
    threshold_id: str
    user_id: str | None = Field(description="null: global")
    period: CostPeriod
    period_start: date
    spent_usd: Money = Field(alias="currentValue", description="the period's spend when raised, USD")
    limit_usd: Money = Field(alias="threshold", description="USD")
    severity: Severity
    message: str
    raised_at: AwareDatetime = Field(alias="timestamp")
    created_by: str | None
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: AwareDatetime | None
    deliveries: list[AlertDelivery]


class AlertSummary(ApiModel):
    total: int
    unacknowledged: int
    by_severity: dict[str, int]


class AlertsData(ApiModel):
    alerts: list[Alert]
    summary: AlertSummary


class AlertsResponse(ApiModel):
    success: Literal[True] = True
    data: AlertsData


class AlertResponse(ApiModel):
    success: Literal[True] = True
    data: Alert


class DailyCost(ApiModel):
    date: date
    cost: Money


class ForecastWindow(ApiModel):
    days: int
    total: Money
    lower: Money
    upper: Money


class ForecastData(ApiModel):
    user_id: str | None
    method: Literal["linear_trend", "daily_mean", "no_history"]
    lookback_days: int
    history_days: int
    history: list[DailyCost]
    daily_average: Money
    trend_per_day: Money = Field(description="change of the daily cost per day, USD")
    interval_level: Money = Field(description="the intervals' confidence (0.95)")
    next_7_days: ForecastWindow = Field(alias="next7Days")
    next_30_days: ForecastWindow = Field(alias="next30Days")
    generated_at: AwareDatetime


class ForecastResponse(ApiModel):
    success: Literal[True] = True
    data: ForecastData


class Recommendation(ApiModel):
    kind: Literal["switch_provider", "price_missing"]
    workflow_type: IntentType | None
    from_provider: Provider | None
    to_provider: Provider | None
    model: str | None
    requests: int
    current_cost: Money
    projected_cost: Money
    estimated_saving: Money
    saving_percent: Percent
    description: str


class OptimizationData(ApiModel):
    user_id: str | None
    lookback_days: int
    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")
    total_cost: Money
    potential_saving: Money
    recommendations: list[Recommendation]


class OptimizationResponse(ApiModel):
    success: Literal[True] = True
    data: OptimizationData
