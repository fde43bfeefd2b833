"""GET /api/admin/accounts/{accountId}/window: a creator account's sending window, asked of the rate-limiter
(its query lane: answered ahead of the deliveries waiting to be planned), which reads its slot plan.

Who may: an admin, or a user who may send from the account (their own id, or one their token's `accounts`
claim names) — the window says nothing a campaign's sender may not know, and pausing stays an admin's.
"""

from __future__ import annotations

from aiohttp import web

from contracts.rate_window import RateWindow, RateWindowQuery
from libs.bus import Bus
from libs.telemetry import get_logger
from services.gateway.api import parse_account_id
from services.gateway.auth import TokenVerifier
from services.gateway.bus_requests import ask
from services.gateway.config import GatewaySettings
from services.gateway.errors import Forbidden, Unavailable, json_response
from services.gateway.window_schemas import AccountWindowResponse

log = get_logger(__name__)


class WindowEndpoints:
    """The account window handler, bound to one gateway's bus."""

    def __init__(self, bus: Bus, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._bus = bus
        self._settings = settings
        self._verifier = verifier

    async def get(self, request: web.Request) -> web.Response:
        principal = self._verifier.verify(request.headers.get("Authorization"))
        account_id = parse_account_id(request)
        if not principal.may_send_as(account_id):
            raise Forbidden("forbidden", f"account {account_id} is neither yours nor one your token names")
        reply = await ask(
            self._bus,
            RateWindowQuery(account_id=account_id),
            RateWindow,
            user_id=principal.user_id,
            timeout=self._settings.gateway_request_timeout_s,
            service="the rate-limiter",
        )
        if reply.error is not None:
            log.warning("gateway.window.unavailable", reason=reply.error)
            raise Unavailable("unavailable", reply.error, headers={"Retry-After": "1"})
        body = AccountWindowResponse(data=reply.model_dump(exclude={"error"}))
        return json_response(body.model_dump(mode="json", by_alias=True))
