"""Traces, finished: client spans only inside a trace, aiobotocore spans, the user id on spans and in logs,
and OTLP over gRPC."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
import structlog
from aiobotocore.session import get_session
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from contracts import Envelope, Message
from contracts.messages import WorkflowCompleted
from contracts.routing import COST_TRACKER
from libs.bus.memory import MemoryBus
from libs.telemetry.constants import ATTR_USER_ID
from libs.telemetry.instrumentation import instrument_libraries, uninstrument_libraries
from libs.telemetry.sampling import ChildClientSpansOnly
from tests.test_telemetry import PROBE, _run_probe

REGION = "us-east-1"


class TestSampler:
    def test_client_spans_are_recorded_only_inside_a_trace(self) -> None:
        """A root CLIENT span (a sweep's query) is dropped; a child CLIENT span and root spans of other kinds
        are recorded."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ChildClientSpansOnly(ALWAYS_ON), shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("SELECT overdue", kind=SpanKind.CLIENT) as root_client:
            assert not root_client.is_recording()
        with (
            tracer.start_as_current_span("POST /api", kind=SpanKind.SERVER),
            tracer.start_as_current_span("INSERT", kind=SpanKind.CLIENT),
        ):
            pass
        with tracer.start_as_current_span("send orders", kind=SpanKind.PRODUCER):
            pass
        assert sorted(s.name for s in exporter.get_finished_spans()) == ["INSERT", "POST /api", "send orders"]
        assert ChildClientSpansOnly(ALWAYS_ON).get_description() == "ChildClientSpansOnly{AlwaysOnSampler}"


@pytest.fixture
def instrumented(spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The libraries instrumented as a service process instruments them."""
    names = instrument_libraries()
    yield spans
    uninstrument_libraries(names)


class TestAiobotocore:
    async def test_aws_calls_get_client_spans_inside_a_trace_only(
        self, instrumented: InMemorySpanExporter, sqs_endpoint: str
    ) -> None:
        """An SQS call inside a trace is a CLIENT span (rpc.service SQS) under the caller's span; the same call
        outside any trace (a poll) records nothing."""
        name = f"spans-{uuid.uuid4().hex[:8]}"
        async with get_session().create_client("sqs", region_name=REGION, endpoint_url=sqs_endpoint) as sqs:
            url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
            await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
            assert instrumented.get_finished_spans() == ()
            with trace.get_tracer("t").start_as_current_span("handler") as parent:
                await sqs.send_message(QueueUrl=url, MessageBody="x")
        (call,) = [s for s in instrumented.get_finished_spans() if s.kind is SpanKind.CLIENT]
        attributes = dict(call.attributes or {})
        assert (call.name, attributes["rpc.service"], attributes["rpc.method"]) == (
            "SQS.SendMessage",
            "SQS",
            "SendMessage",
        )
        assert call.parent is not None and call.parent.span_id == parent.get_span_context().span_id


class TestUserId:
    async def test_user_id_on_producer_and_consumer_spans_and_in_logs(self, spans: InMemorySpanExporter) -> None:
        """The envelope's user id is the user.id attribute of both message spans and the handler's user_id log
        field."""
        bus = MemoryBus()
        await bus.connect()
        seen: dict[str, Any] = {}
        handled = asyncio.Event()

        async def handler(envelope: Envelope) -> Message | None:
            seen.update(structlog.contextvars.get_contextvars())
            handled.set()
            return None

        try:
            await bus.subscribe(COST_TRACKER, {WorkflowCompleted.TYPE: handler})
            completed = WorkflowCompleted(provider=None, content=None, duration_ms=1.0)
            await bus.publish(Envelope.new(completed, workflow_id=uuid.uuid4(), user_id="creator-7"))
            await asyncio.wait_for(handled.wait(), 5)
        finally:
            await bus.close(grace_s=1)
        message_spans = [s for s in spans.get_finished_spans() if s.kind in (SpanKind.PRODUCER, SpanKind.CONSUMER)]
        assert {s.kind for s in message_spans} == {SpanKind.PRODUCER, SpanKind.CONSUMER}
        assert {(s.attributes or {}).get(ATTR_USER_ID) for s in message_spans} == {"creator-7"}
        assert seen["user_id"] == "creator-7"


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.received: list[ExportTraceServiceRequest] = []

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
        self.received.append(request)
        return ExportTraceServiceResponse()


class TestOtlpGrpc:
    def test_spans_reach_a_grpc_collector(self) -> None:
        """OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports the spans over gRPC (an ADOT collector's port 4317)."""
        receiver = _Traces()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            result = _run_probe(
                PROBE,
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                OTEL_METRICS_EXPORTER="none",
            )
        finally:
            server.stop(grace=None)
        assert result.returncode == 0, result.stderr
        names = [
            span.name
            for r in receiver.received
            for rs in r.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        assert names == ["send orders"]
