"""The dead-letter admin endpoints' entries in the route table (routes.ROUTES includes DEAD_LETTER_ROUTES):
handlers "dead_letters.list" / "dead_letters.replay" of services.gateway.dead_letters.DeadLetterEndpoints."""

from __future__ import annotations

from libs.bus import constants as bc
from libs.bus.permissions import consuming_services
from services.gateway import constants as c
from services.gateway.dead_letter_schemas import DeadLetterReplayRequest, DeadLettersResponse, ReplayResponse
from services.gateway.dead_letters import DeadLetterEndpoints
from services.gateway.openapi import Param, Reply, RouteDoc
from services.gateway.replies import UNAUTHORIZED
from services.gateway.schemas import ErrorResponse

_FORBIDDEN = Reply("forbidden: the token is not an admin's (role: admin)", ErrorResponse)
_UNAVAILABLE = Reply("unavailable: the bus did not answer", ErrorResponse, ("Retry-After",))
_SERVICES = list(consuming_services())
_TAGS = ("admin",)
_SEMANTICS = (
    "Each service's dead-letter queue holds the messages its handlers rejected, could not decode or kept "
    "failing (the reason says which). RabbitMQ keeps at most 100,000 per queue (the oldest go first), SQS "
    "14 days. Their depth is the `bus_dead_letters` gauge (attribute `service`)."
)

LIST_DEAD_LETTERS = RouteDoc(
    method="GET",
    path=c.PATH_DEAD_LETTERS,
    handler=DeadLetterEndpoints.list,
    operation_id="listDeadLetters",
    summary="A service's dead letters, left in place (admin)",
    description=(
        "Message text, template variables, results and secret-like fields are shown as `[redacted]`. " + _SEMANTICS
    ),
    params=(
        Param("service", "query", "the service whose dead letters", {"type": "string", "enum": _SERVICES}, True),
        Param(
            "limit",
            "query",
            f"at most this many (default {bc.DEAD_LETTER_LIST_DEFAULT})",
            {"type": "integer", "minimum": 1, "maximum": bc.DEAD_LETTER_LIST_MAX},
        ),
    ),
    replies={
        200: Reply("the dead letters and the queue's depth", DeadLettersResponse),
        400: Reply("invalid_parameter: service missing or unknown (the message names them), or limit", ErrorResponse),
        401: UNAUTHORIZED,
        403: _FORBIDDEN,
        503: _UNAVAILABLE,
    },
    tags=_TAGS,
)

REPLAY_DEAD_LETTERS = RouteDoc(
    method="POST",
    path=c.PATH_DEAD_LETTERS_REPLAY,
    handler=DeadLetterEndpoints.replay,
    operation_id="replayDeadLetters",
    summary="Send one dead letter, or all of a service's, back to its queue (admin)",
    description=(
        "A replayed message starts with a fresh delivery count and `x-ho-replays` one higher; if it fails "
        "again it is dead-lettered again with its new reason (a replay never takes what it sent back itself, "
        "so it never loops). It leaves the dead-letter queue only once its copy is stored. " + _SEMANTICS
    ),
    request=DeadLetterReplayRequest,
    replies={
        200: Reply("how many were replayed", ReplayResponse),
        400: Reply(
            "invalid_json, invalid_body, validation_error (neither or both of id and all) or invalid_parameter "
            "(unknown service)",
            ErrorResponse,
        ),
        401: UNAUTHORIZED,
        403: _FORBIDDEN,
        404: Reply("not_found: no dead letter with that id in the service's queue", ErrorResponse),
        408: Reply("request_timeout: the body did not arrive within GATEWAY_BODY_TIMEOUT_S", ErrorResponse),
        413: Reply("payload_too_large: the body exceeds GATEWAY_MAX_BODY_BYTES", ErrorResponse),
        415: Reply("unsupported_media_type: the body must be application/json (UTF-8)", ErrorResponse),
        503: _UNAVAILABLE,
    },
    tags=_TAGS,
)

DEAD_LETTER_ROUTES = (LIST_DEAD_LETTERS, REPLAY_DEAD_LETTERS)
