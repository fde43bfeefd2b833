"""libs.telemetry: messaging spans and header propagation, setup from OTEL_*, log processors, metrics."""

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog
from opentelemetry import baggage, context, metrics, trace
from opentelemetry.metrics import Meter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from libs.bus.metrics import BusMetrics
from libs.ratelimit.metrics import RateLimitMetrics
from libs.telemetry import (
    CIRCUIT_CLOSED,
    CIRCUIT_OPEN,
    TelemetryConfigError,
    build_propagator,
    configure_logging,
    configure_propagators,
    consumer_span,
    current_trace_id,
    get_logger,
    producer_span,
    redact,
    setup_telemetry,
    trace_headers,
    workflow_span,
)
from libs.telemetry.constants import DEFAULT_PROPAGATORS, REDACTED
from libs.telemetry.metrics import cached_instruments
from services.cost_tracker.metrics import CostMetrics
from services.router.metrics import RouterMetrics

REPO_ROOT = Path(__file__).resolve().parent.parent
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJ1c2VyLTEiLCJyb2xlIjoiYWRtaW4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
OPENAI_KEY = "sk-proj-AbCdEf0123456789abcdefGHIJ"


@pytest.fixture(scope="module")
def span_exporter() -> InMemorySpanExporter:
    """The process's telemetry with an in-memory exporter attached (works whoever set it up first)."""
    exporter = InMemorySpanExporter()
    setup_telemetry("telemetry-tests", span_exporter=exporter)
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    configure_propagators(DEFAULT_PROPAGATORS)
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()


@pytest.fixture
def xray() -> Iterator[None]:
    configure_propagators("tracecontext,baggage,xray")
    yield
    configure_propagators(DEFAULT_PROPAGATORS)


def _message(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "system": "rabbitmq",
        "destination": "generation.requested",
        "message_type": "generation.requested",
        "message_id": "msg-1",
        "workflow_id": "wf-1",
        "component": "router",
    }
    return fields | overrides


def _by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == kind]
    return span


class TestMessagingSpans:
    def test_consumer_span_is_child_of_producer_span_through_headers(self, spans: InMemorySpanExporter) -> None:
        """The consumer span's parent is the producer span, found only through the transport headers."""
        headers: dict[str, str] = {}
        with producer_span(**_message(), headers=headers, correlation_id="corr-9"):
            pass
        assert "traceparent" in headers
        with consumer_span(**_message(component="azure-worker"), headers=dict(headers)):
            pass

        producer = _by_kind(spans, SpanKind.PRODUCER)
        consumer = _by_kind(spans, SpanKind.CONSUMER)
        assert consumer.parent is not None
        assert consumer.parent.span_id == producer.context.span_id
        assert consumer.context.trace_id == producer.context.trace_id
        assert producer.name == "send generation.requested"
        assert consumer.name == "process generation.requested"
        assert dict(producer.attributes or {}) == {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": "generation.requested",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.message.id": "msg-1",
            "messaging.message.conversation_id": "corr-9",
            "message.type": "generation.requested",
            "workflow.id": "wf-1",
            "service.component": "router",
        }
        assert consumer.attributes is not None
        assert consumer.attributes["messaging.operation.type"] == "process"
        assert consumer.attributes["service.component"] == "azure-worker"

    def test_producer_span_is_child_of_current_span(self, spans: InMemorySpanExporter) -> None:
        """A publish inside a handler continues the handler's trace."""
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("handler") as outer, producer_span(**_message(), headers={}):
            pass
        producer = _by_kind(spans, SpanKind.PRODUCER)
        assert producer.parent is not None
        assert producer.parent.span_id == outer.get_span_context().span_id

    def test_workflow_span_joins_the_workflows_trace(self, spans: InMemorySpanExporter) -> None:
        """Work no message started (the deadline sweep) is traced in the workflow's trace, and what it
        publishes carries that trace on."""
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        with (
            workflow_span("router.deadline", trace_id=trace_id, workflow_id="wf-1", component="router"),
            producer_span(**_message(), headers={}),
        ):
            pass
        internal = _by_kind(spans, SpanKind.INTERNAL)
        assert trace.format_trace_id(internal.context.trace_id) == trace_id
        assert internal.parent is not None and internal.parent.trace_id == internal.context.trace_id
        assert internal.attributes is not None and internal.attributes["workflow.id"] == "wf-1"
        producer = _by_kind(spans, SpanKind.PRODUCER)
        assert producer.parent is not None and producer.parent.span_id == internal.context.span_id

    def test_workflow_span_without_a_usable_trace_id_starts_a_trace(self, spans: InMemorySpanExporter) -> None:
        """A missing or garbled stored trace id still gives a span (a new trace), never an error."""
        for stored in (None, "not-hex", "0" * 32):
            with workflow_span("router.deadline", trace_id=stored, workflow_id="wf-1", component="router"):
                pass
        assert [s.parent for s in spans.get_finished_spans()] == [None, None, None]

    def test_consumer_without_trace_headers_starts_a_new_trace(self, spans: InMemorySpanExporter) -> None:
        """No headers: a root span, not a child of whatever context the consumer loop happens to have."""
        tracer = trace.get_tracer("test")
        with (
            tracer.start_as_current_span("consumer-loop") as loop_span,
            consumer_span(**_message(workflow_id=None, component=None), headers={}),
        ):
            pass
        consumer = _by_kind(spans, SpanKind.CONSUMER)
        assert consumer.parent is None
        assert consumer.context.trace_id != loop_span.get_span_context().trace_id
        assert consumer.attributes is not None
        assert "workflow.id" not in consumer.attributes
        assert "service.component" not in consumer.attributes

    def test_handler_runs_inside_consumer_span(self, spans: InMemorySpanExporter) -> None:
        """Inside the block the consumer span is current: trace id, outgoing headers and baggage agree."""
        headers: dict[str, str] = {}
        token = context.attach(baggage.set_baggage("tenant", "creator-7"))
        try:
            with producer_span(**_message(), headers=headers) as producer:
                trace_id = trace.format_trace_id(producer.get_span_context().trace_id)
        finally:
            context.detach(token)
        assert current_trace_id() is None

        with consumer_span(**_message(), headers=headers) as consumer:
            assert current_trace_id() == trace_id
            assert trace.get_current_span() is consumer
            span_id = trace.format_span_id(consumer.get_span_context().span_id)
            flags = f"{consumer.get_span_context().trace_flags:02x}"
            assert trace_headers()["traceparent"] == f"00-{trace_id}-{span_id}-{flags}"
            assert baggage.get_baggage("tenant") == "creator-7"
        assert current_trace_id() is None
        assert baggage.get_baggage("tenant") is None

    async def test_consumer_span_stays_current_across_awaits(self, spans: InMemorySpanExporter) -> None:
        """Concurrent async handlers each keep their own consumer span across awaits."""
        headers_a: dict[str, str] = {}
        headers_b: dict[str, str] = {}
        with producer_span(**_message(message_id="a"), headers=headers_a):
            pass
        with producer_span(**_message(message_id="b"), headers=headers_b):
            pass

        async def handle(headers: dict[str, str]) -> tuple[str | None, str]:
            with consumer_span(**_message(), headers=headers):
                await asyncio.sleep(0.01)
                return current_trace_id(), headers["traceparent"].split("-")[1]

        results = await asyncio.gather(handle(headers_a), handle(headers_b))
        assert [seen for seen, _ in results] == [expected for _, expected in results]
        assert results[0][0] != results[1][0]

    def test_exception_in_consumer_sets_error_status_and_reraises(self, spans: InMemorySpanExporter) -> None:
        """A handler exception is recorded on the consumer span, marks it ERROR and propagates."""
        with pytest.raises(KeyError), consumer_span(**_message(), headers={}):
            raise KeyError("missing")
        consumer = _by_kind(spans, SpanKind.CONSUMER)
        assert consumer.status.status_code is StatusCode.ERROR
        assert consumer.status.description is not None
        assert consumer.status.description.startswith("KeyError")
        assert consumer.attributes is not None
        assert consumer.attributes["error.type"] == "builtins.KeyError"
        assert [event.name for event in consumer.events] == ["exception"]

    def test_successful_consumer_is_not_error(self, spans: InMemorySpanExporter) -> None:
        """A handler that returns leaves the span's status unset and records no exception."""
        with consumer_span(**_message(), headers={}):
            pass
        consumer = _by_kind(spans, SpanKind.CONSUMER)
        assert consumer.status.status_code is StatusCode.UNSET
        assert consumer.events == ()

    def test_cancellation_is_not_an_error(self, spans: InMemorySpanExporter) -> None:
        """A cancelled handler (graceful shutdown, redelivered later) does not mark its span ERROR."""
        with pytest.raises(asyncio.CancelledError), consumer_span(**_message(), headers={}):
            raise asyncio.CancelledError
        assert _by_kind(spans, SpanKind.CONSUMER).status.status_code is StatusCode.UNSET


class TestPropagators:
    def test_xray_header_is_injected(self, spans: InMemorySpanExporter, xray: None) -> None:
        """With xray configured, the producer writes X-Amzn-Trace-Id next to traceparent."""
        headers: dict[str, str] = {}
        with producer_span(**_message(), headers=headers) as producer:
            span_context = producer.get_span_context()
        trace_id = trace.format_trace_id(span_context.trace_id)
        span_id = trace.format_span_id(span_context.span_id)
        assert headers["X-Amzn-Trace-Id"] == f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled=1"
        assert headers["traceparent"] == f"00-{trace_id}-{span_id}-{span_context.trace_flags:02x}"

    def test_extraction_from_xray_header_alone(self, spans: InMemorySpanExporter, xray: None) -> None:
        """A message carrying only X-Amzn-Trace-Id (e.g. from an X-Ray-only producer) still links up."""
        headers: dict[str, str] = {}
        with producer_span(**_message(), headers=headers):
            pass
        xray_only = {"x-amzn-trace-id": headers["X-Amzn-Trace-Id"]}  # and lower-cased by some hop
        with consumer_span(**_message(), headers=xray_only):
            pass
        producer = _by_kind(spans, SpanKind.PRODUCER)
        consumer = _by_kind(spans, SpanKind.CONSUMER)
        assert consumer.parent is not None
        assert consumer.parent.span_id == producer.context.span_id
        assert consumer.context.trace_id == producer.context.trace_id

    def test_no_xray_header_by_default(self, spans: InMemorySpanExporter) -> None:
        """The default propagators write W3C headers only."""
        headers: dict[str, str] = {}
        with producer_span(**_message(), headers=headers):
            pass
        assert "traceparent" in headers
        assert "X-Amzn-Trace-Id" not in headers

    def test_propagators_are_read_from_the_environment(
        self, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """configure_propagators() reads OTEL_PROPAGATORS as it is now, not as it was at import time."""
        monkeypatch.setenv("OTEL_PROPAGATORS", "xray")
        headers: dict[str, str] = {}
        try:
            configure_propagators()
            with producer_span(**_message(), headers=headers):
                pass
        finally:
            configure_propagators(DEFAULT_PROPAGATORS)
        assert set(headers) == {"X-Amzn-Trace-Id"}

    def test_unknown_propagator_is_a_config_error(self) -> None:
        """A misspelled propagator fails at start-up rather than silently breaking traces."""
        with pytest.raises(TelemetryConfigError, match="xrya"):
            build_propagator("tracecontext,xrya")

    def test_none_disables_propagation(self) -> None:
        """OTEL_PROPAGATORS=none writes no headers."""
        assert build_propagator("tracecontext, none").fields == set()


class _Collector(BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP receiver: stores request bodies by path, answers 200."""

    received: ClassVar[dict[str, list[bytes]]] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run_probe(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter: the global providers can be installed once per process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


PROBE = """
from libs.bus.metrics import get_bus_metrics
from libs.telemetry import producer_span, setup_telemetry, shutdown_telemetry
setup_telemetry("probe-service", service_version="9.9.9")
setup_telemetry("ignored-second-call")
with producer_span(system="memory", destination="orders", message_type="t", message_id="m1",
                   workflow_id="w1", component="gateway", headers={}):
    pass
get_bus_metrics().record_message(queue="orders", duration_ms=2.0, failed=True)
shutdown_telemetry()
shutdown_telemetry()
print("done")
"""


class TestSetup:
    def test_setup_is_idempotent(self, span_exporter: InMemorySpanExporter) -> None:
        """A second setup_telemetry keeps the installed providers."""
        tracer_provider = trace.get_tracer_provider()
        meter_provider = metrics.get_meter_provider()
        setup_telemetry("another-service")
        assert trace.get_tracer_provider() is tracer_provider
        assert metrics.get_meter_provider() is meter_provider
        assert isinstance(tracer_provider, TracerProvider)
        assert isinstance(meter_provider, MeterProvider)

    def test_exports_traces_and_metrics_over_otlp_http_on_shutdown(self) -> None:
        """With OTEL_EXPORTER_OTLP_ENDPOINT set, spans and metrics reach the collector by shutdown."""
        _Collector.received = {}
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            result = _run_probe(PROBE, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
        finally:
            server.shutdown()
            server.server_close()
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "done"
        assert "called once" not in result.stderr  # the second shutdown_telemetry() did nothing

        traces = ExportTraceServiceRequest.FromString(_Collector.received["/v1/traces"][0])
        resource = {a.key: a.value.string_value for a in traces.resource_spans[0].resource.attributes}
        assert resource["service.name"] == "probe-service"
        assert resource["service.version"] == "9.9.9"
        (span,) = traces.resource_spans[0].scope_spans[0].spans
        assert span.name == "send orders"

        exported = ExportMetricsServiceRequest.FromString(_Collector.received["/v1/metrics"][-1])
        names = {
            metric.name
            for resource_metrics in exported.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }
        assert {"messages_processed", "message_errors", "message_processing_time"} <= names

    def test_console_exporter_and_sdk_disabled(self) -> None:
        """OTEL_TRACES_EXPORTER=console prints spans at shutdown; OTEL_SDK_DISABLED=true prints none."""
        enabled = _run_probe(PROBE, OTEL_TRACES_EXPORTER="console")
        disabled = _run_probe(PROBE, OTEL_TRACES_EXPORTER="console", OTEL_SDK_DISABLED="true")
        assert enabled.returncode == 0, enabled.stderr
        assert '"name": "send orders"' in enabled.stdout
        assert disabled.returncode == 0, disabled.stderr
        assert disabled.stdout.strip() == "done"

    def test_setup_reads_otel_propagators_set_after_the_api_was_imported(self) -> None:
        """setup_telemetry rebuilds the global propagator from OTEL_PROPAGATORS, so xray works however late."""
        code = """
import os
from opentelemetry import propagate, trace  # the API builds its global propagator from env here
os.environ["OTEL_PROPAGATORS"] = "tracecontext,xray"
from libs.telemetry import setup_telemetry, trace_headers
setup_telemetry("probe-service")
with trace.get_tracer("probe").start_as_current_span("s"):
    print(",".join(sorted(trace_headers())))
"""
        result = _run_probe(code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "X-Amzn-Trace-Id,traceparent"

    def test_unknown_exporter_is_a_config_error(self) -> None:
        """A misspelled OTEL_TRACES_EXPORTER or an OTLP protocol without a Python exporter fails setup loudly."""
        bad_name = _run_probe(PROBE, OTEL_TRACES_EXPORTER="zipkin")
        json_protocol = _run_probe(
            PROBE, OTEL_EXPORTER_OTLP_ENDPOINT="http://x:4318", OTEL_EXPORTER_OTLP_PROTOCOL="http/json"
        )
        assert "TelemetryConfigError" in bad_name.stderr
        assert "zipkin" in bad_name.stderr
        assert "TelemetryConfigError" in json_protocol.stderr and "http/json" in json_protocol.stderr


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Logging configured as in production (JSON) into a buffer; structlog and root logger restored."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    output = io.StringIO()
    configure_logging("router", json=True, level="INFO", stream=output, force=True)
    yield output
    structlog.reset_defaults()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def _events(output: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


class TestLogging:
    def test_redacts_sensitive_keys_at_any_depth(self, log_output: io.StringIO) -> None:
        """Keys like Authorization, *_api_key, prompt and text lose their values, however nested."""
        get_logger("t").info(
            "provider.call",
            request={
                "headers": {"Authorization": "opaque-credential", "X-Api-Key": "k1", "Accept": "json"},
                "messages": [{"role": "user", "content": "hello fan"}],
            },
            OPENAI_API_KEY="k2",
            prompt="write something",
            message_text="hi there",
            prompt_tokens=12,
            token_count=3,
        )
        (event,) = _events(log_output)
        assert event["request"] == {
            "headers": {"Authorization": REDACTED, "X-Api-Key": REDACTED, "Accept": "json"},
            "messages": [{"role": "user", "content": REDACTED}],
        }
        assert event["OPENAI_API_KEY"] == REDACTED
        assert event["prompt"] == REDACTED
        assert event["message_text"] == REDACTED
        assert event["prompt_tokens"] == 12
        assert event["token_count"] == 3

    def test_redacts_secret_looking_values_anywhere(self, log_output: io.StringIO) -> None:
        """Bearer tokens, sk- keys and JWTs are cut out of any string, in lists and dicts too."""
        get_logger("t").warning(
            "http.request",
            detail=f"sent bearer {JWT} to api.openai.com v1.2.3",
            attempts=[{"note": f"key={OPENAI_KEY}"}, ("tuple", f"jwt {JWT}")],
            url="https://api.openai.com/v1/chat/completions",
        )
        (event,) = _events(log_output)
        rendered = json.dumps(event)
        assert JWT not in rendered
        assert OPENAI_KEY not in rendered
        assert "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c" not in rendered
        assert event["detail"] == f"sent {REDACTED} to api.openai.com v1.2.3"
        assert event["attempts"] == [{"note": f"key={REDACTED}"}, ["tuple", f"jwt {REDACTED}"]]
        assert event["url"] == "https://api.openai.com/v1/chat/completions"

    def test_redact_leaves_ordinary_data_alone(self) -> None:
        """Words that merely resemble secrets ("risk-free", "task-123456789") are not touched."""
        value = {"note": "risk-free task-123456789 desk-sk", "count": 3, "ok": True}
        assert redact(value) == value

    def test_trace_and_span_ids_inside_a_span(self, log_output: io.StringIO, spans: InMemorySpanExporter) -> None:
        """Events logged inside a consumer span carry that span's trace_id and span_id."""
        log = get_logger("t")
        with consumer_span(**_message(), headers={}) as span:
            log.info("handler.started")
        log.info("outside")
        inside, outside = _events(log_output)
        assert inside["trace_id"] == trace.format_trace_id(span.get_span_context().trace_id)
        assert inside["span_id"] == trace.format_span_id(span.get_span_context().span_id)
        assert "trace_id" not in outside
        assert "span_id" not in outside

    def test_standard_fields_and_bound_context(self, log_output: io.StringIO) -> None:
        """Events carry service, level, logger, an ISO UTC timestamp and the bound workflow_id."""
        with structlog.contextvars.bound_contextvars(workflow_id="wf-42"):
            get_logger("libs.bus").info("message.handled", queue="q")
            with structlog.contextvars.bound_contextvars(service="cost-tracker"):
                get_logger().info("cost.recorded")
        get_logger().info("unbound")
        first, second, third = _events(log_output)
        assert first["event"] == "message.handled"
        assert first["level"] == "info"
        assert first["logger"] == "libs.bus"
        assert first["service"] == "router"
        assert first["workflow_id"] == "wf-42"
        assert first["timestamp"].endswith("Z")
        assert second["service"] == "cost-tracker"
        assert "workflow_id" not in third

    def test_level_filter(self, log_output: io.StringIO) -> None:
        """Below the configured level nothing is written."""
        get_logger().debug("noise")
        get_logger().info("kept")
        assert [event["event"] for event in _events(log_output)] == ["kept"]

    def test_stdlib_records_are_json_and_redacted(self, log_output: io.StringIO) -> None:
        """Third-party stdlib logging goes through the same processors and renderer."""
        logging.getLogger("aio_pika").warning("connecting with Bearer %s", "abc.def-ghi")
        (event,) = _events(log_output)
        assert event["event"] == f"connecting with {REDACTED}"
        assert event["logger"] == "aio_pika"
        assert event["level"] == "warning"
        assert event["service"] == "router"

    def test_exception_tracebacks_are_structured_without_locals(self, log_output: io.StringIO) -> None:
        """log.exception renders a structured traceback, and frame locals (where secrets live) are omitted."""
        api_key = OPENAI_KEY
        try:
            raise RuntimeError(f"auth failed for {api_key}")
        except RuntimeError:
            get_logger().exception("provider.failed")
        (event,) = _events(log_output)
        (exception,) = event["exception"]
        assert exception["exc_type"] == "RuntimeError"
        assert exception["exc_value"] == f"auth failed for {REDACTED}"
        assert all("locals" not in frame or not frame["locals"] for frame in exception["frames"])
        assert OPENAI_KEY not in json.dumps(event)

    def test_bad_level_and_format_are_config_errors(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unknown LOG_LEVEL or LOG_FORMAT fails configuration."""
        with pytest.raises(TelemetryConfigError, match="LOG_LEVEL"):
            configure_logging("x", level="LOUD", force=True)
        monkeypatch.setenv("LOG_FORMAT", "xml")
        with pytest.raises(TelemetryConfigError, match="LOG_FORMAT"):
            configure_logging("x", force=True)


class TestCachedInstruments:
    def test_instruments_are_built_once_on_first_use_whoever_asks(self) -> None:
        """cached_instruments: nothing is built until asked; then one set, however many threads ask at once."""
        built: list[object] = []

        def build(meter: Meter) -> object:
            built.append(meter)
            return object()

        get = cached_instruments(build)
        assert built == []
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: get(), range(32)))
        assert len(built) == 1 and all(answer is answers[0] for answer in answers)


class TestMetrics:
    """The instruments of their owners (the bus, the limiters, the router, the cost-tracker), on one meter."""

    @pytest.fixture
    def reader_and_meter(self) -> tuple[InMemoryMetricReader, Meter]:
        reader = InMemoryMetricReader()
        return reader, MeterProvider(metric_readers=[reader]).get_meter("test")

    @staticmethod
    def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
        data = reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: list(metric.data.data_points)
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }

    def test_workflow_and_message_instruments(self, reader_and_meter: tuple[InMemoryMetricReader, Meter]) -> None:
        """record_* helpers feed the workflow instruments with provider/success/queue attributes."""
        reader, meter = reader_and_meter
        router, bus = RouterMetrics.from_meter(meter), BusMetrics.from_meter(meter)
        router.record_workflow(provider="azure", success=True, duration_ms=800.0)
        router.record_workflow(provider="azure", success=False, duration_ms=45_000.0)
        CostMetrics.from_meter(meter).record_workflow_cost(provider="azure", cost_usd=Decimal("0.0042"))
        bus.record_message(queue="generation.requested", duration_ms=3.0, failed=False)
        bus.record_message(queue="generation.requested", duration_ms=5.0, failed=True)
        RateLimitMetrics.from_meter(meter).record_throttle(scope="account")
        points = self._points(reader)

        executions = {
            (p.attributes["provider"], p.attributes["success"]): p.value for p in points["workflow_executions"]
        }
        assert executions == {("azure", True): 1, ("azure", False): 1}
        (cost,) = points["workflow_cost"]
        assert cost.sum == pytest.approx(0.0042)
        assert sum(p.count for p in points["workflow_duration"]) == 2
        assert [p.value for p in points["messages_processed"]] == [2]
        assert [p.value for p in points["message_errors"]] == [1]
        (timing,) = points["message_processing_time"]
        assert (timing.count, timing.sum) == (2, 8.0)
        assert dict(timing.attributes) == {"queue": "generation.requested"}
        throttles = {p.attributes["scope"]: p.value for p in points["rate_limiter_throttles"]}
        assert throttles == {"account": 1, "account_hour": 0, "recipient": 0, "last_check": 0}  # each from the start

    def test_circuit_breaker_gauge_observes_registered_callbacks(
        self, reader_and_meter: tuple[InMemoryMetricReader, Meter]
    ) -> None:
        """Each registered callback's {provider: state} is observed at collection time."""
        reader, meter = reader_and_meter
        m = RouterMetrics.from_meter(meter)
        states = {"azure": CIRCUIT_CLOSED}
        m.register_circuit_state(lambda: states)
        m.register_circuit_state(lambda: {"openai": CIRCUIT_OPEN})
        states["azure"] = CIRCUIT_OPEN
        observed = {p.attributes["provider"]: p.value for p in self._points(reader)["circuit_breaker_state"]}
        assert observed == {"azure": CIRCUIT_OPEN, "openai": CIRCUIT_OPEN}
