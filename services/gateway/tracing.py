"""A SERVER span per HTTP request, continuing the caller's trace (`traceparent`), the access log, and the
request's duration on http.server.request.duration (services/gateway/metrics.py).

Why not opentelemetry-instrumentation-aiohttp-server: its middleware works only after
`AioHttpServerInstrumentor().instrument()`, which replaces `aiohttp.web.Application` process-wide (in the
embedded mode every aiohttp app — health servers, simulators — would be traced), and used alone it fails on
every request (its module globals are unset). Extracting the context ourselves is a few lines.

Every workflow must have a trace id (it is in the 202 answer and in every log line), so when there is
neither an incoming trace nor a tracer provider to start one (OTEL_SDK_DISABLED), the request gets a fresh,
unsampled trace context: the bus then propagates it to every service like any other.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from libs.telemetry import get_logger
from libs.telemetry.constants import INSTRUMENTATION_NAME, LOG_USER_ID
from services.gateway.metrics import get_gateway_metrics

log = get_logger(__name__)
_tracer = trace.get_tracer(INSTRUMENTATION_NAME)

# The caller's user id, which the guard (services/gateway/guard.py) stores once the token is valid.
USER_ID = web.RequestKey("user_id", str)

# HTTP semantic conventions (stable): https://opentelemetry.io/docs/specs/semconv/http/http-spans/
ATTR_METHOD = "http.request.method"
ATTR_ROUTE = "http.route"
ATTR_STATUS = "http.response.status_code"
ATTR_PATH = "url.path"
ATTR_SCHEME = "url.scheme"
ATTR_USER_AGENT = "user_agent.original"


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def _fresh_context() -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(
            trace_id=random.getrandbits(128) or 1,
            span_id=random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
        )
    )


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the request inside a SERVER span whose parent is the incoming trace context, if any."""
    route = _route(request)
    attributes = {ATTR_METHOD: request.method, ATTR_PATH: request.path, ATTR_SCHEME: request.scheme}
    if route:
        attributes[ATTR_ROUTE] = route
    if user_agent := request.headers.get("User-Agent"):
        attributes[ATTR_USER_AGENT] = user_agent
    started = time.perf_counter()
    status = 500
    with ExitStack() as stack:
        span = stack.enter_context(
            _tracer.start_as_current_span(
                f"{request.method} {route}" if route else request.method,
                context=propagate.extract(request.headers),
                kind=SpanKind.SERVER,
                attributes=attributes,
            )
        )
        if not span.get_span_context().is_valid:
            stack.enter_context(trace.use_span(_fresh_context(), end_on_exit=False))
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            span.set_attribute(ATTR_STATUS, status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            duration_s = time.perf_counter() - started
            get_gateway_metrics().record_request(
                method=request.method, route=route, status=status, duration_s=duration_s
            )
            log.info(
                "http.request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(duration_s * 1000, 2),
                **{LOG_USER_ID: request.get(USER_ID)},
            )
