"""The cost endpoints: authenticate, validate into the contract's request (contracts.costs), ask the
cost-tracker over the bus, answer its typed reply's data as the derived camelCase model (cost_schemas.py).

Who may see and change what is the cost-tracker's decision, answered as 403 or 404: a user's requests are
about their own costs (`userId` naming someone else is refused); an admin's `userId` filters, and without
it an admin sees everyone's. Dates in `from`/`to` are
UTC days (`to` includes its day) or ISO 8601 times with an offset (`to` exclusive).

`with_recorded_cost` gives ?wait=true the cost-tracker's figure for a finished workflow (the router's view
carries none): the figure once the cost-tracker says the workflow is settled, or after COST_SETTLE_MAX_S
the figure recorded so far.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from contracts import costs as cc
from contracts.messages import Requester, WorkflowView
from libs.bus import Bus
from libs.callbacks import callback_url_problem
from libs.telemetry import get_logger
from services.gateway import constants as c
from services.gateway import cost_schemas as s
from services.gateway.api import read_json_object
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.bus_requests import ask
from services.gateway.config import GatewaySettings
from services.gateway.derive import as_api, derived
from services.gateway.errors import (
    ApiError,
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    json_response,
)
from services.gateway.schemas import FieldError

log = get_logger(__name__)

COSTS = "the cost service"  # who answers the cost API's requests: the cost-tracker

# The cost-tracker's refusal codes, as HTTP errors.
_REFUSALS: Mapping[str, type[ApiError]] = {
    "invalid_parameter": BadRequest,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
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


class QueryParams(BaseModel):
    """Query parameters: camelCase, unknown ones refused (a misspelt `groupby` must not be ignored)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=False, extra="forbid", frozen=True)


def _params(request: type[cc.CostRequest], **names: str) -> type[BaseModel]:
    """The query parameters of `request`: its fields, `from`/`to` as UTC days or times with an offset."""
    ranged = issubclass(request, cc.RangeRequest)
    return derived(
        request, f"{request.__name__}Params", base=QueryParams,
        aliases={"start": "from", "end": "to", **names} if ranged else names,
        types={"start": From | None, "end": To | None} if ranged else None,
    )  # fmt: skip


# Each GET's contract request → its query parameters.
PARAMS: Mapping[type[cc.CostRequest], type[BaseModel]] = {
    cc.CostStatsQuery: _params(cc.CostStatsQuery),
    cc.CostBreakdownQuery: _params(cc.CostBreakdownQuery),
    cc.CampaignCostsQuery: _params(cc.CampaignCostsQuery),
    cc.WorkflowCostQuery: _params(cc.WorkflowCostQuery),
    cc.ThresholdsQuery: _params(cc.ThresholdsQuery, period="type"),
    cc.AlertsQuery: _params(cc.AlertsQuery),
    cc.CostForecastQuery: _params(cc.CostForecastQuery),
    cc.CostOptimizationQuery: _params(cc.CostOptimizationQuery),
    cc.AlertDestinationQuery: _params(cc.AlertDestinationQuery),
    cc.PoliciesQuery: _params(cc.PoliciesQuery),
    cc.ExperimentsQuery: _params(cc.ExperimentsQuery),
    cc.AutoOptimizeQuery: _params(cc.AutoOptimizeQuery),
}


class CostEndpoints:
    """The cost handlers, bound to the bus and settings of one gateway."""

    def __init__(self, bus: Bus, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._bus = bus
        self._settings = settings
        self._verifier = verifier

    async def get_stats(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.CostStatsQuery)

    async def get_breakdown(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.CostBreakdownQuery)

    async def get_campaign_costs(self, request: web.Request) -> web.Response:
        if "workflowId" in request.query:  # one workflow with its calls: a range and a limit do not apply
            return await self._read(request, cc.WorkflowCostQuery, ignored=("from", "to", "limit"))
        return await self._read(request, cc.CampaignCostsQuery)

    async def get_thresholds(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.ThresholdsQuery)

    async def create_threshold(self, request: web.Request) -> web.Response:
        return await self._write(request, s.ThresholdCreateRequest, cc.ThresholdCreate, status=201)

    async def update_threshold(self, request: web.Request) -> web.Response:
        return await self._write(request, s.ThresholdUpdateRequest, cc.ThresholdUpdate)

    async def get_alerts(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.AlertsQuery)

    async def create_alert(self, request: web.Request) -> web.Response:
        return await self._write(request, s.AlertCreateRequest, cc.AlertCreate, status=201)

    async def update_alert(self, request: web.Request) -> web.Response:
        return await self._write(request, s.AlertUpdateRequest, cc.AlertUpdate)

    async def get_forecast(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.CostForecastQuery)

    async def get_optimization(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.CostOptimizationQuery)

    async def get_alert_destination(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.AlertDestinationQuery)

    async def put_alert_destination(self, request: web.Request) -> web.Response:
        return await self._write(
            request, s.AlertDestinationRequest, cc.AlertDestinationUpdate, check=self._webhook_url_checked
        )

    def _webhook_url_checked(self, fields: dict[str, Any]) -> None:
        """A user's webhook URL is held to a workflow's callbackUrl rules (the document's pattern too)."""
        url = fields.get("webhook_url")
        if url is None:
            return
        local_http = self._settings.webhook_allow_local_http
        problem = callback_url_problem(url, allow_local_http=local_http)
        if problem is None and not local_http and not re.fullmatch(c.CALLBACK_URL_PATTERN, url):
            problem = "the URL must be https://host[:port][/path] in printable ASCII"
        if problem is not None:
            message = problem.replace("callback URL", "webhook URL")
            raise BadRequest(
                "validation_error",
                f"invalid request body: webhookUrl: {message}",
                details=[FieldError(field="webhookUrl", message=message)],
            )

    async def apply_policy(self, request: web.Request) -> web.Response:
        return await self._write(request, s.PolicyApplyRequest, cc.PolicyApply, status=201)

    async def revert_policy(self, request: web.Request) -> web.Response:
        return await self._write(request, s.PolicyRevertRequest, cc.PolicyRevert)

    async def get_policies(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.PoliciesQuery)

    async def get_auto_optimize(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.AutoOptimizeQuery)

    async def set_auto_optimize(self, request: web.Request) -> web.Response:
        return await self._write(request, s.AutoOptimizeRequest, cc.AutoOptimizeUpdate)

    async def create_experiment(self, request: web.Request) -> web.Response:
        return await self._write(request, s.ExperimentCreateRequest, cc.ExperimentCreate, status=201)

    async def get_experiments(self, request: web.Request) -> web.Response:
        return await self._read(request, cc.ExperimentsQuery)

    async def get_experiment_results(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        fields = {"experiment_id": _experiment_id(request)}
        return await self._answer(_message(cc.ExperimentResultsQuery, fields, principal), principal)

    async def stop_experiment(self, request: web.Request) -> web.Response:
        experiment_id = _experiment_id(request)
        return await self._write(
            request, s.ExperimentStopRequest, cc.ExperimentStop, path={"experiment_id": experiment_id}
        )

    # --- ?wait=true and GET status -------------------------------------------------------------------------

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
        query = cc.WorkflowCostQuery(requester=_requester(principal), workflow_id=view.workflow_id)
        while True:
            remaining = deadline - time.monotonic()
            timeout = max(min(self._settings.gateway_request_timeout_s, remaining), c.POLL_INITIAL_S)
            try:
                cost = await self._ask(query, principal, timeout=timeout)
            except NotFound:
                cost = None  # no usage recorded yet
            except (Unavailable, BadGateway) as exc:
                log.warning("gateway.cost.unavailable", reason=f"{type(exc).__name__}: {exc}")
                break
            assert cost is None or isinstance(cost, cc.WorkflowCost)
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

    async def _read(
        self, request: web.Request, query: type[cc.CostRequest], *, ignored: tuple[str, ...] = ()
    ) -> web.Response:
        """A GET: its query parameters → the contract's request → the cost-tracker's data → `{success, data}`."""
        principal = self._principal(request)
        raw = {name: value for name, value in request.query.items() if name not in ignored}
        if len(raw) != len([name for name in request.query if name not in ignored]):
            raise BadRequest("invalid_parameter", "each query parameter may be given once")
        try:
            params = PARAMS[query].model_validate(raw).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise _invalid_query(exc) from exc
        return await self._answer(_message(query, params, principal), principal)

    async def _write(
        self,
        request: web.Request,
        body: type[BaseModel],
        change: type[cc.CostRequest],
        *,
        status: int = 200,
        path: dict[str, Any] | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> web.Response:
        """A POST or PUT: its body (and `path`: the path's parameters) → the contract's request → the
        cost-tracker's data → `{success, data}`."""
        principal = self._principal(request)
        raw = await read_json_object(
            request, self._settings.gateway_max_body_bytes, self._settings.gateway_body_timeout_s
        )
        try:
            fields = body.model_validate(raw).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise BadRequest.from_validation(exc) from exc
        if check is not None:
            check(fields)
        return await self._answer(_message(change, {**fields, **(path or {})}, principal), principal, status=status)

    async def _answer(self, message: cc.CostRequest, principal: Principal, *, status: int = 200) -> web.Response:
        data = as_api(await self._ask(message, principal))
        return json_response({"success": True, "data": data.model_dump(mode="json", by_alias=True)}, status=status)

    def _principal(self, request: web.Request) -> Principal:
        return self._verifier.verify(request.headers.get("Authorization"))

    async def _ask(self, query: cc.CostRequest, principal: Principal, *, timeout: float | None = None) -> BaseModel:
        """The cost-tracker's data for `query` (who may see or change what is its decision: a refusal is the
        HTTP error of its code); no answer: 503."""
        answer = await ask(
            self._bus,
            query,
            query.REPLY,
            user_id=principal.user_id,
            timeout=timeout or self._settings.gateway_request_timeout_s,
            service=COSTS,
        )
        if answer.code is not None:
            raise _REFUSALS[answer.code](answer.code, answer.error or "refused")
        data = getattr(answer, "data", None)
        if not isinstance(data, BaseModel):
            log.error("gateway.cost.failed", type=query.TYPE, reason=answer.error)
            raise BadGateway("bad_gateway", f"{COSTS} could not answer")
        return data


def _requester(principal: Principal) -> Requester:
    return Requester(user_id=principal.user_id, is_admin=principal.is_admin)


def _message(request: type[cc.CostRequest], fields: dict[str, Any], principal: Principal) -> cc.CostRequest:
    """The contract's request from validated fields; the contract's own rules (a global threshold has no
    user) answer 400 like the HTTP model's."""
    try:
        return request.model_validate({**fields, "requester": _requester(principal)})
    except ValidationError as exc:
        raise BadRequest.from_validation(exc) from exc


def _experiment_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["experimentId"])
    except ValueError as exc:
        raise BadRequest("invalid_parameter", "experimentId: not a UUID") from exc


def _invalid_query(exc: ValidationError) -> BadRequest:
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False)[:5]:
        name = ".".join(str(p) for p in error["loc"]) or "query"
        parts.append(f"{name}: {'unknown parameter' if error['type'] == 'extra_forbidden' else error['msg']}")
    return BadRequest("invalid_parameter", "; ".join(parts))
