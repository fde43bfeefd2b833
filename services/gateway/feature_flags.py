"""The feature-flag admin endpoints: GET and PUT /api/admin/feature-flags, PUT /api/admin/accounts/{accountId}/
pause and /resume (admin token only).

GET reads the store (not this replica's cache), so it shows what every replica converges to; PUT writes
through this replica's FlagClient, which applies the change here at once and announces it to the others
(libs.flags). Who changed what is logged (`flags.updated`) and kept as updatedBy/updatedAt. A pause or
resume changes one account of the paused set, as another admin may have just written it (a version-checked
write, retried on a race: FlagClient.set_paused).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from libs.flags import FlagClient, FlagsError, FlagsInvalid, PausedLimit, VersionConflict
from libs.telemetry import get_logger
from services.gateway.api import parse_account_id, read_json_object
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.config import GatewaySettings
from services.gateway.errors import BadRequest, Conflict, Forbidden, Unavailable, json_response
from services.gateway.flag_schemas import (
    AccountPauseData,
    AccountPauseResponse,
    FeatureFlagsData,
    FeatureFlagsResponse,
    FeatureFlagsUpdate,
)

log = get_logger(__name__)


class FeatureFlagEndpoints:
    """The admin handlers, bound to one gateway's flag client."""

    def __init__(self, client: FlagClient, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._client = client
        self._settings = settings
        self._verifier = verifier

    async def get(self, request: web.Request) -> web.Response:
        self._admin(request)
        try:
            state = await self._client.refresh()
        except FlagsError as exc:
            raise _unavailable(exc) from exc
        return self._answer(FeatureFlagsData.of(state, self._client.store.kind))

    async def put(self, request: web.Request) -> web.Response:
        principal = self._admin(request)
        raw = await read_json_object(
            request, self._settings.gateway_max_body_bytes, self._settings.gateway_body_timeout_s
        )
        try:
            body = FeatureFlagsUpdate.model_validate(raw)
        except ValidationError as exc:
            raise BadRequest.from_validation(exc) from exc
        try:
            state = await self._client.update(
                body.to_update(), updated_by=principal.user_id, expected_version=body.expected_version
            )
        except VersionConflict as exc:
            raise Conflict("version_conflict", f"{exc}; read the flags again and retry") from exc
        except FlagsError as exc:
            raise _unavailable(exc) from exc
        return self._answer(FeatureFlagsData.of(state, self._client.store.kind))

    async def pause(self, request: web.Request) -> web.Response:
        return await self._set_paused(request, True)

    async def resume(self, request: web.Request) -> web.Response:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: web.Request, paused: bool) -> web.Response:
        principal = self._admin(request)
        account_id = parse_account_id(request)
        try:
            state = await self._client.set_paused(account_id, paused, updated_by=principal.user_id)
        except PausedLimit as exc:
            raise Conflict("paused_accounts_full", str(exc)) from exc
        except VersionConflict as exc:
            raise Conflict("version_conflict", f"the flags kept changing ({exc}); try again") from exc
        except FlagsError as exc:
            raise _unavailable(exc) from exc
        log.info("flags.account_paused" if paused else "flags.account_resumed", account_id=account_id)
        body = AccountPauseResponse(data=AccountPauseData.of(account_id, state))
        return json_response(body.dump())

    def _admin(self, request: web.Request) -> Principal:
        principal = self._verifier.verify(request.headers.get("Authorization"))
        if not principal.is_admin:
            raise Forbidden("forbidden", "feature flags need an admin token")
        return principal

    @staticmethod
    def _answer(data: FeatureFlagsData) -> web.Response:
        return json_response(FeatureFlagsResponse(data=data).dump())


def _unavailable(exc: FlagsError) -> Unavailable:
    if isinstance(exc, FlagsInvalid):
        # Someone wrote the hash by hand (or a newer release did): say which value, so a PUT can fix it.
        return Unavailable("flags_invalid", f"the flag store holds an invalid value: {exc}")
    return Unavailable("unavailable", "the flag store is unavailable; try again", headers={"Retry-After": "1"})
