"""Every key prefix, limit and default of libs.llm, in one place."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from contracts.enums import Provider

# --- Idempotency cache (a redelivered generation.requested must not bill the provider twice:
# docs/decisions/0012-workers-idempotency-cache.md).
# One key per request envelope: `ho:gen:{envelope id}`. It holds either a lease marker (a call is in flight)
# or the outgoing envelopes of the finished handling, newline-separated (encoded envelopes are compact JSON,
# which never contains a raw newline, and always starts with "{", which a lease marker never does).
CACHE_KEY_PREFIX: Final = "ho:gen:"
CACHE_TTL_S: Final = 24 * 3600.0
CACHE_SEPARATOR: Final = b"\n"
LEASE_PREFIX: Final = b"~lease:"
# The in-process cache (no REDIS_URL, the embedded mode): an entry is ~2 KB, so this bounds it near 20 MB.
# Least recently used entries go first.
MEMORY_CACHE_MAX_ENTRIES: Final = 10_000
# A Redis that stops answering must fail the handler (it is redelivered later), never hang it.
REDIS_SOCKET_TIMEOUT_S: Final = 2.0

# Default upper bound of one provider call (AZURE_TIMEOUT_S, OPENAI_TIMEOUT_S): the router sends it with each
# generation request and the workers apply it to their client, so both read the default from here.
DEFAULT_AZURE_TIMEOUT_S: Final = 45.0
DEFAULT_OPENAI_TIMEOUT_S: Final = 30.0

# --- In-flight duplicates. A lease outlives the longest call it guards by this margin, so it can only
# expire when its holder died. A second delivery of the same request (another replica, after a broker
# connection loss) polls for the first one's result this often, until the lease ends.
LEASE_MARGIN_S: Final = 5.0
IN_FLIGHT_POLL_S: Final = 0.2
# While the kill switch is off a generation request is not called: it goes back on the bus this much later
# (not yet a delivery of its own, so it never reaches the dead-letter queue for having waited).
HOLD_RECHECK_S: Final = 1.0

# --- Provider calls.
CHAT_COMPLETIONS_PATH: Final = "/chat/completions"  # under the client's base URL (Azure: the deployment's)
# The completion limit's parameter name: Azure API version 2024-06-01 knows only `max_tokens`; OpenAI's
# newer models accept only `max_completion_tokens` (the same limit).
TOKEN_LIMIT_PARAM: Final = MappingProxyType({Provider.AZURE: "max_tokens", Provider.OPENAI: "max_completion_tokens"})

# --- The LLM simulator (libs.simulators), used only when a provider's URL is not configured.
SIMULATOR_API_KEY: Final = "simulator"  # the simulator only checks that a credential is present
SIMULATOR_OPENAI_PATH: Final = "/v1"  # OpenAI's base URL path; Azure's endpoint is the bare URL

# --- Prompts: user-supplied intent data is bounded before it reaches a prompt (cost and prompt size).
MAX_DETAIL_VALUE_CHARS: Final = 2_000
MAX_DETAILS_CHARS: Final = 8_000

# --- The content gate (libs.content) on a text for the platform: one regeneration after a violation, if the
# request's budget still holds at least this much time for it; else the request fails at once.
MIN_REGENERATION_S: Final = 1.0
# The id of the usage.recorded of a first draft the gate refused (derived from the request's id, like every
# child); the final call's usage keeps the plain derivation, so a request without a redraft is unchanged.
DRAFT_USAGE_KEY: Final = "usage.recorded/draft-1"

# --- The error message of a 2xx answer that cannot be used (the router and the status endpoint show it).
INVALID_RESPONSE_MESSAGE: Final = "provider returned an invalid response"

# --- Metrics (instrumentation scope shared with libs.telemetry; attribute values stay low-cardinality).
METRIC_LLM_CALLS: Final = "llm_calls"
METRIC_LLM_CALL_DURATION: Final = "llm_call_duration"
METRIC_LLM_TOKENS: Final = "llm_tokens"
METRIC_ATTR_OUTCOME: Final = "outcome"  # "ok" or an ErrorType value
METRIC_ATTR_MODEL: Final = "model"  # the model (OpenAI) or deployment (Azure) asked for
METRIC_ATTR_TOKEN_KIND: Final = "kind"  # "prompt" | "completion"
METRIC_CONTENT_VIOLATIONS: Final = "content_violations"
METRIC_ATTR_RULE: Final = "rule"  # a content rule's name (the rules file's, few)
METRIC_ATTR_ACTION: Final = "action"  # what followed: one of the VIOLATION_* below
VIOLATION_REGENERATE: Final = "regenerate"  # a first draft refused, written again
VIOLATION_FAIL: Final = "fail"  # the second draft refused too (or no time left): compliance_violation
VIOLATION_REJECT: Final = "reject"  # content_validation: the content itself breaks a rule, REJECTED

# --- The GenAI semantic conventions' client metrics and attributes (gen-ai-metrics, development status).
METRIC_GENAI_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_GENAI_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GENAI_OPERATION_NAME: Final = "gen_ai.operation.name"
GENAI_OPERATION_CHAT: Final = "chat"
GENAI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GENAI_PROVIDERS: Final = MappingProxyType({Provider.AZURE.value: "azure.ai.openai", Provider.OPENAI.value: "openai"})
GENAI_REQUEST_MODEL: Final = "gen_ai.request.model"
GENAI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GENAI_TOKEN_TYPE: Final = "gen_ai.token.type"
GENAI_TOKEN_INPUT: Final = "input"
GENAI_TOKEN_OUTPUT: Final = "output"
# The conventions' advisory bucket boundaries.
GENAI_DURATION_BUCKETS_S: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
GENAI_TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
