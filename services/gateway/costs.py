"""The cost endpoints: authenticate, validate, ask the cost-tracker (cost.query over the bus), answer.

A user's requests are about their own costs: `userId` naming someone else answers 403 (the cost-tracker
checks again). An admin's `userId` filters; without it an admin sees everyone's. Dates in `from`/`to` are
UTC days (`to` includes its day) or ISO 8601 times with an offset (`to` exclusive).

`with_recorded_cost` gives ?wait=true the cost-tracker's figure for a finished workflow (the router's view
carries none): the figure once the cost-tracker says the workflow is settled, or after COST_SETTLE_MAX_S
the figure recorded so far.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from contracts import Envelope
from contracts.enums import CostPeriod
from contracts.messages import CostQuery, CostReply, WorkflowView
from libs.bus import Bus, BusError
from libs.telemetry import get_logger
from services.gateway import constants as c
from services.gateway import cost_schemas as s
from services.gateway.api import read_json_object
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError, BadGateway, BadRequest, Forbidden, NotFound, Unavailable, json_response
from services.gateway.schemas import ApiModel, UserId

log = get_logger(__name__)

Kind = Literal["stats", "breakdown", "campaign", "thresholds", "alerts", "forecast", "optimization"]
Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

# The cost-tracker's refusal codes, as HTTP errors.
_REFUSALS: Mapping[str, type[ApiError]] = {
    "invalid_parameter": BadRequest,
    "forbidden": Forbidden,
    "not_found": NotFound,
}


def _instant(raw: object, *, end: bool) -> object:
    """ "2026-11-01" → that day's 00:00 UTC (as `to`: the next day's, so the day is included); an ISO time
    must carry its offset (a server-local guess would shift every figure)."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if len(text) == len("YYYY-MM-DD"):
        day = _sane_year(date.fromisoformat(text))
        return datetime(day.year, day.month, day.day, tzinfo=UTC) + (timedelta(days=1) if end else timedelta())
    moment = _sane_year(datetime.fromisoformat(text))
    if moment.tzinfo is None:
        raise ValueError("a time needs an offset, e.g. 2026-11-01T00:00:00Z")
    return moment


D = TypeVar("D", date, datetime)


def _sane_year(moment: D) -> D:
    """`moment` if its written year is COST_MIN_YEAR..COST_MAX_YEAR (near datetime's limits, the day after or
    the time in UTC overflowed)."""
    if not c.COST_MIN_YEAR <= moment.year <= c.COST_MAX_YEAR:
        raise ValueError(f"the year must be {c.COST_MIN_YEAR} to {c.COST_MAX_YEAR}")
    return moment


From = Annotated[datetime, BeforeValidator(lambda raw: _instant(raw, end=False))]
To = Annotated[datetime, BeforeValidator(lambda raw: _instant(raw, end=True))]
Limit = Annotated[int, Field(ge=1, le=c.COST_MAX_LIST_LIMIT)]
Lookback = Annotated[int, Field(ge=1, le=c.COST_MAX_LOOKBACK_DAYS)]


class CostQueryParams(BaseModel):
    """Query parameters: camelCase, unknown ones refused (a misspelt `groupby` must not be ignored)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=False, extra="forbid", frozen=True)
    user_id: UserId | None = None

    def to_params(self) -> dict[str, Any]:
        """What the cost-tracker is sent: snake_case, JSON-safe, without absent parameters."""
        return self.model_dump(mode="json", exclude_none=True)


class StatsQuery(CostQueryParams):
    pass


class RangeQuery(CostQueryParams):
    start: From | None = Field(default=None, alias="from")
    end: To | None = Field(default=None, alias="to")


class BreakdownQuery(RangeQuery):
    group_by: Literal["provider", "model", "day", "type"] = "provider"


class CampaignCostsQuery(RangeQuery):
    workflow_id: uuid.UUID | None = None
    limit: Limit | None = None


class ThresholdsQuery(CostQueryParams):
    period: CostPeriod | None = Field(default=None, alias="type")
    enabled: bool | None = None  # query strings: true/false, 1/0


class AlertsQuery(RangeQuery):
    severity: Literal["info", "warning", "critical"] | None = None
    acknowledged: bool | None = None
    limit: Limit | None = None


class LookbackQuery(CostQueryParams):
    lookback_days: Lookback | None = None


class CostEndpoints:
    """The cost handlers, bound to the bus and settings of one gateway."""

    def __init__(self, bus: Bus, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._bus = bus
        self._settings = settings
        self._verifier = verifier

    # --- reports -------------------------------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return await self._report(request, "stats", StatsQuery, s.CostStatsData, s.CostStatsResponse)

    async def get_breakdown(self, request: web.Request) -> web.Response:
        return await self._report(request, "breakdown", BreakdownQuery, s.CostBreakdownData, s.CostBreakdownResponse)

    async def get_forecast(self, request: web.Request) -> web.Response:
        return await self._report(request, "forecast", LookbackQuery, s.ForecastData, s.ForecastResponse)

    async def get_optimization(self, request: web.Request) -> web.Response:
        return await self._report(request, "optimization", LookbackQuery, s.OptimizationData, s.OptimizationResponse)

    async def get_campaign_costs(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        query = self._query(request, CampaignCostsQuery, principal)
        data = await self._ask("campaign", query.to_params(), principal)
        if query.workflow_id is not None:
            return _ok(s.CampaignCostsResponse(data=_expect(s.WorkflowCost, data)))
        return _ok(s.CampaignCostsResponse(data=_expect(s.CampaignCostsData, data)))

    # --- thresholds and alerts -----------------------------------------------------------------------------

    async def get_thresholds(self, request: web.Request) -> web.Response:
        return await self._report(request, "thresholds", ThresholdsQuery, s.ThresholdsData, s.ThresholdsResponse)

    async def create_threshold(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body = await self._body(request, s.ThresholdCreateRequest)
        if body.is_global and body.user_id is not None:
            raise BadRequest("invalid_parameter", "a global threshold has no userId")
        if not principal.is_admin and (body.is_global or body.user_id not in (None, principal.user_id)):
            raise Forbidden("forbidden", "only an admin may set global thresholds or thresholds for other users")
        data = await self._ask("thresholds", {"op": "create", **_body_params(body)}, principal)
        return _ok(s.ThresholdResponse(data=_expect(s.Threshold, data)), status=201)

    async def update_threshold(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body = await self._body(request, s.ThresholdUpdateRequest)
        data = await self._ask("thresholds", {"op": "update", **_body_params(body)}, principal)
        return _ok(s.ThresholdResponse(data=_expect(s.Threshold, data)))

    async def get_alerts(self, request: web.Request) -> web.Response:
        return await self._report(request, "alerts", AlertsQuery, s.AlertsData, s.AlertsResponse)

    async def create_alert(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        if not principal.is_admin:
            raise Forbidden("forbidden", "only an admin may raise alerts")
        body = await self._body(request, s.AlertCreateRequest)
        data = await self._ask("alerts", {"op": "create", **_body_params(body)}, principal)
        return _ok(s.AlertResponse(data=_expect(s.Alert, data)), status=201)

    async def update_alert(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body = await self._body(request, s.AlertUpdateRequest)
        data = await self._ask("alerts", {"op": "update", **_body_params(body)}, principal)
        return _ok(s.AlertResponse(data=_expect(s.Alert, data)))

    # --- ?wait=true ----------------------------------------------------------------------------------------

    async def with_recorded_cost(
        self, view: WorkflowView, principal: Principal, *, settle: bool = True
    ) -> WorkflowView:
        """`view` with `cost_usd` = the cost-tracker's figure for the workflow (unchanged when the cost-tracker
        has none or does not answer: the workflow's result matters more than its price). `settle`: ask again
        until the figure is settled, else answer the figure so far (?wait=true); not `settle`: ask once within
        COST_STATUS_TIMEOUT_S, and only a settled figure counts (GET status)."""
        deadline = time.monotonic() + (c.COST_SETTLE_MAX_S if settle else c.COST_STATUS_TIMEOUT_S)
        delay = c.POLL_INITIAL_S
        figure = None
        while True:
            remaining = deadline - time.monotonic()
            timeout = max(min(self._settings.gateway_request_timeout_s, remaining), c.POLL_INITIAL_S)
            try:
                data = await self._ask("campaign", {"workflow_id": str(view.workflow_id)}, principal, timeout=timeout)
                cost = s.WorkflowCost.model_validate(data)
            except NotFound:
                cost = None  # no usage recorded yet
            except (Unavailable, BadGateway, ValidationError) as exc:
                log.warning("gateway.cost.unavailable", reason=f"{type(exc).__name__}: {exc}")
                break
            if not settle:
                # GET status: a figure only once it is final (null until then: not known yet, not $0).
                figure = cost.total_cost if cost is not None and cost.settled else None
                break
            if cost is not None:
                figure = cost.total_cost
                if cost.settled:
                    break
            if time.monotonic() + delay >= deadline:
                log.info("gateway.cost.unsettled", recorded=str(figure) if figure is not None else None)
                break
            await asyncio.sleep(delay)
            delay = min(delay * c.POLL_FACTOR, c.POLL_MAX_S)
        return view if figure is None else view.model_copy(update={"cost_usd": figure})

    # --- plumbing ------------------------------------------------------------------------------------------

    async def _report(
        self,
        request: web.Request,
        kind: Kind,
        query_model: type[CostQueryParams],
        data: type[BaseModel],
        answer: type[ApiModel],
    ) -> web.Response:
        principal = self._principal(request)
        query = self._query(request, query_model, principal)
        reply = await self._ask(kind, query.to_params(), principal)
        return _ok(answer(data=_expect(data, reply)))

    def _principal(self, request: web.Request) -> Principal:
        return self._verifier.verify(request.headers.get("Authorization"))

    @staticmethod
    def _query(request: web.Request, model: type[Q], principal: Principal) -> Q:
        raw = dict(request.query)
        if len(raw) != len(request.query):
            raise BadRequest("invalid_parameter", "each query parameter may be given once")
        try:
            query = model.model_validate(raw)
        except ValidationError as exc:
            raise _invalid_query(exc) from exc
        user_id = getattr(query, "user_id", None)
        if user_id is not None and user_id != principal.user_id and not principal.is_admin:
            raise Forbidden("forbidden", "only an admin may see other users' costs (userId)")
        return query

    async def _body(self, request: web.Request, model: type[Q]) -> Q:
        body = await read_json_object(
            request, self._settings.gateway_max_body_bytes, self._settings.gateway_body_timeout_s
        )
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise BadRequest.from_validation(exc) from exc

    async def _ask(
        self, kind: Kind, params: dict[str, Any], principal: Principal, *, timeout: float | None = None
    ) -> Any:
        query = CostQuery(
            kind=kind,
            params=params,
            requester_user_id=principal.user_id,
            requester_is_admin=principal.is_admin,
        )
        try:
            reply = await self._bus.request(
                Envelope.new(query, user_id=principal.user_id),
                timeout=timeout or self._settings.gateway_request_timeout_s,
            )
        except BusError as exc:
            log.error("gateway.cost.bus_failed", kind=kind, reason=f"{type(exc).__name__}: {exc}")
            raise Unavailable(
                "unavailable", "the cost service is unavailable; try again", headers={"Retry-After": "1"}
            ) from exc
        answer = reply.payload
        if not isinstance(answer, CostReply):
            log.error("gateway.reply.unexpected", expected="CostReply", got=reply.type)
            raise BadGateway("bad_gateway", "the cost service answered something unexpected")
        if not answer.ok:
            refusal = _REFUSALS.get(answer.code or "")
            if refusal is None:
                log.error("gateway.cost.failed", kind=kind, code=answer.code, reason=answer.error)
                raise BadGateway("bad_gateway", "the cost service could not answer")
            raise refusal(answer.code or "", answer.error or "refused")
        return answer.data


def _expect(model: type[R], data: Any) -> R:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        log.error("gateway.cost.malformed_reply", model=model.__name__, errors=exc.error_count())
        raise BadGateway("bad_gateway", "the cost service answered something unexpected") from exc


def _body_params(body: BaseModel) -> dict[str, Any]:
    """A request body as the cost-tracker's parameters (snake_case field names; amounts as exact strings)."""
    params = body.model_dump(mode="json", by_alias=False, exclude_none=True)
    for name in ("limit_usd",):
        value = getattr(body, name, None)
        if value is not None:
            params[name] = str(value)
    return params


def _ok(body: ApiModel, *, status: int = 200) -> web.Response:
    return json_response(body.dump(), status=status)


def _invalid_query(exc: ValidationError) -> BadRequest:
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False)[:5]:
        name = ".".join(str(p) for p in error["loc"]) or "query"
        parts.append(f"{name}: {'unknown parameter' if error['type'] == 'extra_forbidden' else error['msg']}")
    return BadRequest("invalid_parameter", "; ".join(parts))
