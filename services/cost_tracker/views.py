"""What the cost-tracker answers in `CostReply.data`, per query kind (snake_case; amounts are Decimal, which
travel as exact decimal strings on the bus).

The gateway validates these into its camelCase API models (services/gateway/cost_schemas.py, same field
names), so a field added here that the gateway does not know is dropped there rather than leaked.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from contracts.enums import CostPeriod, IntentType, Provider
from services.cost_tracker.model import Alert, DeliveryStatus, Severity, Threshold, ThresholdAction


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ProviderAmounts(View):
    azure: Decimal = Decimal(0)
    openai: Decimal = Decimal(0)


class StatsView(View):
    user_id: str | None  # None: everyone's (an admin without a filter)
    today_total: Decimal
    month_total: Decimal
    provider_breakdown: ProviderAmounts  # today's split: sums to today_total (the original plan's example)
    month_provider_breakdown: ProviderAmounts  # sums to month_total
    today_provider_breakdown: ProviderAmounts  # = provider_breakdown, for clients of the earlier shape
    requests: int  # billed calls, month to date
    today_requests: int
    workflows: int  # month to date
    average_cost_per_workflow: Decimal
    estimated_total: Decimal  # month to date, priced at a provider's rate (model without a price)
    day_start: datetime
    month_start: datetime
    currency: Literal["USD"] = "USD"


class BreakdownGroup(View):
    key: str
    cost: Decimal
    requests: int
    prompt_tokens: int
    completion_tokens: int
    workflows: int
    estimated_cost: Decimal
    share: Decimal  # percent of the total


class BreakdownView(View):
    user_id: str | None
    start: datetime
    end: datetime
    group_by: Literal["provider", "model", "day", "type"]
    total: Decimal
    requests: int
    prompt_tokens: int
    completion_tokens: int
    groups: list[BreakdownGroup]


class CallView(View):
    provider: Provider
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    tokens_estimated: bool
    price_estimated: bool
    price_entry: str
    occurred_at: datetime


class WorkflowCostView(View):
    workflow_id: uuid.UUID
    user_id: str
    workflow_type: IntentType | None  # None: the workflow ended before any call was billed
    status: Literal["running", "completed", "failed", "cancelled"]
    total_cost: Decimal
    requests: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost: Decimal
    first_at: datetime | None
    last_at: datetime | None
    # The workflow ended and (with ?workflowId=) the usage of its final generation is recorded: the total
    # will not change. In lists it says only that the workflow ended.
    settled: bool
    calls: list[CallView] | None = None  # with ?workflowId= only


class CampaignCostsView(View):
    user_id: str | None
    start: datetime
    end: datetime
    total: Decimal
    count: int
    workflows: list[WorkflowCostView]


class ThresholdView(View):
    id: uuid.UUID
    user_id: str | None  # None: global
    period: CostPeriod
    limit_usd: Decimal
    severity: Severity
    action: ThresholdAction
    notification_channels: list[str]
    enabled: bool
    name: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, t: Threshold) -> ThresholdView:
        return cls(
            id=t.id,
            user_id=t.scope_user_id,
            period=t.period,
            limit_usd=t.limit_usd,
            severity=t.severity,
            action=t.action,
            notification_channels=list(t.channels),
            enabled=t.enabled,
            name=t.name,
            created_by=t.created_by,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )


class ThresholdSummary(View):
    total: int
    enabled: int
    by_period: dict[CostPeriod, int]
    by_severity: dict[Severity, int]
    by_action: dict[ThresholdAction, int]


class ThresholdsView(View):
    thresholds: list[ThresholdView]
    summary: ThresholdSummary


class DeliveryView(View):
    channel: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    sent_at: datetime | None


class AlertView(View):
    id: uuid.UUID
    kind: Literal["threshold", "manual"]
    threshold_id: str
    user_id: str | None
    period: CostPeriod
    period_start: date
    spent_usd: Decimal
    limit_usd: Decimal
    severity: Severity
    message: str
    raised_at: datetime
    created_by: str | None
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    deliveries: list[DeliveryView]

    @classmethod
    def of(cls, a: Alert) -> AlertView:
        return cls(
            id=a.id,
            kind="manual" if a.kind == "manual" else "threshold",
            threshold_id=a.threshold_id,
            user_id=a.scope_user_id,
            period=a.period,
            period_start=a.period_start,
            spent_usd=a.spent_usd,
            limit_usd=a.limit_usd,
            severity=a.severity,
            message=a.message,
            raised_at=a.raised_at,
            created_by=a.created_by,
            acknowledged=a.acknowledged,
            acknowledged_by=a.acknowledged_by,
            acknowledged_at=a.acknowledged_at,
            deliveries=[
                DeliveryView(
                    channel=d.channel, status=d.status, attempts=d.attempts, last_error=d.last_error, sent_at=d.sent_at
                )
                for d in a.deliveries
            ],
        )


class AlertSummary(View):
    total: int
    unacknowledged: int
    by_severity: dict[Severity, int]


class AlertsView(View):
    alerts: list[AlertView]
    summary: AlertSummary


class DailyCost(View):
    date: date
    cost: Decimal


class ForecastWindow(View):
    days: int
    total: Decimal
    lower: Decimal
    upper: Decimal


class ForecastView(View):
    user_id: str | None
    method: Literal["linear_trend", "daily_mean", "no_history"]
    lookback_days: int
    history_days: int  # days the fit used (from the first day with costs in the lookback, to yesterday)
    history: list[DailyCost]
    daily_average: Decimal
    trend_per_day: Decimal  # change of the daily cost per day (0 for daily_mean)
    interval_level: Decimal
    next_7_days: ForecastWindow
    next_30_days: ForecastWindow
    generated_at: datetime


class Recommendation(View):
    kind: Literal["switch_provider", "price_missing"]
    workflow_type: IntentType | None = None
    from_provider: Provider | None = None
    to_provider: Provider | None = None
    model: str | None = None
    requests: int
    current_cost: Decimal
    projected_cost: Decimal
    estimated_saving: Decimal
    saving_percent: Decimal
    description: str


class OptimizationView(View):
    user_id: str | None
    lookback_days: int
    start: datetime
    end: datetime
    total_cost: Decimal
    potential_saving: Decimal
    recommendations: list[Recommendation]
