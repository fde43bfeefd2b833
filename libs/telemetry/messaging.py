"""PRODUCER and CONSUMER spans for every bus hop, and trace context in message headers.

The bus wraps each publish in `producer_span` (which injects the trace context into the outgoing
transport headers) and each handler call in `consumer_span` (which extracts it again), so that one
workflow is one trace across all services: the consumer's span is a child of the producer's, and it stays
current for the whole handler — whatever the handler logs or publishes belongs to it.

Span names and attributes follow the messaging semantic conventions ("send {destination}" /
"process {destination}", messaging.*), plus workflow.id, message.type and service.component.
Headers are whatever the global propagator writes: W3C traceparent/tracestate, baggage, and
X-Amzn-Trace-Id when OTEL_PROPAGATORS includes xray (see `libs.telemetry.setup`).
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from libs.telemetry import constants as c

# A ProxyTracer: valid before `setup_telemetry` runs, and it follows the provider installed later.
_tracer = trace.get_tracer(c.INSTRUMENTATION_NAME)


class _HeaderGetter(Getter[Mapping[str, str]]):
    """Reads headers by exact name first, then case-insensitively.

    Transports differ in what they do to header case (HTTP-ish layers lower-case them, AMQP and SQS keep
    them), and the propagators ask for "traceparent" and "X-Amzn-Trace-Id" verbatim.
    """

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lowered), None)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


_header_getter = _HeaderGetter()


@contextmanager
def producer_span(
    *,
    system: str,
    destination: str,
    message_type: str,
    message_id: str,
    workflow_id: str | None,
    component: str | None,
    headers: dict[str, str],
    correlation_id: str | None = None,
    operation_name: str = c.OPERATION_SEND,
    user_id: str | None = None,
) -> Iterator[Span]:
    """A PRODUCER span, child of the current context, whose context is injected into `headers`.

    `headers` is mutated before the block runs, so publish it inside the block. `operation_name` is the
    system-specific name of the operation (e.g. "publish" for RabbitMQ); the type is always "send".
    """
    attributes = _attributes(
        system=system,
        destination=destination,
        operation_type=c.OPERATION_SEND,
        operation_name=operation_name,
        message_type=message_type,
        message_id=message_id,
        workflow_id=workflow_id,
        component=component,
        correlation_id=correlation_id,
        user_id=user_id,
    )
    name = f"{c.OPERATION_SEND} {destination}"
    yield from _span_scope(name, SpanKind.PRODUCER, context.get_current(), attributes, inject_into=headers)


@contextmanager
def consumer_span(
    *,
    system: str,
    destination: str,
    message_type: str,
    message_id: str,
    workflow_id: str | None,
    component: str | None,
    headers: Mapping[str, str],
    correlation_id: str | None = None,
    operation_name: str = c.OPERATION_PROCESS,
    user_id: str | None = None,
) -> Iterator[Span]:
    """A CONSUMER span whose parent is the context found in `headers`, current for the whole block.

    Without trace headers the span starts a new trace (never the consumer loop's ambient context).
    Baggage from the headers is current inside the block too. An exception leaving the block is recorded,
    sets ERROR status and is re-raised.
    """
    attributes = _attributes(
        system=system,
        destination=destination,
        operation_type=c.OPERATION_PROCESS,
        operation_name=operation_name,
        message_type=message_type,
        message_id=message_id,
        workflow_id=workflow_id,
        component=component,
        correlation_id=correlation_id,
        user_id=user_id,
    )
    # Extracted into a fresh Context (the default), which becomes the current one inside the block: the
    # parent span and the baggage it carried, and nothing of the consumer loop's own context.
    parent = propagate.extract(headers, getter=_header_getter)
    yield from _span_scope(f"{c.OPERATION_PROCESS} {destination}", SpanKind.CONSUMER, parent, attributes)


@contextmanager
def workflow_span(
    name: str, *, trace_id: str | None, workflow_id: str, component: str, user_id: str | None = None
) -> Iterator[Span]:
    """An INTERNAL span for work on a workflow that no message started (e.g. the router's deadline sweep),
    current for the block: in the workflow's trace when its `trace_id` (32 hex digits) is known.

    The span that started the trace is not stored, so the parent is a placeholder in the same trace (span id
    = the trace id's low 64 bits); tracing backends show this span in the workflow's trace under a parent
    they did not receive. Messages published inside the block carry this trace on.
    """
    attributes: dict[str, AttributeValue] = {c.ATTR_WORKFLOW_ID: workflow_id, c.ATTR_SERVICE_COMPONENT: component}
    if user_id is not None:
        attributes[c.ATTR_USER_ID] = user_id
    parent = context.Context()
    try:
        trace_int = int(trace_id or "", 16)
    except ValueError:
        trace_int = 0
    if 0 < trace_int < 1 << 128 and trace_int & ((1 << 64) - 1):
        placeholder = trace.SpanContext(trace_int, trace_int & ((1 << 64) - 1), is_remote=True,
                                        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))  # fmt: skip
        parent = trace.set_span_in_context(trace.NonRecordingSpan(placeholder), parent)
    yield from _span_scope(name, SpanKind.INTERNAL, parent, attributes)


def current_trace_id() -> str | None:
    """The current span's trace id as 32 lower-case hex digits, or None outside a valid span."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def trace_headers() -> dict[str, str]:
    """The current context injected into a fresh header dict (e.g. for an outgoing HTTP request)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def _span_scope(
    name: str,
    kind: SpanKind,
    parent: context.Context,
    attributes: dict[str, AttributeValue],
    *,
    inject_into: dict[str, str] | None = None,
) -> Iterator[Span]:
    # Not `start_as_current_span`: it would put the span into the *current* context, dropping the baggage
    # of an extracted parent; here the new current context is `parent` plus the span, in one attach.
    span = _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
    scope = trace.set_span_in_context(span, parent)
    if inject_into is not None:
        propagate.inject(inject_into, context=scope)
    token = context.attach(scope)
    try:
        yield span
    except Exception as exc:
        # Only Exception: a CancelledError (graceful shutdown) is not a failed message — it will be
        # redelivered — so its span ends with status UNSET.
        span.record_exception(exc)
        span.set_attribute(c.ATTR_ERROR_TYPE, f"{type(exc).__module__}.{type(exc).__qualname__}")
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        context.detach(token)
        span.end()


def _attributes(
    *,
    system: str,
    destination: str,
    operation_type: str,
    operation_name: str,
    message_type: str,
    message_id: str,
    workflow_id: str | None,
    component: str | None,
    correlation_id: str | None,
    user_id: str | None,
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        c.ATTR_MESSAGING_SYSTEM: system,
        c.ATTR_MESSAGING_DESTINATION_NAME: destination,
        c.ATTR_MESSAGING_OPERATION_TYPE: operation_type,
        c.ATTR_MESSAGING_OPERATION_NAME: operation_name,
        c.ATTR_MESSAGING_MESSAGE_ID: message_id,
        c.ATTR_MESSAGE_TYPE: message_type,
    }
    if workflow_id is not None:
        attributes[c.ATTR_WORKFLOW_ID] = workflow_id
    if component is not None:
        attributes[c.ATTR_SERVICE_COMPONENT] = component
    if correlation_id is not None:
        attributes[c.ATTR_MESSAGING_CONVERSATION_ID] = correlation_id
    if user_id is not None:
        attributes[c.ATTR_USER_ID] = user_id
    return attributes
