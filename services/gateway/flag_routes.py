"""The feature-flag admin endpoints' entries in the route table (routes.ROUTES includes FLAG_ROUTES):
handlers "feature_flags.get" / "feature_flags.put" of services.gateway.feature_flags.FeatureFlagEndpoints."""

from __future__ import annotations

from services.gateway import constants as c
from services.gateway.flag_schemas import FeatureFlagsResponse, FeatureFlagsUpdate
from services.gateway.openapi import Reply, RouteDoc
from services.gateway.schemas import ErrorResponse

_UNAUTHORIZED = Reply(
    "missing_token, invalid_token (bad signature, malformed, wrong algorithm) or token_expired",
    ErrorResponse,
    ("WWW-Authenticate",),
)
_FORBIDDEN = Reply("forbidden: the token is not an admin's (role: admin)", ErrorResponse)
_UNAVAILABLE = Reply(
    "unavailable: the flag store (Redis) did not answer (every replica keeps applying the flags it last read); "
    "flags_invalid: the store holds a value that is not a valid flag (PUT a valid one)",
    ErrorResponse,
    ("Retry-After",),
)
_TAGS = ("admin",)
_SEMANTICS = (
    "Flags: `hybridOrchestratorEnabled` is the kill switch (false: every POST /api/v2/campaigns/hybrid answers "
    "503 `disabled`; status reads keep working); `rolloutPercentage` lets in that share of users, chosen by a "
    "stable hash of their id (raising it only adds users); `allowList` users are in whatever the percentage. "
    "A flag never set takes the replica's environment default (HYBRID_ORCHESTRATOR_ENABLED, "
    "FLAGS_ROLLOUT_PERCENTAGE, FLAGS_ALLOW_LIST)."
)

GET_FLAGS = RouteDoc(
    method="GET",
    path=c.PATH_FEATURE_FLAGS,
    handler="feature_flags.get",
    operation_id="getFeatureFlags",
    summary="The feature flags every replica applies, with their version (admin)",
    description=_SEMANTICS,
    replies={
        200: Reply("the flags", FeatureFlagsResponse),
        401: _UNAUTHORIZED,
        403: _FORBIDDEN,
        503: _UNAVAILABLE,
    },
    tags=_TAGS,
)

PUT_FLAGS = RouteDoc(
    method="PUT",
    path=c.PATH_FEATURE_FLAGS,
    handler="feature_flags.put",
    operation_id="updateFeatureFlags",
    summary="Change feature flags (admin): applied on every replica within seconds",
    description=(
        "The flags given change, the others keep their value. The change applies on this replica before the "
        "answer and on every other replica as soon as it reads the announcement (Redis pub/sub), at the latest "
        "after FLAGS_REFRESH_S (default 1 s). " + _SEMANTICS
    ),
    request=FeatureFlagsUpdate,
    replies={
        200: Reply("the flags after the change", FeatureFlagsResponse),
        400: Reply(
            "invalid_json, invalid_body or validation_error (naming the fields; unknown fields are refused)",
            ErrorResponse,
        ),
        401: _UNAUTHORIZED,
        403: _FORBIDDEN,
        409: Reply("version_conflict: expectedVersion is not the flags' version any more", ErrorResponse),
        408: Reply("request_timeout: the body did not arrive within GATEWAY_BODY_TIMEOUT_S", ErrorResponse),
        413: Reply("payload_too_large: the body exceeds GATEWAY_MAX_BODY_BYTES", ErrorResponse),
        415: Reply("unsupported_media_type: the body must be application/json (UTF-8)", ErrorResponse),
        503: _UNAVAILABLE,
    },
    tags=_TAGS,
)

FLAG_ROUTES = (GET_FLAGS, PUT_FLAGS)
