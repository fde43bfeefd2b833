"""The account window's entry in the route table (routes.ROUTES includes WINDOW_ROUTES): handler "get" of
services.gateway.window.WindowEndpoints."""

from __future__ import annotations

from dataclasses import replace

from services.gateway import constants as c
from services.gateway.flag_routes import ACCOUNT
from services.gateway.openapi import Reply, RouteDoc
from services.gateway.replies import UNAUTHORIZED
from services.gateway.schemas import ErrorResponse
from services.gateway.window import WindowEndpoints
from services.gateway.window_schemas import AccountWindowResponse

GET_ACCOUNT_WINDOW = RouteDoc(
    method="GET",
    path=c.PATH_ACCOUNT_WINDOW,
    handler=WindowEndpoints.get,
    operation_id="getAccountWindow",
    summary="A creator account's sending window: sends in use, the limits, the next free slot",
    description=(
        "Read from the rate-limiter's slot plan (nothing is reserved): `inWindow` slots planned in the rolling "
        "window ending `at` of `limits.accountLimit` allowed (OF_ACCOUNT_LIMIT per OF_ACCOUNT_WINDOW_S, safety "
        "margin included), `inHour` of `limits.hourlyLimit` when the hourly cap is set (null: no cap), "
        "`plannedAhead` slots planned later than `at` (deliveries not sent yet), and `nextFreeAt`, the earliest "
        "time one more send fits every limit of the account (`at`: it fits now; a fan's spacing may still "
        "put that fan's send later). An admin, or a user who may send from the account (their own id, or one "
        "named by their token's `accounts` claim)."
    ),
    params=(replace(ACCOUNT, example="creator-1"),),
    replies={
        200: Reply("the account's window", AccountWindowResponse),
        400: Reply("invalid_parameter: accountId is not a platform account id", ErrorResponse),
        401: UNAUTHORIZED,
        403: Reply("forbidden: the token is neither an admin's nor one that may send from the account", ErrorResponse),
        502: Reply("bad_gateway: the rate-limiter answered something unexpected", ErrorResponse),
        503: Reply(
            "unavailable: the bus or the rate-limiter did not answer, or its Redis could not be read",
            ErrorResponse,
            ("Retry-After",),
        ),
    },
    tags=("admin",),
)

WINDOW_ROUTES = (GET_ACCOUNT_WINDOW,)
