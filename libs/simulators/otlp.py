"""An OTLP/HTTP trace receiver that keeps what it is sent, standing in for Jaeger where Jaeger's image cannot be
pulled (the compose stand-ins in deploy/podman), so a test can see which services' spans reached it.

    POST /v1/traces      ExportTraceServiceRequest, application/x-protobuf (gzip allowed), as the services'
                         exporter sends it (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)
    → 200 ExportTraceServiceResponse (empty: every span accepted) | 400 | 415

    GET  /_sim/spans     {"spans": [{"service", "name", "trace_id", "span_id", "parent_span_id"}, ...]}
    DELETE /_sim/spans   forget them

It stores spans in memory, unbounded, and serves no UI: a test fixture, not a tracing backend.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # protobuf ships no stubs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from libs.simulators import serve

TRACES_PATH = "/v1/traces"
ADMIN_SPANS_PATH = "/_sim/spans"
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name ("" when the exporter set none)
    name: str
    trace_id: str  # hex, as every tracing UI shows it
    span_id: str
    parent_span_id: str  # "" for a root span


def spans_of(export: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """The spans of one export request, each with its resource's service name."""
    received: list[ReceivedSpan] = []
    for resource_spans in export.resource_spans:
        attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        service = attributes.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            received.extend(
                ReceivedSpan(
                    service=service,
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                )
                for span in scope_spans.spans
            )
    return received


class OtlpReceiver(serve.HttpSimulator):
    """Listens for OTLP/HTTP trace exports and keeps every span, in arrival order."""

    EVENT_PREFIX = "otlp_receiver"

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ReceivedSpan] = []

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(TRACES_PATH, self._export)
        app.router.add_get(ADMIN_SPANS_PATH, self._list)
        app.router.add_delete(ADMIN_SPANS_PATH, self._forget)
        return app

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                return web.json_response({"error": f"not gzip: {exc}"}, status=400)
        if request.content_type != PROTOBUF:
            return web.json_response({"error": f"unsupported type {request.content_type}"}, status=415)
        export = ExportTraceServiceRequest()
        try:
            export.ParseFromString(body)
        except DecodeError as exc:
            return web.json_response({"error": f"not an ExportTraceServiceRequest: {exc}"}, status=400)
        self.spans.extend(spans_of(export))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)

    async def _list(self, request: web.Request) -> web.Response:
        spans: list[dict[str, Any]] = [asdict(span) for span in self.spans]
        return web.json_response({"spans": spans})

    async def _forget(self, request: web.Request) -> web.Response:
        forgotten, self.spans = len(self.spans), []
        return web.json_response({"forgotten": forgotten})


def main() -> None:
    """Entry point of `python -m libs.simulators.otlp`: OTLP_RECEIVER_HOST (127.0.0.1) and OTLP_RECEIVER_PORT
    (4318, the OTLP/HTTP port)."""
    host = os.environ.get("OTLP_RECEIVER_HOST", "127.0.0.1")
    port = int(os.environ.get("OTLP_RECEIVER_PORT", "4318"))
    asyncio.run(serve.serve_forever(OtlpReceiver(), host, port))


if __name__ == "__main__":
    main()
