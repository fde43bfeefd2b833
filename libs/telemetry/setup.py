"""Process-wide OpenTelemetry setup: tracer and meter providers, exporters and propagators.

Call `setup_telemetry(service_name)` once at start-up (later calls are no-ops, so the seven services of the
embedded mode can each call it), and `shutdown_telemetry()` on the way out so buffered spans and a last
metric collection are exported. Everything is driven by the standard OTEL_* environment variables:

- OTEL_SDK_DISABLED=true: no SDK providers at all (the API's no-op tracer still carries an incoming trace
  context through to outgoing messages), propagators are still configured.
- OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: comma list of otlp | console | none. When unset, "otlp" if
  OTEL_EXPORTER_OTLP_ENDPOINT (or the per-signal endpoint) is set and "none" otherwise — deliberately not
  the specification's unconditional "otlp", so the embedded mode without a collector does not log a
  connection error every five seconds.
- OTEL_EXPORTER_OTLP_PROTOCOL (or the per-signal OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / _METRICS_PROTOCOL):
  http/protobuf (the default) or grpc — an ADOT or OpenTelemetry collector's port 4318 or 4317.
- OTEL_EXPORTER_OTLP_*: read by the OTLP exporters themselves (endpoint, headers, timeout, ...).
- OTEL_TRACES_SAMPLER: the SDK's sampler, wrapped so that a CLIENT span without a parent is never recorded
  (`ChildClientSpansOnly`): a database query, Redis read or SQS poll outside any trace is a periodic sweep
  or refresh, and would otherwise be a one-span trace every second per service.
- OTEL_PROPAGATORS: default "tracecontext,baggage"; "xray" adds X-Amzn-Trace-Id. The API builds its global
  propagator when `opentelemetry.propagate` is first imported, which may be before the environment is
  final, so `setup_telemetry` rebuilds it from the variable's current value (`configure_propagators`).

Tests: the global tracer provider can be set only once per process, so instead of installing their own,
tests pass `span_exporter=InMemorySpanExporter()` (and/or `metric_reader=InMemoryMetricReader()`). Those
are attached to the process's providers on every call — even when telemetry was already set up by an
earlier test — through a synchronous `SimpleSpanProcessor`, so finished spans are visible at once.
"""

import os
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points

from opentelemetry import metrics, propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import _get_from_env_or_default as sampler_from_env

from libs.telemetry import constants as c
from libs.telemetry.errors import TelemetryConfigError
from libs.telemetry.sampling import ChildClientSpansOnly


@dataclass
class _State:
    """What this module installed, so shutdown touches only what it owns."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    # False when another component (e.g. `opentelemetry-instrument`) had installed an SDK provider first:
    # we then add to it but leave its shutdown to its owner.
    owns_tracer_provider: bool = False
    owns_meter_provider: bool = False
    shut_down: bool = False


_lock = threading.Lock()
_state: _State | None = None


def setup_telemetry(
    service_name: str,
    *,
    service_version: str = "0.1.0",
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> bool:
    """Install tracer and meter providers and propagators for this process, once; True when this call did
    (so only the installer shuts them down: a service embedded in a test must not end the test's tracing).

    `service_name` becomes the Resource's service.name unless OTEL_SERVICE_NAME overrides it.
    `span_exporter` / `metric_reader` are extra sinks (tests); they are attached even when telemetry was
    already set up. Raises TelemetryConfigError for a bad OTEL_* value.
    """
    global _state
    with _lock:
        installed = _state is None
        if _state is None:
            _state = _install(service_name, service_version)
        if span_exporter is not None and _state.tracer_provider is not None:
            _state.tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        if metric_reader is not None and _state.meter_provider is not None:
            _state.meter_provider.add_metric_reader(metric_reader)
        return installed


def shutdown_telemetry() -> None:
    """Flush buffered spans and metrics and shut our providers down (final for this process).

    Blocking — up to the exporters' timeouts when the collector is unreachable — so from a running event
    loop call it as `await asyncio.to_thread(shutdown_telemetry)`. A second call does nothing.
    """
    with _lock:
        state = _state
        if state is None or state.shut_down:
            return
        state.shut_down = True
    if state.tracer_provider is not None:
        state.tracer_provider.force_flush()
        if state.owns_tracer_provider:
            state.tracer_provider.shutdown()
    if state.meter_provider is not None:
        state.meter_provider.force_flush()
        if state.owns_meter_provider:
            state.meter_provider.shutdown()


def build_propagator(spec: str) -> TextMapPropagator:
    """A composite propagator from an OTEL_PROPAGATORS-style comma list of entry-point names."""
    names = [name.strip().lower() for name in spec.split(",") if name.strip()]
    if c.PROPAGATOR_NONE in names:
        return CompositePropagator([])
    propagators: list[TextMapPropagator] = []
    for name in dict.fromkeys(names):  # dedupe, keep order: later propagators win on extract
        found = entry_points(group=c.PROPAGATOR_ENTRY_POINT_GROUP, name=name)
        if not found:
            raise TelemetryConfigError(
                f"{c.ENV_PROPAGATORS}: unknown propagator {name!r} (not installed or misspelled)"
            )
        try:
            propagator = next(iter(found)).load()()
        except Exception as exc:
            raise TelemetryConfigError(f"{c.ENV_PROPAGATORS}: propagator {name!r} failed to load") from exc
        if not isinstance(propagator, TextMapPropagator):
            raise TelemetryConfigError(f"{c.ENV_PROPAGATORS}: {name!r} is not a TextMapPropagator")
        propagators.append(propagator)
    return CompositePropagator(propagators)


def configure_propagators(spec: str | None = None) -> None:
    """Set the global propagator from `spec`, or from OTEL_PROPAGATORS (default tracecontext,baggage)."""
    propagate.set_global_textmap(build_propagator(spec if spec is not None else _propagators_from_env()))


def _propagators_from_env() -> str:
    return os.environ.get(c.ENV_PROPAGATORS) or c.DEFAULT_PROPAGATORS


def _install(service_name: str, service_version: str) -> _State:
    # Validate everything before installing anything, so a bad value leaves the process untouched.
    propagator = build_propagator(_propagators_from_env())
    disabled = _env_flag(c.ENV_SDK_DISABLED)
    span_exporters = [] if disabled else _span_exporters()
    metric_exporters = [] if disabled else _metric_exporters()
    propagate.set_global_textmap(propagator)
    if disabled:
        return _State()
    resource = Resource.create(
        {
            SERVICE_NAME: os.environ.get(c.ENV_SERVICE_NAME) or service_name,
            SERVICE_VERSION: service_version,
        }
    )

    state = _State()
    existing_tracer_provider = trace.get_tracer_provider()
    if isinstance(existing_tracer_provider, TracerProvider):
        state.tracer_provider = existing_tracer_provider
    else:
        state.tracer_provider = TracerProvider(resource=resource, sampler=ChildClientSpansOnly(sampler_from_env()))
        for span_exporter in span_exporters:
            state.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(state.tracer_provider)
        state.owns_tracer_provider = True

    existing_meter_provider = metrics.get_meter_provider()
    if isinstance(existing_meter_provider, MeterProvider):
        state.meter_provider = existing_meter_provider
    else:
        state.meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[PeriodicExportingMetricReader(exporter) for exporter in metric_exporters],
        )
        metrics.set_meter_provider(state.meter_provider)
        state.owns_meter_provider = True
    return state


def _span_exporters() -> list[SpanExporter]:
    names = _exporter_names(c.ENV_TRACES_EXPORTER, c.ENV_OTLP_TRACES_ENDPOINT)
    exporters: list[SpanExporter] = []
    for name in names:
        if name == c.EXPORTER_OTLP:
            grpc = _otlp_protocol(c.ENV_OTLP_TRACES_PROTOCOL) == c.OTLP_GRPC
            exporters.append(GrpcSpanExporter() if grpc else OTLPSpanExporter())
        elif name == c.EXPORTER_CONSOLE:
            exporters.append(ConsoleSpanExporter())
    return exporters


def _metric_exporters() -> list[MetricExporter]:
    names = _exporter_names(c.ENV_METRICS_EXPORTER, c.ENV_OTLP_METRICS_ENDPOINT)
    exporters: list[MetricExporter] = []
    for name in names:
        if name == c.EXPORTER_OTLP:
            grpc = _otlp_protocol(c.ENV_OTLP_METRICS_PROTOCOL) == c.OTLP_GRPC
            exporters.append(GrpcMetricExporter() if grpc else OTLPMetricExporter())
        elif name == c.EXPORTER_CONSOLE:
            exporters.append(ConsoleMetricExporter())
    return exporters


def _exporter_names(variable: str, signal_endpoint_variable: str) -> list[str]:
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        endpoint_set = bool(os.environ.get(c.ENV_OTLP_ENDPOINT) or os.environ.get(signal_endpoint_variable))
        return [c.EXPORTER_OTLP] if endpoint_set else []
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    known = {c.EXPORTER_OTLP, c.EXPORTER_CONSOLE, c.EXPORTER_NONE}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise TelemetryConfigError(f"{variable}: unknown exporter(s) {unknown}; expected otlp, console or none")
    if c.EXPORTER_NONE in names:
        return []
    return list(dict.fromkeys(names))


def _otlp_protocol(signal_variable: str) -> str:
    """The signal's OTLP protocol: its own variable, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."""
    raw = os.environ.get(signal_variable) or os.environ.get(c.ENV_OTLP_PROTOCOL) or c.OTLP_HTTP_PROTOBUF
    protocol = raw.strip().lower()
    if protocol not in c.SUPPORTED_OTLP_PROTOCOLS:
        supported = " or ".join(sorted(c.SUPPORTED_OTLP_PROTOCOLS))
        raise TelemetryConfigError(f"OTLP protocol {raw!r} is not supported; use {supported}")
    return protocol


def _env_flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() == "true"
