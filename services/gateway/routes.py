"""The route table: what the gateway serves, with every answer it can give. service.py registers exactly
these routes and openapi.py documents exactly these, so the two cannot drift apart."""

from __future__ import annotations

from dataclasses import replace

from contracts.enums import DeliveryState
from services.gateway import constants as c
from services.gateway.api import Api
from services.gateway.control_routes import CONTROL_ROUTES
from services.gateway.cost_routes import COST_ROUTES
from services.gateway.dead_letter_routes import DEAD_LETTER_ROUTES
from services.gateway.flag_routes import FLAG_ROUTES
from services.gateway.listing_routes import LISTING_ROUTES
from services.gateway.openapi import Param, Reply, RouteDoc
from services.gateway.replies import UNAUTHORIZED
from services.gateway.schemas import (
    AcceptedResponse,
    CampaignRequest,
    CompletedResponse,
    DeliveriesResponse,
    ErrorResponse,
    HealthResponse,
    StatusResponse,
)
from services.gateway.window_routes import WINDOW_ROUTES

_UNAVAILABLE_BUS = Reply("unavailable: the bus or the router did not answer", ErrorResponse, ("Retry-After",))

TRACEPARENT = Param(
    "traceparent",
    "header",
    # No pattern: W3C Trace Context says a malformed traceparent is ignored (a new trace starts), not refused.
    "W3C trace context, `version-traceid-parentid-flags` in lower-case hex (2-32-16-2 digits, e.g. "
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01): the workflow joins the caller's trace and "
    "`traceId` is that trace's id; a malformed value is ignored (the workflow starts a new trace)",
    {"type": "string"},
)

CREATE_CAMPAIGN = RouteDoc(
    method="POST",
    path=c.PATH_CAMPAIGN,
    handler=Api.create_campaign,
    operation_id="createHybridCampaign",
    summary="Start a workflow (generate, optionally deliver)",
    description=(
        "Answers 202 once the router persisted the workflow, so a status request right after finds it. "
        "With ?wait=true the answer waits until the workflow ends (200 completed; a failed workflow "
        "answers the status of its error type with `data` and `metrics`) or the wait times out (202 "
        "with the current status). Nothing is created when the request is refused with a 4xx."
    ),
    request=CampaignRequest,
    params=(
        Param("wait", "query", "wait for the result", {"type": "string", "enum": ["true", "false", "1", "0"]}),
        Param(
            "timeout",
            "query",
            "seconds to wait with wait=true; capped by GATEWAY_WAIT_TIMEOUT_S (default 60)",
            {"type": "number", "exclusiveMinimum": 0},
        ),
        Param(
            "Idempotency-Key",
            "header",
            "a retried POST with the same key (same user) answers the same workflow instead of a new one; "
            "the first request's body wins (a retry's body is not compared)",
            {"type": "string", "minLength": 1, "maxLength": c.IDEMPOTENCY_KEY_MAX_LENGTH},
        ),
        TRACEPARENT,
    ),
    replies={
        200: Reply("wait=true: the workflow completed", CompletedResponse),
        202: Reply("accepted (or wait=true timed out: `status` is the current one)", AcceptedResponse, ("Location",)),
        400: Reply(
            "invalid_json, invalid_body, validation_error (naming the fields: an id outside the pattern, "
            "more than CAMPAIGN_MAX_RECIPIENTS fans, a callbackUrl that is not https), "
            "invalid_parameter, or invalid_account (sendToOnlyFans without accountId: the token's sub is not a "
            "platform id)",
            ErrorResponse,
        ),
        401: UNAUTHORIZED,
        402: Reply("cost_limit_exceeded: the user's budget blocks new workflows", ErrorResponse),
        403: Reply(
            "forbidden: accountId is neither the caller's id nor in the token's `accounts` claim (admins may use any)",
            ErrorResponse,
        ),
        409: Reply("cancelled: wait=true, and the workflow was cancelled meanwhile", ErrorResponse),
        408: Reply("request_timeout: the body did not arrive within GATEWAY_BODY_TIMEOUT_S", ErrorResponse),
        413: Reply("payload_too_large: the body exceeds GATEWAY_CAMPAIGN_MAX_BODY_BYTES", ErrorResponse),
        415: Reply("unsupported_media_type: the body must be application/json (UTF-8)", ErrorResponse),
        422: Reply("invalid_request or compliance_violation: refused, or failed, for its content", ErrorResponse),
        429: Reply(
            "rate_limit_exceeded: the provider's limit ran out (wait=true), retry later",
            ErrorResponse,
            ("Retry-After",),
        ),
        502: Reply(
            "the workflow failed upstream (provider_unavailable, onlyfans_api_error: code is its error type; "
            "wait=true), or bad_gateway: the router answered something unexpected",
            ErrorResponse,
        ),
        503: Reply(
            "disabled (the kill switch is off, or the user is outside the rollout: see /api/admin/feature-flags), "
            "unavailable (the bus failed), or the workflow was refused or failed on database_error / sqs_error",
            ErrorResponse,
            ("Retry-After",),
        ),
        504: Reply("the workflow failed on azure_timeout / openai_timeout (wait=true)", ErrorResponse),
    },
    tags=("campaigns",),
)

GET_STATUS = RouteDoc(
    method="GET",
    path=c.PATH_STATUS,
    handler=Api.get_status,
    operation_id="getWorkflowStatus",
    summary="A workflow's whole state",
    description="A user sees only their own workflows (another user's answers 404); an admin sees all.",
    params=(
        Param("workflowId", "query", "the id from the 202 answer", {"type": "string", "format": "uuid"}, True),
        TRACEPARENT,
    ),
    replies={
        200: Reply("the workflow", StatusResponse),
        400: Reply("invalid_parameter: workflowId missing or not a UUID", ErrorResponse),
        401: UNAUTHORIZED,
        404: Reply("not_found: no such workflow, or not yours", ErrorResponse),
        502: Reply("bad_gateway: the router answered something unexpected", ErrorResponse),
        503: _UNAVAILABLE_BUS,
    },
    tags=("campaigns",),
)

GET_DELIVERIES = RouteDoc(
    method="GET",
    path=c.PATH_DELIVERIES,
    handler=Api.get_deliveries,
    operation_id="listWorkflowDeliveries",
    summary="A workflow's deliveries, a page at a time",
    description=(
        "In campaign order; keyset pages: pass the answer's `nextCursor` as `cursor` for the next page. "
        "Optionally only the deliveries in one `status`. Owner or admin, like the status."
    ),
    params=(
        Param("workflowId", "query", "the workflow", {"type": "string", "format": "uuid"}, True),
        Param("status", "query", "only deliveries in this state", {"type": "string", "enum": [*DeliveryState]}),
        Param(
            "cursor", "query", "the previous page's nextCursor", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
        ),
        Param(
            "limit",
            "query",
            f"deliveries per page (default {c.DELIVERIES_DEFAULT_LIMIT})",
            {"type": "integer", "minimum": 1, "maximum": c.DELIVERIES_MAX_LIMIT},
        ),
        TRACEPARENT,
    ),
    replies={
        200: Reply("a page of deliveries", DeliveriesResponse),
        400: Reply("invalid_parameter: workflowId, status, cursor or limit", ErrorResponse),
        401: UNAUTHORIZED,
        404: Reply("not_found: no such workflow, or not yours", ErrorResponse),
        502: Reply("bad_gateway: the router answered something unexpected", ErrorResponse),
        503: _UNAVAILABLE_BUS,
    },
    tags=("campaigns",),
)

HEALTH = RouteDoc(
    method="GET",
    path=c.PATH_HEALTH,
    handler=Api.health,
    operation_id="getHealth",
    summary="The system's health: bus, database, redis, providers, services",
    description="healthy or degraded (a non-critical check fails) answer 200; unhealthy answers 503. A failed "
    "check's error reads `failed` and remote details are absent unless the request carries an admin's token.",
    auth=False,
    replies={
        200: Reply("healthy or degraded", HealthResponse),
        503: Reply("unhealthy: the bus, a database or the router fails", HealthResponse),
    },
    tags=("operations",),
)

OPENAPI = RouteDoc(
    method="GET",
    path=c.PATH_OPENAPI,
    handler=Api.openapi,
    operation_id="getOpenApi",
    summary="This document",
    auth=False,
    replies={200: Reply("the OpenAPI 3.1 document")},
    tags=("operations",),
)

_RATE_LIMITED = (
    "too_many_requests: more than GATEWAY_RATE_LIMIT_RPS requests a second of this user (bursts of "
    "GATEWAY_RATE_LIMIT_BURST) on any replica; retry after Retry-After seconds"
)


def rate_limited(route: RouteDoc) -> RouteDoc:
    """`route` with the 429 of the per-user request limit (guard.Guard), which every authenticated route may
    answer; a route documenting a 429 of its own keeps it, as another reason."""
    if not route.auth:
        return route
    own = route.replies.get(429)
    reply = Reply(f"{_RATE_LIMITED}; or {own.description}" if own else _RATE_LIMITED, ErrorResponse, ("Retry-After",))
    return replace(route, replies={**route.replies, 429: reply})


ROUTES: tuple[RouteDoc, ...] = tuple(
    rate_limited(route)
    for route in (
        CREATE_CAMPAIGN,
        GET_STATUS,
        GET_DELIVERIES,
        *LISTING_ROUTES,
        *CONTROL_ROUTES,
        HEALTH,
        OPENAPI,
        *COST_ROUTES,
        *FLAG_ROUTES,
        *WINDOW_ROUTES,
        *DEAD_LETTER_ROUTES,
    )
)
