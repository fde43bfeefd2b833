"""GET /api/v2/campaigns: find workflows — the caller's, an account's of their token, or (an admin) anyone's.

The router answers (workflow.list.query; services/router/listing.py says who sees which): newest first, one
keyset page at a time; `nextCursor` is opaque and only the router's own cursors are accepted. Filters:
`status`, `accountId` (the account messages are sent from: a workflow without one is sent from its user's
id), `type` (the intent), `from` (inclusive) and `to` (exclusive) on the creation time. A day alone is that
day in UTC, `to` included — as the cost endpoints read them. A non-admin may filter only by their own id or an
account of their token's `accounts` claim (another answers 403: which accounts exist is not theirs to probe).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from contracts.enums import IntentType, Priority, WorkflowStatus
from contracts.messages import WorkflowListItem, WorkflowListQuery, WorkflowListReply
from libs.bus import Bus
from libs.telemetry import get_logger
from services.gateway import constants as c
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.bus_requests import ask
from services.gateway.config import GatewaySettings
from services.gateway.costs import From, To, _invalid_query
from services.gateway.errors import BadRequest, Forbidden, json_response
from services.gateway.schemas import ApiModel, PlatformId, WorkflowErrorBody

log = get_logger(__name__)

Cursor = Annotated[str, Field(min_length=1, max_length=c.WORKFLOWS_CURSOR_MAX_LENGTH)]
Limit = Annotated[int, Field(ge=1, le=c.WORKFLOWS_MAX_LIMIT)]


class ListParams(BaseModel):
    """The query string: camelCase, unknown parameters refused (a misspelt `acountId` must not list all)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=False, extra="forbid", frozen=True)
    status: WorkflowStatus | None = None
    account_id: PlatformId | None = None
    intent_type: IntentType | None = Field(default=None, alias="type")
    start: From | None = Field(default=None, alias="from")
    end: To | None = Field(default=None, alias="to")
    cursor: Cursor | None = None
    limit: Limit = c.WORKFLOWS_DEFAULT_LIMIT


# --- the answer ----------------------------------------------------------------------------------------


class DeliveryCountsBody(ApiModel):
    total: int
    sent: int
    failed: int
    cancelled: int


class WorkflowListEntry(ApiModel):
    """One workflow of the list: what it is, whose, how far it got (its whole state: the status endpoint)."""

    workflow_id: uuid.UUID
    user_id: str = Field(description="who started it")
    account_id: str | None = Field(description="the account it sends from (null: userId)")
    status: WorkflowStatus
    intent_type: IntentType
    priority: Priority
    deliveries: DeliveryCountsBody | None = Field(description="a workflow with deliveries: how they stand")
    error: WorkflowErrorBody | None
    retry_of: uuid.UUID | None = Field(description="the failed workflow this one retries")
    trace_id: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    completed_at: AwareDatetime | None

    @classmethod
    def of(cls, item: WorkflowListItem) -> WorkflowListEntry:
        return cls.model_validate(item.model_dump())


class WorkflowPage(ApiModel):
    workflows: list[WorkflowListEntry] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: this was the last")


class WorkflowListResponse(ApiModel):
    success: Literal[True] = True
    data: WorkflowPage


# --- the handler ---------------------------------------------------------------------------------------


class ListingEndpoints:
    """The workflow list's handler, bound to one gateway's bus."""

    def __init__(self, bus: Bus, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._bus = bus
        self._settings = settings
        self._verifier = verifier

    async def list_workflows(self, request: web.Request) -> web.Response:
        principal = self._verifier.verify(request.headers.get("Authorization"))
        query = parse_list_query(request, principal)
        timeout = self._settings.gateway_request_timeout_s
        answer = await ask(self._bus, query, WorkflowListReply, user_id=principal.user_id, timeout=timeout)
        if not answer.ok:
            raise BadRequest("invalid_parameter", f"cursor: {answer.error or 'not a cursor of this list'}")
        # The router filters by requester; checking here as well keeps one bug from leaking workflows.
        shown = [item for item in answer.workflows if _may_see(principal, item)]
        if len(shown) < len(answer.workflows):
            log.error("gateway.reply.foreign_workflow", hidden=len(answer.workflows) - len(shown))
        page = WorkflowPage(workflows=[WorkflowListEntry.of(item) for item in shown], next_cursor=answer.next_cursor)
        return json_response(WorkflowListResponse(data=page).dump())


def parse_list_query(request: web.Request, principal: Principal) -> WorkflowListQuery:
    """The list's parameters as the router's query (400 naming a bad parameter; 403 for someone else's account)."""
    raw = dict(request.query)
    if len(raw) != len(request.query):
        raise BadRequest("invalid_parameter", "each query parameter may be given once")
    try:
        params = ListParams.model_validate(raw)
    except ValidationError as exc:
        raise _invalid_query(exc) from exc
    if params.account_id is not None and not principal.may_send_as(params.account_id):
        raise Forbidden(
            "forbidden", f"accountId {params.account_id} is neither your id nor an account of your token's `accounts`"
        )
    if params.start is not None and params.end is not None and params.start >= params.end:
        raise BadRequest("invalid_parameter", "from must be before to")
    return WorkflowListQuery(
        requester=principal.requester(),
        status=params.status,
        account_id=params.account_id,
        intent_type=params.intent_type,
        created_from=params.start,
        created_to=params.end,
        cursor=params.cursor,
        limit=params.limit,
    )


def _may_see(principal: Principal, item: WorkflowListItem) -> bool:
    return principal.may_see(item.user_id) or (item.account_id or item.user_id) in principal.accounts
