"""The cost.query handler: validate the parameters of each kind, decide whose costs the requester may see,
run the report or the management operation, and answer CostReply.

    kind          params (snake_case; the gateway sends them)
    stats         user_id?
    breakdown     user_id?, start?, end?, group_by = provider | model | day | type
    campaign      user_id?, workflow_id? (one workflow with its calls) | start?, end?, limit? (a list)
    thresholds    op = list (user_id?, period?, enabled?) | create (…) | update (threshold_id, …)
    alerts        op = list (user_id?, severity?, acknowledged?, start?, end?, limit?) | create (…) | update
    forecast      user_id?, lookback_days?
    optimization  user_id?, lookback_days?

A user's queries are about their own costs: `user_id` naming someone else is refused (forbidden); an
admin's `user_id` filters, and without it they see everyone's. Refusals answer ok=false with a `code`
(invalid_parameter, forbidden, not_found) the gateway turns into the HTTP status.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from contracts import Envelope, Message
from contracts.enums import CostPeriod
from contracts.ids import USER_ID_MAX_LENGTH, USER_ID_PATTERN, is_user_id
from contracts.messages import CostQuery, CostReply
from libs.telemetry import get_logger
from services.cost_tracker import constants as c
from services.cost_tracker.errors import Forbidden, InvalidParameter, QueryRefused
from services.cost_tracker.limits import Clock, utcnow
from services.cost_tracker.manage import Management, ThresholdSpec
from services.cost_tracker.model import AlertFilter, Requester, Severity, ThresholdAction, midnight, period_start
from services.cost_tracker.reports import Reports
from services.cost_tracker.views import View

log = get_logger(__name__)

# Never the global scope "*" (contracts.ids): a user's scope must not be everyone's.
UserId = Annotated[
    str, StringConstraints(max_length=USER_ID_MAX_LENGTH, strip_whitespace=True, pattern=USER_ID_PATTERN)
]
Channel = Literal["slack", "sns", "email"]
Limit = Annotated[int, Field(ge=1, le=c.MAX_LIST_LIMIT)]
Money = Annotated[Decimal, Field(gt=0, allow_inf_nan=False, max_digits=20, decimal_places=10)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
P = TypeVar("P", bound="Params")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    user_id: UserId | None = None


class Range(Params):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None

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
        if not c.QUERY_MIN_TIME <= value <= c.QUERY_MAX_TIME:
            raise ValueError(f"must be between {c.QUERY_MIN_TIME.date()} and {c.QUERY_MAX_TIME.date()}")
        return value


class BreakdownParams(Range):
    group_by: Literal["provider", "model", "day", "type"] = "provider"


class CampaignParams(Range):
    workflow_id: uuid.UUID | None = None
    limit: Limit = c.DEFAULT_LIST_LIMIT


class ThresholdList(Params):
    op: Literal["list"] = "list"
    period: CostPeriod | None = None
    enabled: bool | None = None


class ThresholdCreate(Params):
    op: Literal["create"]
    is_global: bool = False
    period: CostPeriod
    limit_usd: Money
    severity: Severity = Severity.WARNING
    action: ThresholdAction = ThresholdAction.NONE
    notification_channels: list[Channel] | None = None
    enabled: bool = True
    name: Name | None = None


class ThresholdUpdate(Params):
    op: Literal["update"]
    threshold_id: uuid.UUID
    period: CostPeriod | None = None
    limit_usd: Money | None = None
    severity: Severity | None = None
    action: ThresholdAction | None = None
    notification_channels: list[Channel] | None = None
    enabled: bool | None = None
    name: Name | None = None


class AlertList(Range):
    op: Literal["list"] = "list"
    severity: Severity | None = None
    acknowledged: bool | None = None
    limit: Limit = c.DEFAULT_LIST_LIMIT


class AlertCreate(Params):
    op: Literal["create"]
    period: CostPeriod = CostPeriod.DAILY
    limit_usd: Money
    severity: Severity = Severity.WARNING
    message: Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]
    notification_channels: list[Channel] | None = None


class AlertUpdate(Params):
    op: Literal["update"]
    alert_id: uuid.UUID
    acknowledged: bool


class Lookback(Params):
    lookback_days: Annotated[int, Field(ge=1, le=c.MAX_RANGE_DAYS)] | None = None


_THRESHOLD_OPS: TypeAdapter[ThresholdList | ThresholdCreate | ThresholdUpdate] = TypeAdapter(
    Annotated[ThresholdList | ThresholdCreate | ThresholdUpdate, Field(discriminator="op")]
)
_ALERT_OPS: TypeAdapter[AlertList | AlertCreate | AlertUpdate] = TypeAdapter(
    Annotated[AlertList | AlertCreate | AlertUpdate, Field(discriminator="op")]
)


class Queries:
    def __init__(self, reports: Reports, management: Management, *, clock: Clock = utcnow) -> None:
        self._reports = reports
        self._manage = management
        self._clock = clock
        self._kinds: dict[str, Callable[[Requester, dict[str, Any], Envelope], Awaitable[View]]] = {
            "stats": self._stats,
            "breakdown": self._breakdown,
            "campaign": self._campaign,
            "thresholds": self._thresholds,
            "alerts": self._alerts,
            "forecast": self._forecast,
            "optimization": self._optimization,
        }

    async def on_query(self, envelope: Envelope) -> Message | None:
        query = envelope.payload
        assert isinstance(query, CostQuery)
        who = Requester(query.requester_user_id, query.requester_is_admin)
        if not is_user_id(who.user_id):
            return CostReply(ok=False, error="the requester is not a valid user id", code=InvalidParameter.code)
        try:
            data = await self._kinds[query.kind](who, dict(query.params), envelope)
        except QueryRefused as exc:
            log.info("cost.query.refused", kind=query.kind, code=exc.code, reason=str(exc))
            return CostReply(ok=False, error=str(exc), code=exc.code)
        return CostReply(ok=True, data=data.model_dump(mode="json"))

    # --- reports -------------------------------------------------------------------------------------------

    async def _stats(self, who: Requester, params: dict[str, Any], _: Envelope) -> View:
        parsed = _parse(Params, params)
        return await self._reports.stats(_whose(who, parsed.user_id), self._clock())

    async def _breakdown(self, who: Requester, params: dict[str, Any], _: Envelope) -> View:
        parsed = _parse(BreakdownParams, params)
        start, end = self._range(parsed)
        return await self._reports.breakdown(_whose(who, parsed.user_id), start, end, parsed.group_by)

    async def _campaign(self, who: Requester, params: dict[str, Any], _: Envelope) -> View:
        parsed = _parse(CampaignParams, params)
        user_id = _whose(who, parsed.user_id)
        if parsed.workflow_id is not None:
            return await self._reports.campaign(user_id, parsed.workflow_id)
        start, end = self._range(parsed)
        return await self._reports.campaigns(user_id, start, end, parsed.limit)

    async def _forecast(self, who: Requester, params: dict[str, Any], _: Envelope) -> View:
        parsed = _parse(Lookback, params)
        days = parsed.lookback_days or c.FORECAST_LOOKBACK_DAYS
        return await self._reports.forecast(_whose(who, parsed.user_id), days, self._clock())

    async def _optimization(self, who: Requester, params: dict[str, Any], _: Envelope) -> View:
        parsed = _parse(Lookback, params)
        days = parsed.lookback_days or c.OPTIMIZATION_LOOKBACK_DAYS
        return await self._reports.optimization(_whose(who, parsed.user_id), days, self._clock())

    # --- management ----------------------------------------------------------------------------------------

    async def _thresholds(self, who: Requester, params: dict[str, Any], envelope: Envelope) -> View:
        op = _parse_union(_THRESHOLD_OPS, params)
        now = self._clock()
        if isinstance(op, ThresholdList):
            return await self._manage.thresholds(who, _whose(who, op.user_id), op.period, op.enabled)
        spec = ThresholdSpec(
            period=op.period,
            limit_usd=op.limit_usd,
            severity=op.severity,
            action=op.action,
            channels=op.notification_channels,
            enabled=op.enabled,
            name=op.name,
        )
        if isinstance(op, ThresholdCreate):
            if op.is_global and op.user_id is not None:
                raise InvalidParameter("a global threshold has no user_id")
            threshold_id = uuid.uuid5(c.ALERT_NAMESPACE, f"threshold|{envelope.id}")  # a redelivery: the same one
            return await self._manage.create_threshold(who, threshold_id, op.user_id, op.is_global, spec, now)
        if op.user_id is not None:
            raise InvalidParameter("a threshold's user cannot be changed; create another one")
        return await self._manage.update_threshold(who, op.threshold_id, spec, now)

    async def _alerts(self, who: Requester, params: dict[str, Any], envelope: Envelope) -> View:
        op = _parse_union(_ALERT_OPS, params)
        now = self._clock()
        if isinstance(op, AlertList):
            user_id = _whose(who, op.user_id)
            where = AlertFilter(
                scope_user_id=user_id,
                only_scope=user_id is not None,
                severity=op.severity,
                acknowledged=op.acknowledged,
                start=op.start,
                end=op.end,
                limit=op.limit,
            )
            return await self._manage.alerts(who, where)
        if isinstance(op, AlertCreate):
            return await self._manage.raise_manual(
                who, envelope.id, op.user_id, op.period, op.limit_usd, op.severity, op.message,
                op.notification_channels, now,
            )  # fmt: skip
        if op.user_id is not None:
            raise InvalidParameter("an alert's user cannot be changed")
        return await self._manage.acknowledge(who, op.alert_id, op.acknowledged, now)

    def _range(self, parsed: Range) -> tuple[datetime, datetime]:
        """[start, end): by default from the start of this month to now; at most MAX_RANGE_DAYS long."""
        now = self._clock()
        end = parsed.end or now
        start = parsed.start or midnight(period_start(CostPeriod.MONTHLY, min(end, now)))
        if start >= end:
            raise InvalidParameter("start must be before end")
        if end - start > timedelta(days=c.MAX_RANGE_DAYS):
            raise InvalidParameter(f"the range may span at most {c.MAX_RANGE_DAYS} days")
        return start, end


def _whose(who: Requester, user_id: str | None) -> str | None:
    """Whose costs the query is about: the requester's own, or (an admin) the named user's or everyone's."""
    if who.is_admin:
        return user_id
    if user_id is not None and user_id != who.user_id:
        raise Forbidden("only an admin may see other users' costs")
    return who.user_id


def _parse(model: type[P], params: dict[str, Any]) -> P:
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise InvalidParameter(_summary(exc)) from exc


def _parse_union(adapter: TypeAdapter[Any], params: dict[str, Any]) -> Any:
    try:
        return adapter.validate_python({"op": "list", **params})
    except ValidationError as exc:
        raise InvalidParameter(_summary(exc)) from exc


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for error in errors[:5]:
        # The discriminated union puts the op's name first in the location; the field is what matters.
        loc = [str(p) for p in error["loc"] if p not in ("list", "create", "update")]
        message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{'.'.join(loc) or 'params'}: {message}")
    return "; ".join(parts)
