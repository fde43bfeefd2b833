"""Every name, default and key libs.telemetry uses, in one place.

Environment variable names are the OpenTelemetry standard ones (see
https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/) plus our LOG_FORMAT and
LOG_LEVEL. Span attribute keys follow the messaging semantic conventions
(https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/); they are spelled out here rather
than imported from opentelemetry-semantic-conventions because that package's messaging names live in its
`_incubating` namespace and are not a pinned dependency of ours.
"""

from typing import Final

# --- Instrumentation scope: the name our tracer and meter report themselves under.
INSTRUMENTATION_NAME: Final = "hybrid_orchestrator"

# --- Standard OTEL_* environment variables we read ourselves (the SDK and the OTLP exporters read the
# rest — OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL, OTEL_TRACES_SAMPLER, ...).
ENV_SDK_DISABLED: Final = "OTEL_SDK_DISABLED"
ENV_SERVICE_NAME: Final = "OTEL_SERVICE_NAME"
ENV_PROPAGATORS: Final = "OTEL_PROPAGATORS"
ENV_TRACES_EXPORTER: Final = "OTEL_TRACES_EXPORTER"
ENV_METRICS_EXPORTER: Final = "OTEL_METRICS_EXPORTER"
ENV_OTLP_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTLP_TRACES_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_OTLP_METRICS_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
ENV_OTLP_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_OTLP_TRACES_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
ENV_OTLP_METRICS_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"

# The specification's default; "xray" (AWS X-Ray, X-Amzn-Trace-Id) comes from the
# opentelemetry-propagator-aws-xray entry point. "none" disables propagation.
DEFAULT_PROPAGATORS: Final = "tracecontext,baggage"
PROPAGATOR_ENTRY_POINT_GROUP: Final = "opentelemetry_propagator"
PROPAGATOR_NONE: Final = "none"

# Exporter names accepted in OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER, and the OTLP protocols of
# OTEL_EXPORTER_OTLP_*PROTOCOL (the specification's names; http/json has no Python exporter, so it and any
# other value are a configuration error).
EXPORTER_OTLP: Final = "otlp"
EXPORTER_CONSOLE: Final = "console"
EXPORTER_NONE: Final = "none"
OTLP_HTTP_PROTOBUF: Final = "http/protobuf"
OTLP_GRPC: Final = "grpc"
SUPPORTED_OTLP_PROTOCOLS: Final = frozenset({OTLP_HTTP_PROTOBUF, OTLP_GRPC})

# --- Logging.
ENV_LOG_FORMAT: Final = "LOG_FORMAT"  # json | console
ENV_LOG_LEVEL: Final = "LOG_LEVEL"  # DEBUG | INFO | WARNING | ERROR | CRITICAL
DEFAULT_LOG_FORMAT: Final = "json"
DEFAULT_LOG_LEVEL: Final = "INFO"
REDACTED: Final = "[REDACTED]"

# Keys whose values never reach a log line, compared case-insensitively with "-" read as "_". A key
# matches when it equals one of these or ends with "_" + one of these ("openai_api_key", "access_token",
# "system_prompt", "generated_text"); "prompt_tokens" or "token_count" do not match, so usage numbers stay.
# "text", "content", "prompt" and "message_text" are here because fan messages and LLM prompts are
# personal content, not because they are secrets.
REDACTED_KEYS: Final = frozenset(
    {
        "api_key",
        "apikey",
        "authorization",
        "token",
        "secret",
        "password",
        "text",
        "content",
        "prompt",
        "message_text",
    }
)

# --- Span attribute keys (messaging semantic conventions, then ours).
ATTR_MESSAGING_SYSTEM: Final = "messaging.system"
ATTR_MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
ATTR_MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
ATTR_MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
ATTR_MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
ATTR_MESSAGING_CONVERSATION_ID: Final = "messaging.message.conversation_id"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_WORKFLOW_ID: Final = "workflow.id"
# The workflow's owner (the JWT's `sub`, the platform account): the general semantic conventions' user.id.
# On spans and in logs (LOG_USER_ID), never on metrics.
ATTR_USER_ID: Final = "user.id"
LOG_USER_ID: Final = "user_id"
ATTR_MESSAGE_TYPE: Final = "message.type"
# Which of our seven services published or consumed: in the embedded mode they share one process and so
# one Resource, and this attribute is what tells them apart.
ATTR_SERVICE_COMPONENT: Final = "service.component"

OPERATION_SEND: Final = "send"
OPERATION_PROCESS: Final = "process"

# --- Metric instrument names: the original plan's (WorkflowExecutions, WorkflowDuration, ...) in snake case.
# Instrument names are case-insensitive in OpenTelemetry and the SDK exports them lower-cased, so the plan's
# CamelCase would reach the backend as "workflowexecutions"; snake case keeps the word boundaries.
METRIC_WORKFLOW_EXECUTIONS: Final = "workflow_executions"
METRIC_WORKFLOW_DURATION: Final = "workflow_duration"
METRIC_WORKFLOW_COST: Final = "workflow_cost"
METRIC_MESSAGES_PROCESSED: Final = "messages_processed"
METRIC_MESSAGE_ERRORS: Final = "message_errors"
METRIC_MESSAGE_PROCESSING_TIME: Final = "message_processing_time"
METRIC_RATE_LIMITER_THROTTLES: Final = "rate_limiter_throttles"
METRIC_CIRCUIT_BREAKER_STATE: Final = "circuit_breaker_state"
METRIC_BUS_DEAD_LETTERS: Final = "bus_dead_letters"  # messages in each service's dead-letter queue

# Metric attribute keys. Keep them low-cardinality: never a workflow, user or message id.
METRIC_ATTR_PROVIDER: Final = "provider"
METRIC_ATTR_SUCCESS: Final = "success"
METRIC_ATTR_QUEUE: Final = "queue"
METRIC_ATTR_SCOPE: Final = "scope"
METRIC_ATTR_SERVICE: Final = "service"

# circuit_breaker_state gauge values: a number per state so dashboards can plot and alert on it (> 0 is bad).
CIRCUIT_CLOSED: Final = 0
CIRCUIT_HALF_OPEN: Final = 1
CIRCUIT_OPEN: Final = 2

# Histogram buckets. The SDK's defaults stop at 10 s; an LLM call may take 45 s (Azure timeout) and a
# workflow several of them plus a rate-limit slot delay, so durations go up to 15 minutes.
DURATION_BUCKETS_MS: Final = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    900_000,
)
# Per-workflow cost in USD: from a sub-cent message (OpenAI $0.002/1K tokens) to a large planning job.
COST_BUCKETS_USD: Final = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

# Client spans' http.url / url.full (instrumentation.span_url): hosts whose URL path is itself a secret (a
# capability URL: whoever knows it may post), redacted whole. Any other URL given to `register_secret_url`
# (SLACK_WEBHOOK_URL on another host, say) is redacted too, and every query value is.
SECRET_PATH_HOSTS: Final = frozenset({"hooks.slack.com", "discord.com", "discordapp.com", "hooks.zapier.com"})
URL_REDACTED: Final = "REDACTED"  # in a URL: no brackets to percent-encode
