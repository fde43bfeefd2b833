"""Paths, limits and defaults of the gateway, in one place."""

from __future__ import annotations

import uuid
from typing import Final

# --- Routes (the original plan's names, docs/deviations.md).
PATH_CAMPAIGN: Final = "/api/v2/campaigns/hybrid"
PATH_STATUS: Final = "/api/v2/campaigns/status"
PATH_DELIVERIES: Final = "/api/v2/campaigns/deliveries"
PATH_WORKFLOWS: Final = "/api/v2/campaigns"  # the list of workflows (listing.py)
PATH_CANCEL: Final = "/api/v2/campaigns/cancel"
PATH_RETRY: Final = "/api/v2/campaigns/retry"
PATH_HEALTH: Final = "/api/health/hybrid-orchestrator"
PATH_OPENAPI: Final = "/api/openapi.json"
PATH_FEATURE_FLAGS: Final = "/api/admin/feature-flags"
PATH_DEAD_LETTERS: Final = "/api/admin/dead-letters"
PATH_ACCOUNT_WINDOW: Final = "/api/admin/accounts/{accountId}/window"  # the rate-limiter's window (window.py)
PATH_DEAD_LETTERS_REPLAY: Final = "/api/admin/dead-letters/replay"

# --- Settings defaults (GATEWAY_* environment variables; see config.py).
DEFAULT_PORT: Final = 8080
DEFAULT_HOST: Final = "0.0.0.0"  # the gateway is the public entry point
DEFAULT_WAIT_TIMEOUT_S: Final = 60.0
DEFAULT_REQUEST_TIMEOUT_S: Final = 5.0
# GATEWAY_HEADER_TIMEOUT_S: a connection whose request head is not in after this long is closed (server.py),
# and an idle keep-alive connection too: a slowloris holds no connection for minutes.
DEFAULT_HEADER_TIMEOUT_S: Final = 15.0
# GATEWAY_BODY_TIMEOUT_S: a body not in whole after this long answers 408 (a 4 MiB campaign body needs
# ~1 Mbit/s; a client trickling a body holds no handler for minutes).
DEFAULT_BODY_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
# A campaign's body carries its recipients: 10,000 fans with a few personalisation fields each fit.
DEFAULT_CAMPAIGN_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
DEFAULT_CAMPAIGN_MAX_RECIPIENTS: Final = 10_000
# HS256 keys shorter than the hash output are brute-forceable (RFC 7518 §3.2); PyJWT warns below this too.
MIN_JWT_SECRET_BYTES: Final = 32
JWT_ALGORITHM: Final = "HS256"
# Tolerated clock skew between the token issuer and us when checking `exp`/`nbf`.
JWT_LEEWAY_S: Final = 10
ADMIN_ROLE: Final = "admin"
# Verified tokens remembered (LRU) so a client's repeated token is not decoded again: ~100 bytes each.
TOKEN_CACHE_SIZE: Final = 10_000
# `make_token`'s default lifetime: long enough for a dev session, short enough not to live forever.
DEFAULT_TOKEN_TTL_S: Final = 24 * 3600
# GATEWAY_JWT_MAX_LIFETIME_S default: a token whose exp - iat is longer is refused (a leaked one must expire).
DEFAULT_MAX_TOKEN_LIFETIME_S: Final = 24 * 3600
# Tokens of an identity provider (GATEWAY_JWKS_URL): only these asymmetric algorithms, each with its key type.
JWKS_ALGORITHMS: Final = frozenset({"RS256", "ES256"})
# The key set is read again this often, and on a token naming an unknown key (a rotation) — but at most once
# per JWKS_MIN_REFRESH_S, so tokens with made-up kids cannot make the gateway hammer the provider.
DEFAULT_JWKS_REFRESH_S: Final = 300.0
DEFAULT_JWKS_MIN_REFRESH_S: Final = 10.0
JWKS_FETCH_TIMEOUT_S: Final = 5.0
# A key set larger than this is not a key set.
JWKS_MAX_BYTES: Final = 256 * 1024

# --- Per-user request limit: a token bucket per user id, in Redis when REDIS_URL is set (shared by
# every replica), else in this process. Every authenticated request takes one token.
DEFAULT_RATE_LIMIT_RPS: Final = 10.0
DEFAULT_RATE_LIMIT_BURST: Final = 50
RATE_LIMIT_PREFIX: Final = "ho:gw:rl:"

# --- Idempotency-Key: workflow id = uuid5(IDEMPOTENCY_NAMESPACE, f"{len(user)}:{user}:{key}"), so a retried
# POST of the same user and key maps to the same workflow (the router answers the existing one). Never
# change this value or that name: it would break idempotency of retries across a deployment.
IDEMPOTENCY_NAMESPACE: Final = uuid.UUID("6f1d3c2e-4b7a-5e8f-9a0b-1c2d3e4f5a6b")
IDEMPOTENCY_KEY_MAX_LENGTH: Final = 255

# --- ?wait=true is told the workflow's end and its cost (contracts.messages.Notify: the router and the
# cost-tracker send them to this instance's reply queue). Not told the end within TOLD_END_WAIT_S, it asks the
# router to answer when the workflow is terminal, holding at most WAIT_HOLD_S per ask (then asks again); a
# router answering early and not terminal is asked again after the POLL_* backoff. Not told a settled cost
# within TOLD_COST_WAIT_S of the end, it asks the cost-tracker (COST_SETTLE_MAX_S below).
TOLD_END_WAIT_S: Final = 5.0
TOLD_COST_WAIT_S: Final = 1.0
WAIT_HOLD_S: Final = 5.0
POLL_INITIAL_S: Final = 0.05
POLL_FACTOR: Final = 1.5
POLL_MAX_S: Final = 0.5

# --- Request body limits beyond the byte size (a body within 64 KiB can still carry silly lists).
MAX_PLATFORMS: Final = 16
MAX_DATA_BYTES: Final = 64 * 1024
MAX_ID_LENGTH: Final = 128
# What a consumer cannot store: PostgreSQL's text and jsonb refuse \u0000, and a workflow the
# router cannot store was lost after its 202. Every string of a body (keys too) is refused with a C0 control
# character other than tab, line feed and carriage return, and a body nested deeper than MAX_JSON_DEPTH (the
# encoder gave up at ~250 levels: a 500). TEXT_PATTERN states the first rule in the API document.
CONTROL_CHARACTERS: Final = "\x00-\x08\x0b\x0c\x0e-\x1f"
TEXT_PATTERN: Final = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f]*$"
MAX_JSON_DEPTH: Final = 32
# Dates of the cost endpoints (from, to): a written year outside these is refused (0001-01-01T00:00+01:00 is
# before datetime's minimum in UTC, 9999-12-31 as `to` ends after its maximum).
COST_MIN_YEAR: Final = 2000
COST_MAX_YEAR: Final = 2099
# A recipient or account id becomes a path segment of the platform's URL: letters, digits, "_", "-" and
# ".", never only dots ("." and ".." would rewrite the path the platform token is sent to).
PLATFORM_ID_PATTERN: Final = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
# A token's `accounts` claim: the creator accounts a user may send from (more entries are ignored).
MAX_TOKEN_ACCOUNTS: Final = 1000

# Personalisation: a recipient's `vars` (name, last purchase, ...) go into that recipient's prompt.
MAX_VARS: Final = 20
MAX_VAR_NAME_LENGTH: Final = 64
MAX_VAR_VALUE_LENGTH: Final = 500
MAX_CALLBACK_URL_LENGTH: Final = 2048
# The callback URLs the API document promises to accept: https, a DNS name or IPv4 host, an optional port
# (0-65535), then printable ASCII (percent-encode the rest). libs.callbacks.callback_url_problem is checked
# too; the embedded mode (WEBHOOK_ALLOW_LOCAL_HTTP) also accepts http to localhost, outside this pattern.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
CALLBACK_URL_PATTERN: Final = rf"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:{_PORT})?([/?#][!-~]*)?$"
# Duplicate recipients are refused, naming at most this many of them.
MAX_DUPLICATES_NAMED: Final = 10
# GET deliveries: page size.
DELIVERIES_DEFAULT_LIMIT: Final = 100
DELIVERIES_MAX_LIMIT: Final = 1000
# GET the workflow list: page size (the router's WorkflowListQuery bounds it to 500 too), and a cursor's length
# (WorkflowListQuery.cursor's bound: the router's cursors are ~70 characters).
WORKFLOWS_DEFAULT_LIMIT: Final = 50
WORKFLOWS_MAX_LIMIT: Final = 500
WORKFLOWS_CURSOR_MAX_LENGTH: Final = 200
# --- Health: a failing check whose name's last dot-separated segment is one of these ("bus", "router",
# "router.database") makes the system unhealthy (503); any other failing check (providers, redis, workers,
# "router.orchestrator") only degrades it. The router is critical because without it nothing progresses and
# no status can be read.
CRITICAL_CHECK_SEGMENTS: Final = frozenset({"bus", "database", "router"})
# The original plan's check names: each is also answered as one entry summing up every service's check of
# that name ("router.database", "cost-tracker.database", a remote service's own "database", ...).
SUMMARY_CHECKS: Final = ("database", "orchestrator", "azureProvider", "openaiProvider")
HEALTH_CHECK_TIMEOUT_S: Final = 2.0

# --- Cost endpoints: the cost-tracker answers them over the bus (cost.query).
PATH_COST_STATS: Final = "/api/v2/costs/stats"
PATH_COST_BREAKDOWN: Final = "/api/v2/costs/breakdown"
PATH_CAMPAIGN_COSTS: Final = "/api/v2/campaigns/costs"
PATH_COST_THRESHOLDS: Final = "/api/v2/costs/thresholds"
PATH_COST_ALERTS: Final = "/api/v2/costs/alerts"
PATH_COST_FORECAST: Final = "/api/v2/costs/forecast"
PATH_COST_OPTIMIZATION: Final = "/api/v2/costs/optimization"
PATH_COST_ALERT_DESTINATION: Final = "/api/v2/costs/alert-destination"
PATH_COST_POLICY_APPLY: Final = "/api/v2/costs/optimization/apply"
PATH_COST_POLICY_REVERT: Final = "/api/v2/costs/optimization/revert"
PATH_COST_POLICIES: Final = "/api/v2/costs/optimization/policies"
PATH_COST_OPTIMIZE: Final = "/api/v2/costs/optimize"
PATH_EXPERIMENTS: Final = "/api/admin/experiments"
PATH_EXPERIMENT_RESULTS: Final = "/api/admin/experiments/{experimentId}/results"
PATH_EXPERIMENT_STOP: Final = "/api/admin/experiments/{experimentId}/stop"
# ?wait=true answers the cost-tracker's figure for the workflow. Its last usage record travels beside the
# router's result, so the gateway re-asks (POLL_* backoff) until the cost-tracker says the workflow is
# settled — for at most this long after the workflow ended; then it answers the figure recorded so far.
COST_SETTLE_MAX_S: Final = 2.0
# GET status of a finished workflow asks the cost-tracker once for its figure and waits at most this long
# (a status must not hang on the cost service: past it, or when that is down, `cost` stays null).
COST_STATUS_TIMEOUT_S: Final = 1.0
