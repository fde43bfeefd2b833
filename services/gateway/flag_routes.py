"""The feature-flag admin endpoints' entries in the route table (routes.ROUTES includes FLAG_ROUTES):
handlers "feature_flags.get" / "put" / "pause" / "resume" of services.gateway.feature_flags.FeatureFlagEndpoints."""

from __future__ import annotations

from services.gateway import constants as c
from services.gateway.feature_flags import FeatureFlagEndpoints
from services.gateway.flag_schemas import AccountPauseResponse, FeatureFlagsResponse, FeatureFlagsUpdate
from services.gateway.openapi import Param, Reply, RouteDoc
from services.gateway.replies import UNAUTHORIZED
from services.gateway.schemas import ErrorResponse

_FORBIDDEN = Reply("forbidden: the token is not an admin's (role: admin)", ErrorResponse)
_UNAVAILABLE = Reply(
    "unavailable: the flag store (Redis) did not answer (every replica keeps applying the flags it last read); "
    "flags_invalid: the store holds a value that is not a valid flag (PUT a valid one)",
    ErrorResponse,
    ("Retry-After",),
)
# One creator account's pause and resume: a change of the flags' paused set.
PATH_ACCOUNT_PAUSE = "/api/admin/accounts/{accountId}/pause"
PATH_ACCOUNT_RESUME = "/api/admin/accounts/{accountId}/resume"

_TAGS = ("admin",)
_SEMANTICS = (
    "Flags: `hybridOrchestratorEnabled` is the kill switch (false: every POST /api/v2/campaigns/hybrid answers "
    "503 `disabled`, and nothing more is sent or generated for workflows already accepted — their deliveries "
    "and generation retries wait, none is lost, and go on when it is true again; status reads keep working); "
    "`rolloutPercentage` lets in that share of users, chosen by a stable hash of their id (raising it only "
    "adds users); `allowList` users are in whatever the percentage; `pausedAccounts` (read-only here: "
    "PUT /api/admin/accounts/{accountId}/pause and /resume change it) are creator accounts whose deliveries "
    "wait. A flag never set takes the replica's environment default (HYBRID_ORCHESTRATOR_ENABLED, "
    "FLAGS_ROLLOUT_PERCENTAGE, FLAGS_ALLOW_LIST); HYBRID_ORCHESTRATOR_ENABLED=false in a replica's environment "
    "keeps that replica off whatever the stored switch (which this answer shows)."
)

GET_FLAGS = RouteDoc(
    method="GET",
    path=c.PATH_FEATURE_FLAGS,
    handler=FeatureFlagEndpoints.get,
    operation_id="getFeatureFlags",
    summary="The feature flags every replica applies, with their version (admin)",
    description=_SEMANTICS,
    replies={
        200: Reply("the flags", FeatureFlagsResponse),
        401: UNAUTHORIZED,
        403: _FORBIDDEN,
        503: _UNAVAILABLE,
    },
    tags=_TAGS,
)

PUT_FLAGS = RouteDoc(
    method="PUT",
    path=c.PATH_FEATURE_FLAGS,
    handler=FeatureFlagEndpoints.put,
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
        401: UNAUTHORIZED,
        403: _FORBIDDEN,
        409: Reply("version_conflict: expectedVersion is not the flags' version any more", ErrorResponse),
        408: Reply("request_timeout: the body did not arrive within GATEWAY_BODY_TIMEOUT_S", ErrorResponse),
        413: Reply("payload_too_large: the body exceeds GATEWAY_MAX_BODY_BYTES", ErrorResponse),
        415: Reply("unsupported_media_type: the body must be application/json (UTF-8)", ErrorResponse),
        503: _UNAVAILABLE,
    },
    tags=_TAGS,
)

ACCOUNT = Param(  # the creator account of /api/admin/accounts/{accountId}/... (window_routes.py too)
    "accountId",
    "path",
    "the creator's platform account id",
    {"type": "string", "pattern": c.PLATFORM_ID_PATTERN, "maxLength": c.MAX_ID_LENGTH},
    True,
)
_PAUSE_REPLIES = {
    200: Reply("the account, whether it is paused, and the flags' version", AccountPauseResponse),
    400: Reply("invalid_parameter: accountId is not a platform account id", ErrorResponse),
    401: UNAUTHORIZED,
    403: _FORBIDDEN,
    409: Reply(
        "paused_accounts_full: as many accounts as the flags hold are paused (resume one first); "
        "version_conflict: the flags kept changing under concurrent writes (try again)",
        ErrorResponse,
    ),
    503: _UNAVAILABLE,
}

PAUSE_ACCOUNT = RouteDoc(
    method="PUT",
    path=PATH_ACCOUNT_PAUSE,
    handler=FeatureFlagEndpoints.pause,
    operation_id="pauseAccount",
    summary="Pause a creator account (admin): nothing more is sent from it until it is resumed",
    description=(
        "Adds the account to the flags' pausedAccounts. Its deliveries not yet sent wait (none is lost) on every "
        "replica within moments (as any flag change); new campaigns for it are still accepted and wait too. "
        "Pausing a paused account changes nothing (same version). No body."
    ),
    params=(ACCOUNT,),
    replies=_PAUSE_REPLIES,
    tags=_TAGS,
)

RESUME_ACCOUNT = RouteDoc(
    method="PUT",
    path=PATH_ACCOUNT_RESUME,
    handler=FeatureFlagEndpoints.resume,
    operation_id="resumeAccount",
    summary="Resume a paused creator account (admin): its waiting deliveries are sent",
    description=(
        "Removes the account from pausedAccounts; its waiting deliveries go out within about a second, within "
        "the platform's limits. Resuming an account that is not paused changes nothing. No body."
    ),
    params=(ACCOUNT,),
    replies=_PAUSE_REPLIES,
    tags=_TAGS,
)

FLAG_ROUTES = (GET_FLAGS, PUT_FLAGS, PAUSE_ACCOUNT, RESUME_ACCOUNT)
