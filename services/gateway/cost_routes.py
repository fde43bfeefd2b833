"""The cost endpoints' entries in the route table (routes.ROUTES includes COST_ROUTES): how each is served
(handler "costs.<method>" of services.gateway.costs.CostEndpoints) and documented."""

from __future__ import annotations

from typing import Any

from contracts.ids import USER_ID_MAX_LENGTH, USER_ID_PATTERN
from services.gateway import constants as c
from services.gateway import cost_schemas as s
from services.gateway.costs import CostEndpoints
from services.gateway.openapi import Param, Reply, RouteDoc
from services.gateway.replies import UNAUTHORIZED
from services.gateway.schemas import ErrorResponse

_BAD_QUERY = Reply("invalid_parameter: a query parameter is unknown, malformed or out of range", ErrorResponse)
_BAD_BODY = Reply(
    "invalid_json, invalid_body, validation_error (naming the fields) or invalid_parameter", ErrorResponse
)
_FORBIDDEN = Reply("forbidden: userId names another user and the token is not an admin's", ErrorResponse)
_BAD_GATEWAY = Reply("bad_gateway: the cost-tracker answered something unexpected", ErrorResponse)
_UNAVAILABLE = Reply("unavailable: the bus or the cost-tracker did not answer", ErrorResponse, ("Retry-After",))
_TAGS = ("costs",)

# A calendar day, or a time with its offset (costs._instant parses them with date/datetime.fromisoformat):
# formats, not a digit pattern, so an impossible day (2026-02-30) is outside the document as it is refused.
# The time's pattern keeps out what RFC 3339 allows and fromisoformat refuses (leap second, lower-case t/z).
# The year as written is COST_MIN_YEAR..COST_MAX_YEAR (20xx), so the time in UTC and the day after exist.
_YEAR = r"20\d{2}"
assert (c.COST_MIN_YEAR, c.COST_MAX_YEAR) == (2000, 2099), "_YEAR states these bounds"
DAY_OR_TIME: dict[str, Any] = {
    "type": "string",
    "anyOf": [
        {"format": "date", "pattern": rf"^{_YEAR}-"},
        {
            "format": "date-time",
            "pattern": rf"^{_YEAR}-\d{{2}}-\d{{2}}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
            r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$",
        },
    ],
}
USER_ID = Param(
    "userId",
    "query",
    "admin: whose costs (default: everyone's); others: only their own id",
    # A user id (contracts.ids): never "*", the global scope.
    {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX_LENGTH, "pattern": USER_ID_PATTERN},
)
FROM = Param("from", "query", "UTC day (YYYY-MM-DD) or ISO time with offset; default: 1st of this month", DAY_OR_TIME)
TO = Param("to", "query", "UTC day, included (YYYY-MM-DD), or ISO time, excluded; default: now", DAY_OR_TIME)
LIMIT = Param("limit", "query", "at most this many items", {"type": "integer", "minimum": 1, "maximum": 500})
LOOKBACK = Param("lookbackDays", "query", "days of history used", {"type": "integer", "minimum": 1, "maximum": 366})


def _read(replies: dict[int, Reply], *, not_found: str | None = None) -> dict[int, Reply]:
    common = {400: _BAD_QUERY, 401: UNAUTHORIZED, 403: _FORBIDDEN, 502: _BAD_GATEWAY, 503: _UNAVAILABLE}
    if not_found:
        common[404] = Reply(not_found, ErrorResponse)
    return {**replies, **common}


def _write(replies: dict[int, Reply], *, forbidden: str, not_found: str | None = None) -> dict[int, Reply]:
    common = {
        400: _BAD_BODY,
        401: UNAUTHORIZED,
        403: Reply(forbidden, ErrorResponse),
        408: Reply("request_timeout: the body did not arrive within GATEWAY_BODY_TIMEOUT_S", ErrorResponse),
        413: Reply("payload_too_large: the body exceeds GATEWAY_MAX_BODY_BYTES", ErrorResponse),
        415: Reply("unsupported_media_type: the body must be application/json (UTF-8)", ErrorResponse),
        502: _BAD_GATEWAY,
        503: _UNAVAILABLE,
    }
    if not_found:
        common[404] = Reply(not_found, ErrorResponse)
    return {**replies, **common}


COST_STATS = RouteDoc(
    method="GET",
    path=c.PATH_COST_STATS,
    handler=CostEndpoints.get_stats,
    operation_id="getCostStats",
    summary="Today's and this month's costs, by provider, with requests and the average per workflow",
    params=(USER_ID,),
    replies=_read({200: Reply("the figures (UTC days and months)", s.CostStatsResponse)}),
    tags=_TAGS,
)

COST_BREAKDOWN = RouteDoc(
    method="GET",
    path=c.PATH_COST_BREAKDOWN,
    handler=CostEndpoints.get_breakdown,
    operation_id="getCostBreakdown",
    summary="Costs over a range, grouped by provider, model, day or workflow type",
    description=(
        "Every provider (groupBy=provider) and every day of the range (groupBy=day) is listed. With splitBy, "
        "each group's parts are its cost per provider (every one) or per model (every one with costs in the "
        "range), the same keys in every group: groupBy=day&splitBy=provider is the daily series per provider."
    ),
    params=(
        FROM,
        TO,
        Param(
            "groupBy", "query", "default: provider", {"type": "string", "enum": ["provider", "model", "day", "type"]}
        ),
        Param(
            "splitBy",
            "query",
            "each group's cost per provider or model too (parts); default: none",
            {"type": "string", "enum": ["provider", "model"]},
        ),
        USER_ID,
    ),
    replies=_read({200: Reply("the groups and their totals", s.CostBreakdownResponse)}),
    tags=_TAGS,
)

CAMPAIGN_COSTS = RouteDoc(
    method="GET",
    path=c.PATH_CAMPAIGN_COSTS,
    handler=CostEndpoints.get_campaign_costs,
    operation_id="getCampaignCosts",
    summary="Costs per workflow: one with its calls (workflowId), or the workflows of a range",
    params=(
        Param("workflowId", "query", "one workflow, with every billed call", {"type": "string", "format": "uuid"}),
        FROM,
        TO,
        LIMIT,
        USER_ID,
    ),
    replies=_read(
        {200: Reply("a WorkflowCost (workflowId) or the range's workflows, latest first", s.CampaignCostsResponse)},
        not_found="not_found: no costs recorded for that workflow, or not yours",
    ),
    tags=_TAGS,
)

GET_THRESHOLDS = RouteDoc(
    method="GET",
    path=c.PATH_COST_THRESHOLDS,
    handler=CostEndpoints.get_thresholds,
    operation_id="getCostThresholds",
    summary="Alert thresholds and budgets (yours; an admin: everyone's)",
    params=(
        Param(
            "type",
            "query",
            "hourly, daily, monthly or per_request",
            {"type": "string", "enum": ["hourly", "daily", "monthly", "per_request"]},
        ),
        Param("enabled", "query", "only enabled (true) or disabled (false) ones", {"type": "boolean"}),
        USER_ID,
    ),
    replies=_read({200: Reply("the thresholds, with counts", s.ThresholdsResponse)}),
    tags=_TAGS,
)

CREATE_THRESHOLD = RouteDoc(
    method="POST",
    path=c.PATH_COST_THRESHOLDS,
    handler=CostEndpoints.create_threshold,
    operation_id="createCostThreshold",
    summary="Create a threshold: an alert once per period when spend reaches it, and a budget with an action",
    description=(
        "Checked against the period's spend at once: a budget set below what was spent applies now. action "
        "block refuses new workflows with cost_limit_exceeded (402); downgrade sends them to openai. type "
        "hourly, daily or monthly watches the period's spend (UTC), per_request each billed call's cost; with a "
        "provider, only that provider's spend. Per-request and per-provider thresholds alert only (action none). "
        "Every alert of a user's scope also goes to the user's alert destination (alert-destination)."
    ),
    request=s.ThresholdCreateRequest,
    replies=_write(
        {201: Reply("created", s.ThresholdResponse)},
        forbidden=(
            "forbidden: global thresholds, other users' and notificationChannels are for admins; the user "
            "already holds COST_MAX_THRESHOLDS_PER_USER (default 20) thresholds"
        ),
    ),
    tags=_TAGS,
)

UPDATE_THRESHOLD = RouteDoc(
    method="PUT",
    path=c.PATH_COST_THRESHOLDS,
    handler=CostEndpoints.update_threshold,
    operation_id="updateCostThreshold",
    summary="Change a threshold (the fields given); enabled=false retires it",
    request=s.ThresholdUpdateRequest,
    replies=_write(
        {200: Reply("the threshold as changed", s.ThresholdResponse)},
        forbidden="forbidden: the threshold was set by an admin, or notificationChannels (admins only)",
        not_found="not_found: no such threshold, or not yours",
    ),
    tags=_TAGS,
)

GET_ALERTS = RouteDoc(
    method="GET",
    path=c.PATH_COST_ALERTS,
    handler=CostEndpoints.get_alerts,
    operation_id="getCostAlerts",
    summary="Raised alerts, newest first, with their deliveries (yours; an admin: everyone's)",
    params=(
        Param("severity", "query", "only this severity", {"type": "string", "enum": ["info", "warning", "critical"]}),
        Param("acknowledged", "query", "only acknowledged (true) or open (false) ones", {"type": "boolean"}),
        FROM,
        TO,
        LIMIT,
        USER_ID,
    ),
    replies=_read({200: Reply("the alerts, with counts over all that match", s.AlertsResponse)}),
    tags=_TAGS,
)

CREATE_ALERT = RouteDoc(
    method="POST",
    path=c.PATH_COST_ALERTS,
    handler=CostEndpoints.create_alert,
    operation_id="createCostAlert",
    summary="Raise an alert now (admin): stored and delivered to the channels like any other",
    request=s.AlertCreateRequest,
    replies=_write({201: Reply("raised", s.AlertResponse)}, forbidden="forbidden: admins only"),
    tags=_TAGS,
)

UPDATE_ALERT = RouteDoc(
    method="PUT",
    path=c.PATH_COST_ALERTS,
    handler=CostEndpoints.update_alert,
    operation_id="updateCostAlert",
    summary="Acknowledge (or reopen) an alert",
    request=s.AlertUpdateRequest,
    replies=_write(
        {200: Reply("the alert as changed", s.AlertResponse)},
        forbidden="forbidden",
        not_found="not_found: no such alert, or not yours",
    ),
    tags=_TAGS,
)

COST_FORECAST = RouteDoc(
    method="GET",
    path=c.PATH_COST_FORECAST,
    handler=CostEndpoints.get_forecast,
    operation_id="getCostForecast",
    summary="The next 7 and 30 days' cost from the daily history, with the method and a 95% interval",
    description=(
        "weekly_season (21 days of history or more): least squares on the day and the weekday, with each "
        "weekday's effect and its interval (weeklyEffect); linear_trend: least squares over the days since the "
        "first cost in the lookback (at least 7), the interval its prediction interval for the window's sum; "
        "daily_mean with fewer days; no_history without."
    ),
    params=(LOOKBACK, USER_ID),
    replies=_read({200: Reply("the forecast", s.ForecastResponse)}),
    tags=_TAGS,
)

COST_OPTIMIZATION = RouteDoc(
    method="GET",
    path=c.PATH_COST_OPTIMIZATION,
    handler=CostEndpoints.get_optimization,
    operation_id="getCostOptimization",
    summary="Recommendations from the recorded history: savings of moving a workflow type, models without a price",
    params=(LOOKBACK, USER_ID),
    replies=_read({200: Reply("the recommendations, largest saving first", s.OptimizationResponse)}),
    tags=_TAGS,
)

GET_ALERT_DESTINATION = RouteDoc(
    method="GET",
    path=c.PATH_COST_ALERT_DESTINATION,
    handler=CostEndpoints.get_alert_destination,
    operation_id="getCostAlertDestination",
    summary="Where your own alerts go besides the alert list: your e-mail address and your webhook",
    params=(USER_ID,),
    replies=_read({200: Reply("the destination (nulls: not set)", s.AlertDestinationResponse)}),
    tags=_TAGS,
)

PUT_ALERT_DESTINATION = RouteDoc(
    method="PUT",
    path=c.PATH_COST_ALERT_DESTINATION,
    handler=CostEndpoints.put_alert_destination,
    operation_id="putCostAlertDestination",
    summary="Set where your own alerts go (replaced: a destination left out is removed)",
    description=(
        "Every alert of your scope (your thresholds', an admin's on your spend, the default budget's) is also "
        "e-mailed to `email` (when the service sends e-mail) and POSTed to `webhookUrl` as JSON, signed with "
        "X-Signature like the workflow webhooks. The URL must be https without credentials."
    ),
    request=s.AlertDestinationRequest,
    replies=_write(
        {200: Reply("the destination as stored", s.AlertDestinationResponse)},
        forbidden="forbidden: userId names another user and the token is not an admin's",
    ),
    tags=_TAGS,
)

APPLY_POLICY = RouteDoc(
    method="POST",
    path=c.PATH_COST_POLICY_APPLY,
    handler=CostEndpoints.apply_policy,
    operation_id="applyCostRecommendation",
    summary="Apply a switch_provider recommendation (admin): its workflow type is routed to its provider and model",
    description=(
        "The recommendation must still be recommended over `lookbackDays` (default 30). The policy replaces the "
        "one in force for its workflow type, is stored, and reaches every router replica as routing.policy; "
        "new workflows of that type go to its provider (unless forceProvider, a downgrade budget or an open "
        "circuit says otherwise), asking for its model."
    ),
    request=s.PolicyApplyRequest,
    replies=_write(
        {
            201: Reply("applied: the policy in force", s.PolicyResponse),
            409: Reply("conflict: no such recommendation, or no longer recommended", ErrorResponse),
        },
        forbidden="forbidden: admins only",
    ),
    tags=_TAGS,
)

REVERT_POLICY = RouteDoc(
    method="POST",
    path=c.PATH_COST_POLICY_REVERT,
    handler=CostEndpoints.revert_policy,
    operation_id="revertCostPolicy",
    summary="Revert a routing policy (admin): its workflow type is routed by the default rules again",
    request=s.PolicyRevertRequest,
    replies=_write(
        {200: Reply("the policy, reverted", s.PolicyResponse)},
        forbidden="forbidden: admins only",
        not_found="not_found: no such policy",
    ),
    tags=_TAGS,
)

GET_POLICIES = RouteDoc(
    method="GET",
    path=c.PATH_COST_POLICIES,
    handler=CostEndpoints.get_policies,
    operation_id="getCostPolicies",
    summary="The routing policies: those in force, then the reverted ones, with the set's version",
    replies=_read({200: Reply("the policies", s.PoliciesResponse)}),
    tags=_TAGS,
)

_AUTO = (
    "While the budget rule's period spend is at least triggerPercent of its limit, each workflow type's best "
    "switch_provider recommendation saving at least minSavingPercent is applied as its routing policy "
    "(appliedBy auto-optimize, automatic true); below it — the next period — or switched off, those policies "
    "are reverted. An admin's own policy for a type is never replaced. Evaluated every COST_SWEEP_INTERVAL_S "
    "and when switched."
)

GET_AUTO_OPTIMIZE = RouteDoc(
    method="GET",
    path=c.PATH_COST_OPTIMIZE,
    handler=CostEndpoints.get_auto_optimize,
    operation_id="getAutoOptimize",
    summary="The automatic optimisation mode, whether it acts now, and the routing policies in force (admin)",
    description=_AUTO,
    replies=_read({200: Reply("the mode and the policies in force", s.AutoOptimizeResponse)}),
    tags=_TAGS,
)

SET_AUTO_OPTIMIZE = RouteDoc(
    method="POST",
    path=c.PATH_COST_OPTIMIZE,
    handler=CostEndpoints.set_auto_optimize,
    operation_id="setAutoOptimize",
    summary="Switch the automatic optimisation mode on within a budget rule, or off (admin)",
    description=_AUTO + " thresholdId must name a global threshold with an action (a budget rule).",
    request=s.AutoOptimizeRequest,
    replies=_write({200: Reply("the mode as set", s.AutoOptimizeResponse)}, forbidden="forbidden: admins only"),
    tags=_TAGS,
)

_EXPERIMENT = Param("experimentId", "path", "the experiment", {"type": "string", "format": "uuid"}, True)
_ADMIN_TAGS = ("admin",)
_ADMINS = "forbidden: admins only"

CREATE_EXPERIMENT = RouteDoc(
    method="POST",
    path=c.PATH_EXPERIMENTS,
    handler=CostEndpoints.create_experiment,
    operation_id="createExperiment",
    summary="Start an A/B experiment (admin): a workflow type's new workflows split between arms",
    description=(
        "Each arm names a provider, a model (known to the price table for that provider; omitted: the worker's "
        "own) and a prompt variant (default, concise, playful), with a weight: its share of the workflows is "
        "weight / the weights' total. bucketBy user keeps each user's workflows in one arm, workflow assigns "
        "each workflow on its own; either way a stable hash, the same on every router. forceProvider and a "
        "downgrade budget still win over an arm. One experiment runs per workflow type."
    ),
    request=s.ExperimentCreateRequest,
    replies=_write(
        {
            201: Reply("started", s.ExperimentResponse),
            409: Reply("conflict: an experiment of that workflow type is running", ErrorResponse),
        },
        forbidden=_ADMINS,
    ),
    tags=_ADMIN_TAGS,
)

GET_EXPERIMENTS = RouteDoc(
    method="GET",
    path=c.PATH_EXPERIMENTS,
    handler=CostEndpoints.get_experiments,
    operation_id="getExperiments",
    summary="The experiments (admin): running first, then stopped",
    replies=_read({200: Reply("the experiments", s.ExperimentsResponse)}),
    tags=_ADMIN_TAGS,
)

GET_EXPERIMENT_RESULTS = RouteDoc(
    method="GET",
    path=c.PATH_EXPERIMENT_RESULTS,
    handler=CostEndpoints.get_experiment_results,
    operation_id="getExperimentResults",
    summary="An experiment's results per arm from the recorded history, with 95% intervals (admin)",
    description=(
        "Per arm, over its ended workflows: cost (total, and per workflow with the interval of the mean), "
        "latency p50/p95 (workflow duration, distribution-free intervals), failure, fallback (a call on another "
        "provider than the arm's) and compliance rates (Wilson intervals) and the compliance violations "
        "(drafts rewritten for the content gate, and compliance failures)."
    ),
    params=(_EXPERIMENT,),
    replies=_read({200: Reply("the results", s.ExperimentResultsResponse)}, not_found="not_found: no such experiment"),
    tags=_ADMIN_TAGS,
)

STOP_EXPERIMENT = RouteDoc(
    method="POST",
    path=c.PATH_EXPERIMENT_STOP,
    handler=CostEndpoints.stop_experiment,
    operation_id="stopExperiment",
    summary="Stop an experiment (admin); promoteArm makes that arm's provider and model the type's routing policy",
    params=(_EXPERIMENT,),
    request=s.ExperimentStopRequest,
    replies=_write(
        {
            200: Reply("stopped", s.ExperimentResponse),
            409: Reply("conflict: stopped already (without promoting that arm)", ErrorResponse),
        },
        forbidden=_ADMINS,
        not_found="not_found: no such experiment",
    ),
    tags=_ADMIN_TAGS,
)

COST_ROUTES: tuple[RouteDoc, ...] = (
    COST_STATS,
    COST_BREAKDOWN,
    CAMPAIGN_COSTS,
    GET_THRESHOLDS,
    CREATE_THRESHOLD,
    UPDATE_THRESHOLD,
    GET_ALERTS,
    CREATE_ALERT,
    UPDATE_ALERT,
    COST_FORECAST,
    COST_OPTIMIZATION,
    GET_ALERT_DESTINATION,
    PUT_ALERT_DESTINATION,
    APPLY_POLICY,
    REVERT_POLICY,
    GET_POLICIES,
    GET_AUTO_OPTIMIZE,
    SET_AUTO_OPTIMIZE,
    CREATE_EXPERIMENT,
    GET_EXPERIMENTS,
    GET_EXPERIMENT_RESULTS,
    STOP_EXPERIMENT,
)
