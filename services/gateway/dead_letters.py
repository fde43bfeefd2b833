"""The dead-letter admin endpoints: GET /api/admin/dead-letters and POST /api/admin/dead-letters/replay
(admin token only).

The gateway reaches the dead-letter queues through its own bus (libs.bus: `list_dead_letters`,
`replay_dead_letters`, `dead_letter_depth`); its broker user and IAM role may read every DLQ and send to
every service's queue for this (libs.bus.permissions.OPERATES_DEAD_LETTERS). A listing leaves the dead
letters where they are; a replay puts them back on their service's queue with a fresh delivery count, and
one that fails again is dead-lettered again with its new reason. Who replayed what is logged
(`dead_letters.replayed`), never the messages themselves.

The gateway also keeps the `bus_dead_letters` gauge (libs.bus.dead_letters.DeadLetterDepth): one process
that may look into every DLQ, reading each one's depth every 30 s.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import ValidationError

from libs.bus import Bus, BusError
from libs.bus import constants as bc
from libs.bus.dead_letters import DeadLetterDepth
from libs.bus.permissions import consuming_services
from libs.telemetry import get_logger
from services.gateway.api import _int_parameter, read_json_object
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.config import GatewaySettings
from services.gateway.dead_letter_schemas import (
    DeadLetterBody,
    DeadLetterReplayRequest,
    DeadLettersData,
    DeadLettersResponse,
    ReplayData,
    ReplayResponse,
)
from services.gateway.errors import BadRequest, Forbidden, NotFound, Unavailable, json_response

log = get_logger(__name__)


class DeadLetterEndpoints:
    """The admin handlers, bound to one gateway's bus."""

    def __init__(self, bus: Bus, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._bus = bus
        self._settings = settings
        self._verifier = verifier
        self.services = consuming_services()
        self.depth = DeadLetterDepth(bus, self.services)

    async def list(self, request: web.Request) -> web.Response:
        self._admin(request)
        service = self._service(request.query.get("service"))
        limit = _int_parameter(request.query, "limit", bc.DEAD_LETTER_LIST_DEFAULT, 1, bc.DEAD_LETTER_LIST_MAX)
        assert limit is not None
        try:
            items = await self._bus.list_dead_letters(service, limit=limit)
            depth = await self._bus.dead_letter_depth(service)
        except BusError as exc:
            raise _unavailable(exc) from exc
        now = datetime.now(UTC)
        data = DeadLettersData(
            service=service,
            depth=max(depth, len(items)),  # SQS counts approximately; never fewer than listed
            dead_letters=[DeadLetterBody.of(item, now) for item in items],
        )
        return json_response(DeadLettersResponse(data=data).dump())

    async def replay(self, request: web.Request) -> web.Response:
        principal = self._admin(request)
        raw = await read_json_object(
            request, self._settings.gateway_max_body_bytes, self._settings.gateway_body_timeout_s
        )
        try:
            body = DeadLetterReplayRequest.model_validate(raw)
        except ValidationError as exc:
            raise BadRequest.from_validation(exc) from exc
        service = self._service(body.service)
        try:
            replayed = await self._bus.replay_dead_letters(service, body.id)
        except BusError as exc:
            raise _unavailable(exc) from exc
        log.info("dead_letters.replayed", service=service, message_id=body.id, replayed=replayed, by=principal.user_id)
        if body.id is not None and replayed == 0:
            raise NotFound("not_found", f"no dead letter {body.id} in {service}'s dead-letter queue")
        return json_response(ReplayResponse(data=ReplayData(service=service, replayed=replayed)).dump())

    def _admin(self, request: web.Request) -> Principal:
        principal = self._verifier.verify(request.headers.get("Authorization"))
        if not principal.is_admin:
            raise Forbidden("forbidden", "dead letters need an admin token")
        return principal

    def _service(self, name: str | None) -> str:
        if not name:
            raise BadRequest("invalid_parameter", f"service is required, one of: {', '.join(self.services)}")
        if name not in self.services:
            raise BadRequest("invalid_parameter", f"unknown service; one of: {', '.join(self.services)}")
        return name


def _unavailable(exc: BusError) -> Unavailable:
    log.error("dead_letters.bus_failed", reason=f"{type(exc).__name__}: {exc}")
    return Unavailable("unavailable", "the bus did not answer; try again", headers={"Retry-After": "1"})
