"""The HTTP handlers: authenticate, validate, ask the owning service over the bus, answer in camelCase.

Nothing is published before the request is fully validated (auth, feature flags, query, headers, body), so a
bad request never creates half a workflow. The gateway keeps no state: a workflow's id comes from the
Idempotency-Key (or is random), and everything it answers about a workflow comes from the router's reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
import uuid
from collections.abc import Awaitable, Mapping
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import orjson
import structlog
from aiohttp import web
from pydantic import ValidationError

from contracts import ContractError, Envelope, Message
from contracts.costs import WorkflowCostReply, final_usage_recorded
from contracts.enums import TERMINAL_STATUSES, DeliveryState, ErrorType, WorkflowStatus
from contracts.messages import (
    DeliveryListQuery,
    DeliveryListReply,
    ErrorInfo,
    Notify,
    WorkflowAccepted,
    WorkflowRequested,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowView,
)
from libs.bus import Bus, BusError, RequestTimeout
from libs.callbacks import callback_url_problem
from libs.flags import FlagClient, Flags
from libs.telemetry import current_trace_id, get_logger
from services.gateway import constants as c
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.bus_requests import ask, expect, unavailable
from services.gateway.config import GatewaySettings
from services.gateway.errors import (
    BadGateway,
    BadRequest,
    BodyTimeout,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
    WorkflowError,
    json_response,
)
from services.gateway.health import HealthAggregator, public
from services.gateway.schemas import (
    AcceptedData,
    AcceptedResponse,
    CampaignRequest,
    CompletedResponse,
    DeliveriesPage,
    DeliveriesResponse,
    DeliveryBody,
    FieldError,
    StatusResponse,
    WorkflowStatusData,
)
from services.gateway.storable import refuse_unstorable

log = get_logger(__name__)


class RecordedCost(Protocol):
    """A finished workflow's view with the cost-tracker's figure as its cost (CostEndpoints.with_recorded_cost);
    `settle`: wait until the cost-tracker has the workflow's last usage (?wait=true), else ask once (status)."""

    def __call__(self, view: WorkflowView, principal: Principal, *, settle: bool = True) -> Awaitable[WorkflowView]: ...


_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})
_JSON_TYPES = frozenset({"application/json"})
M = TypeVar("M", bound=Message)


class Api:
    """The handlers, bound to the bus and settings of one gateway."""

    def __init__(
        self,
        bus: Bus,
        settings: GatewaySettings,
        verifier: TokenVerifier,
        health: HealthAggregator,
        *,
        flags: FlagClient,
        recorded_cost: RecordedCost | None = None,
    ) -> None:
        self._bus = bus
        self._flags = flags
        self._settings = settings
        self._verifier = verifier
        self._health = health
        self._recorded_cost = recorded_cost
        self._openapi: bytes = b"{}"

    def set_openapi(self, document: Mapping[str, Any]) -> None:
        self._openapi = orjson.dumps(document)

    # --- handlers ----------------------------------------------------------------------------------------

    async def create_campaign(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        principal = self._principal(request)
        if not self._flags.admits(principal.user_id):
            raise Unavailable("disabled", disabled_message(self._flags.flags))
        wait_s = self._wait_seconds(request.query)
        key = idempotency_key(request.headers)
        body = await read_json_object(
            request, self._settings.gateway_campaign_max_body_bytes, self._settings.gateway_body_timeout_s
        )
        campaign = parse_campaign(body, self._settings, principal)

        workflow_id = idempotent_workflow_id(principal.user_id, key) if key else uuid.uuid4()
        trace_id = current_trace_id()
        payload = WorkflowRequested(
            intent=campaign.to_intent(),
            trace_id=trace_id,
            idempotency_key=key,
            recipients=campaign.to_recipients(),
            callback_url=campaign.callback_url,
            account_id=campaign.account_id,
        )
        with structlog.contextvars.bound_contextvars(workflow_id=str(workflow_id)):
            if wait_s is None:
                answer = await self._submit(Envelope.new(payload, workflow_id=workflow_id, user_id=principal.user_id))
                view = answer.workflow if answer is not None else None
                # A replayed Idempotency-Key answers the workflow's own trace, not this retry's.
                trace_id = view.trace_id if view is not None and view.trace_id else trace_id
                return accepted(workflow_id, WorkflowStatus.ACCEPTED, trace_id)
            view = await self._run(payload, workflow_id, principal, deadline=started + wait_s)
            trace_id = view.trace_id if view is not None and view.trace_id else trace_id
        if view is None or view.status not in TERMINAL_STATUSES:
            return accepted(workflow_id, view.status if view else WorkflowStatus.ACCEPTED, trace_id)
        if view.status is WorkflowStatus.COMPLETED:
            return json_response(CompletedResponse.of(view).dump())
        if view.status is WorkflowStatus.CANCELLED:
            raise Conflict("cancelled", "the workflow was cancelled")
        error = view.error or ErrorInfo(
            type=ErrorType.PROVIDER_UNAVAILABLE, message="the workflow failed", retryable=False
        )
        raise WorkflowError(error, view)

    async def get_status(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        workflow_id = parse_workflow_id(request.query)
        try:
            view = await self._query(workflow_id, principal, timeout=self._settings.gateway_request_timeout_s)
        except BusError as exc:
            raise unavailable(exc) from exc
        if view is None:
            raise NotFound("not_found", f"no workflow {workflow_id}")
        if view.status in TERMINAL_STATUSES and self._recorded_cost is not None:
            # The router's view has no cost; a finished workflow's is the cost-tracker's (one query, bounded).
            view = await self._recorded_cost(view, principal, settle=False)
        return json_response(StatusResponse(data=WorkflowStatusData.of(view)).dump())

    async def get_deliveries(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        query = parse_deliveries_query(request.query, principal)
        answer = await ask(
            self._bus,
            query,
            DeliveryListReply,
            user_id=principal.user_id,
            timeout=self._settings.gateway_request_timeout_s,
            workflow_id=query.workflow_id,
        )
        if not answer.found:
            raise NotFound("not_found", f"no workflow {query.workflow_id}")
        page = DeliveriesPage(
            workflow_id=query.workflow_id,
            deliveries=[DeliveryBody.model_validate(d.model_dump()) for d in answer.deliveries],
            next_cursor=answer.next_cursor,
        )
        return json_response(DeliveriesResponse(data=page).dump())

    async def health(self, request: web.Request) -> web.Response:
        status, body = await self._health.report()
        if not await self._is_admin(request):
            body = public(body)  # error strings and remote details only for an admin's token
        return json_response(body.dump(), status=status)

    async def openapi(self, _: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    # --- the bus -----------------------------------------------------------------------------------------

    async def _submit(self, envelope: Envelope) -> WorkflowAccepted | None:
        """Ask the router to start the workflow: its answer once persisted, None if it did not answer in time."""
        timeout = self._settings.gateway_request_timeout_s
        try:
            reply = await self._bus.request(envelope, timeout=timeout)
        except RequestTimeout:
            # The request is durably queued and the router will take it (the workflow id makes a retry of
            # the same Idempotency-Key harmless), so this is still an accepted workflow — just unconfirmed.
            log.warning("gateway.workflow.unconfirmed", timeout_s=timeout)
            return None
        except BusError as exc:
            raise unavailable(exc) from exc
        answer = expect(reply, WorkflowAccepted)
        if not answer.accepted:
            error = answer.error or ErrorInfo(
                type=ErrorType.INVALID_REQUEST, message="the workflow was refused", retryable=False
            )
            log.info("gateway.workflow.refused", error_type=error.type.value)
            raise WorkflowError(error)
        if answer.workflow is not None and answer.workflow.user_id != envelope.user_id:
            # Never answer (or, with wait=true, return the result of) somebody else's workflow.
            log.error("gateway.reply.foreign_workflow")
            raise BadGateway("bad_gateway", "the workflow service answered another workflow")
        log.info("gateway.workflow.accepted", user_id=envelope.user_id)
        return answer

    async def _run(
        self, payload: WorkflowRequested, workflow_id: uuid.UUID, principal: Principal, *, deadline: float
    ) -> WorkflowView | None:
        """?wait=true: submit the workflow asking to be told its end and cost (Notify), and answer its view once
        terminal with the cost-tracker's figure as `cost_usd` (or as it is at `deadline`). What it is not told
        in time (TOLD_END_WAIT_S, TOLD_COST_WAIT_S) it asks: the held status query, the cost query."""
        end_id, cost_id = str(uuid.uuid4()), str(uuid.uuid4())
        async with contextlib.AsyncExitStack() as stack:
            try:
                reply_to, (end, cost) = await stack.enter_async_context(self._bus.expecting(end_id, cost_id))
            except BusError as exc:
                raise unavailable(exc) from exc
            notify = Notify(reply_to=reply_to, end_correlation_id=end_id, cost_correlation_id=cost_id)
            notified = payload.model_copy(update={"notify": notify})
            answer = await self._submit(Envelope.new(notified, workflow_id=workflow_id, user_id=principal.user_id))
            view = answer.workflow if answer is not None else None
            told: WorkflowView | None = None
            if answer is not None and answer.notifies and (view is None or view.status not in TERMINAL_STATUSES):
                told = await _told_end(end, min(c.TOLD_END_WAIT_S, deadline - time.monotonic()))
                if told is not None and (told.workflow_id != workflow_id or told.user_id != principal.user_id):
                    log.error("gateway.told.foreign_workflow")  # never answer somebody else's workflow
                    told = None
            if told is None:  # not told: a router that does not tell, a replayed request, or a lost message
                view = await self._wait(workflow_id, principal, view, deadline=deadline)
            else:
                view = told
            if view is None or view.status not in TERMINAL_STATUSES or self._recorded_cost is None:
                return view
            if told is not None:  # the cost-tracker tells us: at the text's usage, or when it hears of the end
                recorded = await _told_cost(cost, c.TOLD_COST_WAIT_S, view)
                if recorded is not None:
                    return view.model_copy(update={"cost_usd": recorded})
            return await self._recorded_cost(view, principal)  # metrics.cost: what the cost-tracker recorded

    async def _query(
        self, workflow_id: uuid.UUID, principal: Principal, *, timeout: float, wait_s: float | None = None
    ) -> WorkflowView | None:
        """The workflow's view if it exists and `principal` may see it (raises BusError subclasses). With
        `wait_s`, the router answers when the workflow is terminal or after that long."""
        query = WorkflowStatusQuery(
            workflow_id=workflow_id,
            requester_user_id=principal.user_id,
            requester_is_admin=principal.is_admin,
            wait_s=wait_s,
        )
        reply = await self._bus.request(
            Envelope.new(query, workflow_id=workflow_id, user_id=principal.user_id), timeout=timeout + (wait_s or 0)
        )
        answer = expect(reply, WorkflowStatusReply)
        view = answer.workflow if answer.found else None
        # The router filters by requester too; checking here as well keeps one bug from leaking workflows.
        if view is None or not principal.may_see(view.user_id):
            return None
        return view

    async def _wait(
        self, workflow_id: uuid.UUID, principal: Principal, view: WorkflowView | None, *, deadline: float
    ) -> WorkflowView | None:
        """Ask the router to answer when the workflow is terminal (in holds of at most WAIT_HOLD_S) until it is
        or `deadline` passes. An early answer that is not terminal (not found yet, after an unconfirmed accept;
        a router that does not hold; one shutting down) is followed by a pause: POLL_INITIAL_S, times
        POLL_FACTOR, up to POLL_MAX_S."""
        pause = c.POLL_INITIAL_S
        while view is None or view.status not in TERMINAL_STATUSES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            hold = min(remaining, c.WAIT_HOLD_S)
            asked = time.monotonic()
            try:
                view = (
                    await self._query(
                        workflow_id, principal, timeout=self._settings.gateway_request_timeout_s, wait_s=hold
                    )
                    or view
                )
            except RequestTimeout:
                continue
            except BusError as exc:
                raise unavailable(exc) from exc
            if (view is None or view.status not in TERMINAL_STATUSES) and time.monotonic() - asked < hold / 2:
                await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * c.POLL_FACTOR, c.POLL_MAX_S)
        return view

    # --- request parsing ---------------------------------------------------------------------------------

    def _principal(self, request: web.Request) -> Principal:
        return self._verifier.verify(request.headers.get("Authorization"))

    async def _is_admin(self, request: web.Request) -> bool:
        """Whether an unauthenticated route's caller sent an admin's valid token (no token: not an error)."""
        header = request.headers.get("Authorization")
        if header is None:
            return False
        try:
            return (await self._verifier.authenticate(header)).is_admin
        except Unauthorized:
            return False

    def _wait_seconds(self, query: Mapping[str, str]) -> float | None:
        """None without ?wait=true; else how long to wait (&timeout= seconds, capped by the setting)."""
        cap = self._settings.gateway_wait_timeout_s
        wait = query.get("wait", "false").strip().lower()
        if wait not in _TRUE | _FALSE:
            raise BadRequest("invalid_parameter", "wait must be true or false")
        raw_timeout = query.get("timeout")
        timeout = cap
        if raw_timeout is not None:
            try:
                timeout = float(raw_timeout)
            except ValueError:
                timeout = math.nan
            if not math.isfinite(timeout) or timeout <= 0:
                raise BadRequest("invalid_parameter", "timeout must be a positive number of seconds")
        return min(timeout, cap) if wait in _TRUE else None


async def _told(future: asyncio.Future[Envelope], timeout: float) -> Message | None:
    """The payload of the reply `future` gets within `timeout` (None: none, or one that does not decode)."""
    try:
        return (await asyncio.wait_for(future, max(0.0, timeout))).payload
    except (TimeoutError, ContractError):
        return None


async def _told_end(future: asyncio.Future[Envelope], timeout: float) -> WorkflowView | None:
    """The terminal view the router tells within `timeout` (None: not told)."""
    reply = await _told(future, timeout)
    if isinstance(reply, WorkflowStatusReply) and reply.workflow is not None:
        return reply.workflow if reply.workflow.status in TERMINAL_STATUSES else None
    return None


async def _told_cost(future: asyncio.Future[Envelope], timeout: float, view: WorkflowView) -> Decimal | None:
    """The cost of the ended workflow `view` the cost-tracker tells within `timeout`: settled (told at the
    end), or including the usage `view` ended with (told when that usage was recorded). None: not told, or
    its final usage was not recorded yet."""
    reply = await _told(future, timeout)
    if not isinstance(reply, WorkflowCostReply) or (cost := reply.data) is None or cost.workflow_id != view.workflow_id:
        return None
    usage = view.usage
    if cost.settled or (
        usage is not None
        and final_usage_recorded(cost.calls or (), view.current_provider, usage.prompt_tokens, usage.completion_tokens)
    ):
        return cost.total_cost
    return None


def disabled_message(flags: Flags) -> str:
    """Why new workflows of this user are refused (the kill switch first: it overrides the rollout)."""
    if not flags.hybrid_orchestrator_enabled:
        return "the hybrid orchestrator is disabled (kill switch hybridOrchestratorEnabled=false)"
    return f"the hybrid orchestrator is not enabled for this user yet (rollout at {flags.rollout_percentage}%)"


def accepted(workflow_id: uuid.UUID, status: WorkflowStatus, trace_id: str | None) -> web.Response:
    body = AcceptedResponse(data=AcceptedData(workflow_id=workflow_id, status=status, trace_id=trace_id))
    location = f"{c.PATH_STATUS}?workflowId={workflow_id}"
    return json_response(body.dump(), status=202, headers={"Location": location})


def idempotent_workflow_id(user_id: str, key: str) -> uuid.UUID:
    """The workflow id of (user, Idempotency-Key). The user id is length-prefixed so that no other pair
    spells the same name ("a:b" + "c" must not meet "a" + "b:c")."""
    return uuid.uuid5(c.IDEMPOTENCY_NAMESPACE, f"{len(user_id)}:{user_id}:{key}")


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > c.IDEMPOTENCY_KEY_MAX_LENGTH or not (key.isascii() and key.isprintable()):
        raise BadRequest(
            "invalid_parameter",
            f"Idempotency-Key must be 1 to {c.IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters",
        )
    return key


async def read_json_object(request: web.Request, max_bytes: int, timeout_s: float) -> dict[str, Any]:
    """The body as a JSON object, or the precise 4xx: 415 not JSON, 413 too large, 408 not in whole within
    `timeout_s`, 400 malformed or not storable (a control character, nested too deep:
    storable.refuse_unstorable)."""
    if request.content_type not in _JSON_TYPES:
        raise UnsupportedMedia("unsupported_media_type", "send the body as Content-Type: application/json")
    if request.charset not in (None, "utf-8", "utf8"):
        raise UnsupportedMedia("unsupported_media_type", "the JSON body must be UTF-8")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge("payload_too_large", f"the body must be at most {max_bytes} bytes")
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()  # a chunked body past client_max_size raises 413 here (error_middleware)
    except TimeoutError as exc:
        raise BodyTimeout("request_timeout", f"the body did not arrive within {timeout_s:g} s") from exc
    if not raw.strip():
        raise BadRequest("invalid_json", "the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("invalid_body", "the body must be a JSON object")
    refuse_unstorable(body)  # before anything is published: a 202 promises a workflow the router can store
    return body


def parse_campaign(body: dict[str, Any], settings: GatewaySettings, principal: Principal) -> CampaignRequest:
    """The validated request, with the checks that depend on settings and on the caller: the campaign's
    size, its callback URL, and (when it sends) the caller's id as a platform account id."""
    try:
        campaign = CampaignRequest.model_validate(body)
    except ValidationError as exc:
        raise BadRequest.from_validation(exc) from exc
    limit = settings.campaign_max_recipients
    if campaign.recipient_count() > limit:
        raise BadRequest(
            "validation_error",
            f"{campaign.recipient_count()} recipients: a campaign has at most {limit} (CAMPAIGN_MAX_RECIPIENTS)",
            details=[FieldError(field="recipientIds", message=f"at most {limit} recipients")],
        )
    if campaign.callback_url is not None:
        local_http = settings.webhook_allow_local_http
        problem = callback_url_problem(campaign.callback_url, allow_local_http=local_http)
        if problem is None and not local_http and not re.fullmatch(c.CALLBACK_URL_PATTERN, campaign.callback_url):
            problem = "the callback URL must be https://host[:port][/path] in printable ASCII"
        if problem is not None:
            raise BadRequest(
                "validation_error",
                f"invalid request body: callbackUrl: {problem}",
                details=[FieldError(field="callbackUrl", message=problem)],
            )
    if campaign.account_id is not None:
        if not principal.may_send_as(campaign.account_id):
            raise Forbidden(
                "forbidden", f"the token may not send from account {campaign.account_id} (its `accounts` claim)"
            )
    elif campaign.send_to_onlyfans and not re.fullmatch(c.PLATFORM_ID_PATTERN, principal.user_id):
        # Without accountId the account messages are sent from is the caller's id: a platform URL path segment.
        raise BadRequest(
            "invalid_account",
            "the caller's id (the token's sub) is not a valid platform account id: letters, digits, _ - . only;"
            " give accountId",
        )
    return campaign


def parse_deliveries_query(query: Mapping[str, str], principal: Principal) -> DeliveryListQuery:
    """GET deliveries' parameters: workflowId, and optionally status, cursor and limit."""
    workflow_id = parse_workflow_id(query)
    status = query.get("status")
    if status is not None and status not in DeliveryState.__members__.values():
        allowed = ", ".join(s.value for s in DeliveryState)
        raise BadRequest("invalid_parameter", f"status must be one of: {allowed}")
    cursor = _int_parameter(query, "cursor", None, 0, 2**31 - 1)
    limit = _int_parameter(query, "limit", c.DELIVERIES_DEFAULT_LIMIT, 1, c.DELIVERIES_MAX_LIMIT)
    assert limit is not None
    return DeliveryListQuery(
        workflow_id=workflow_id,
        requester_user_id=principal.user_id,
        requester_is_admin=principal.is_admin,
        status=DeliveryState(status) if status is not None else None,
        after_seq=cursor,
        limit=limit,
    )


def _int_parameter(query: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest("invalid_parameter", f"{name} must be a whole number from {low} to {high}")
    return int(raw)


_ACCOUNT_ID = re.compile(c.PLATFORM_ID_PATTERN)


def parse_account_id(request: web.Request) -> str:
    """The path's {accountId}: a platform account id, else 400 invalid_parameter."""
    account_id = request.match_info["accountId"]
    if len(account_id) > c.MAX_ID_LENGTH or not _ACCOUNT_ID.fullmatch(account_id):
        raise BadRequest(
            "invalid_parameter",
            f"accountId must be a platform account id: letters, digits, _ - . (not only dots), "
            f"at most {c.MAX_ID_LENGTH} characters",
        )
    return account_id


def parse_workflow_id(query: Mapping[str, str]) -> uuid.UUID:
    raw = query.get("workflowId")
    if raw is None or not raw.strip():
        raise BadRequest("invalid_parameter", "the workflowId query parameter is required")
    try:
        return uuid.UUID(raw.strip())
    except ValueError as exc:
        raise BadRequest("invalid_parameter", "workflowId must be a UUID") from exc
