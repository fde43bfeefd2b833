"""Trace context: an incoming traceparent is continued, the answer's traceId is that trace, and the bus
carries it to the router."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from libs.telemetry import setup_telemetry
from services.gateway import tracing
from tests.gateway.conftest import PLAN, Harness

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    setup_telemetry("gateway-tests", span_exporter=exporter)
    return exporter


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


class TestTraceparent:
    async def test_answer_trace_id_is_the_incoming_trace(self, gw: Harness, spans: InMemorySpanExporter) -> None:
        """With a traceparent, the 202's traceId is its trace id, and the router's handler runs in that trace."""
        answer = await gw.client.post(PLAN, headers={"traceparent": TRACEPARENT})
        assert answer.body["data"]["traceId"] == TRACE_ID
        assert gw.router.trace_ids == [TRACE_ID]
        assert gw.router.requests[0].payload.trace_id == TRACE_ID  # type: ignore[attr-defined]

    async def test_server_span_is_a_child_of_the_caller(self, gw: Harness, spans: InMemorySpanExporter) -> None:
        """The gateway's SERVER span has the caller's span as parent and the route as its name."""
        await gw.client.post(PLAN, headers={"traceparent": TRACEPARENT})
        [server] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
        assert server.name == "POST /api/v2/campaigns/hybrid"
        assert server.parent is not None
        assert trace.format_span_id(server.parent.span_id) == PARENT_SPAN_ID
        assert trace.format_trace_id(server.context.trace_id) == TRACE_ID
        assert server.attributes is not None and server.attributes["http.response.status_code"] == 202

    async def test_the_callers_user_id_is_on_the_request_and_message_spans(
        self, gw: Harness, spans: InMemorySpanExporter
    ) -> None:
        """An authenticated request's SERVER span and the PRODUCER span of the message it publishes carry the
        token's user id as user.id; its access log line has it as user_id."""
        with capture_logs() as logs:
            await gw.client.post(PLAN, user="creator-9")
        assert [e.get("user_id") for e in logs if e["event"] == "http.request"] == ["creator-9"]
        kinds = {s.kind: s for s in spans.get_finished_spans() if s.kind in (SpanKind.SERVER, SpanKind.PRODUCER)}
        assert {kind: (s.attributes or {}).get("user.id") for kind, s in kinds.items()} == {
            SpanKind.SERVER: "creator-9",
            SpanKind.PRODUCER: "creator-9",
        }

    async def test_without_traceparent_a_new_trace_reaches_the_router(
        self, gw: Harness, spans: InMemorySpanExporter
    ) -> None:
        """No incoming trace: the gateway starts one, answers its id, and the router runs in it."""
        answer = await gw.client.post(PLAN)
        trace_id = answer.body["data"]["traceId"]
        assert trace_id != TRACE_ID
        assert gw.router.trace_ids == [trace_id]

    async def test_without_a_tracer_the_workflow_still_gets_a_trace(
        self, gw: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no SDK (a no-op tracer) and no traceparent, a fresh trace id is made and propagated."""
        monkeypatch.setattr(tracing, "_tracer", trace.NoOpTracer())
        answer = await gw.client.post(PLAN)
        trace_id = answer.body["data"]["traceId"]
        assert len(trace_id) == 32 and int(trace_id, 16) != 0
        assert gw.router.trace_ids == [trace_id]

    async def test_without_a_tracer_the_incoming_trace_is_kept(
        self, gw: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no SDK, an incoming traceparent still decides the trace id."""
        monkeypatch.setattr(tracing, "_tracer", trace.NoOpTracer())
        answer = await gw.client.post(PLAN, headers={"traceparent": TRACEPARENT})
        assert answer.body["data"]["traceId"] == TRACE_ID
        assert gw.router.trace_ids == [TRACE_ID]

    async def test_invalid_traceparent_starts_a_new_trace(self, gw: Harness) -> None:
        """A malformed traceparent is ignored (W3C), not an error."""
        answer = await gw.client.post(PLAN, headers={"traceparent": "00-zzzz-01"})
        assert answer.status == 202
        assert len(answer.body["data"]["traceId"]) == 32
