"""Traces, metrics and structured logs for every service: one trace per workflow, across every bus hop.

setup_telemetry("router")            # providers, exporters, propagators from OTEL_* (once per process)
configure_logging("router")          # structlog JSON with trace_id/span_id/workflow_id, redacted
with producer_span(...): publish()   # the bus, on publish: PRODUCER span, context into headers
with consumer_span(...): handle()    # the bus, on consume: CONSUMER span, child of the producer's
get_x = cached_instruments(X.from_meter)  # metric instruments, owned where they are recorded
shutdown_telemetry()                 # flush on the way out
"""

from libs.telemetry.constants import CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, REDACTED_KEYS
from libs.telemetry.errors import TelemetryConfigError, TelemetryError
from libs.telemetry.instrumentation import register_secret_url
from libs.telemetry.logging import configure_logging, get_logger, redact
from libs.telemetry.messaging import consumer_span, current_trace_id, producer_span, trace_headers, workflow_span
from libs.telemetry.metrics import cached_instruments
from libs.telemetry.setup import (
    build_propagator,
    configure_propagators,
    setup_telemetry,
    shutdown_telemetry,
)

__all__ = [
    "CIRCUIT_CLOSED",
    "CIRCUIT_HALF_OPEN",
    "CIRCUIT_OPEN",
    "REDACTED_KEYS",
    "TelemetryConfigError",
    "TelemetryError",
    "build_propagator",
    "cached_instruments",
    "configure_logging",
    "configure_propagators",
    "consumer_span",
    "current_trace_id",
    "get_logger",
    "producer_span",
    "redact",
    "register_secret_url",
    "setup_telemetry",
    "shutdown_telemetry",
    "trace_headers",
    "workflow_span",
]
