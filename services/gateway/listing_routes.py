"""The workflow list's entry in the route table (routes.ROUTES includes LISTING_ROUTES): handler
"listing.list_workflows" of services.gateway.listing.ListingEndpoints."""

from __future__ import annotations

from contracts.enums import IntentType, WorkflowStatus
from services.gateway import constants as c
from services.gateway.cost_routes import DAY_OR_TIME
from services.gateway.listing import ListingEndpoints, WorkflowListResponse
from services.gateway.openapi import Param, Reply, RouteDoc
from services.gateway.replies import UNAUTHORIZED
from services.gateway.schemas import ErrorResponse

# As the cost endpoints' from/to (costs.py), which read them the same way.

LIST_WORKFLOWS = RouteDoc(
    method="GET",
    path=c.PATH_WORKFLOWS,
    handler=ListingEndpoints.list_workflows,
    operation_id="listWorkflows",
    summary="Find workflows: newest first, filtered, a page at a time",
    description=(
        "A user's list holds the workflows they started and those sent from an account of their token's "
        "`accounts` claim; an admin's holds everyone's. Newest first (ties by workflow id); keyset pages: pass "
        "the answer's `nextCursor` as `cursor` for the next page, with the same filters. `accountId` is the "
        "account messages are sent from — a workflow started without one is sent from its user's id, and is "
        "found by that id. `from` is inclusive and `to` exclusive; a day alone is that UTC day (`to` includes "
        "it)."
    ),
    params=(
        Param("status", "query", "only workflows in this state", {"type": "string", "enum": [*WorkflowStatus]}),
        Param(
            "accountId",
            "query",
            "only workflows sent from this account: your id or an account of your token (an admin: any)",
            {"type": "string", "minLength": 1, "maxLength": c.MAX_ID_LENGTH, "pattern": c.PLATFORM_ID_PATTERN},
        ),
        Param("type", "query", "only workflows of this intent type", {"type": "string", "enum": [*IntentType]}),
        Param("from", "query", "created at or after: a UTC day (YYYY-MM-DD) or an ISO time with offset", DAY_OR_TIME),
        Param("to", "query", "created before: a UTC day (included) or an ISO time (excluded)", DAY_OR_TIME),
        Param(
            "cursor",
            "query",
            "the previous page's nextCursor",
            {"type": "string", "minLength": 1, "maxLength": c.WORKFLOWS_CURSOR_MAX_LENGTH},
        ),
        Param(
            "limit",
            "query",
            f"workflows per page (default {c.WORKFLOWS_DEFAULT_LIMIT})",
            {"type": "integer", "minimum": 1, "maximum": c.WORKFLOWS_MAX_LIMIT},
        ),
    ),
    replies={
        200: Reply("a page of workflows", WorkflowListResponse),
        400: Reply(
            "invalid_parameter, naming it: status, accountId, type, from, to (or from not before to), cursor (not a "
            "cursor of this list), limit, an unknown parameter or one given twice",
            ErrorResponse,
        ),
        401: UNAUTHORIZED,
        403: Reply("forbidden: accountId is neither your id nor in your token's `accounts` claim", ErrorResponse),
        502: Reply("bad_gateway: the router answered something unexpected", ErrorResponse),
        503: Reply("unavailable: the bus or the router did not answer", ErrorResponse, ("Retry-After",)),
    },
    tags=("campaigns",),
)

LISTING_ROUTES = (LIST_WORKFLOWS,)
