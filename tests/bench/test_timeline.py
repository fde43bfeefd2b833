"""The bench's --trace timeline, read from logs the SDK's console exporter really wrote."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.bench.timeline import timeline

MS = 1_000_000  # nanoseconds


def _exporting(log: Path, service: str) -> trace.Tracer:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=log.open("a"))))
    return provider.get_tracer("test")


def _workflow(gateway: trace.Tracer, router: trace.Tracer, began: int, consumed_after_ms: int) -> None:
    """A POST of 10 ms whose router span starts `consumed_after_ms` in and makes two statements."""
    post = gateway.start_span("POST /x", kind=SpanKind.SERVER, start_time=began)
    parent = trace.set_span_in_context(post)
    consume = router.start_span("process router", kind=SpanKind.CONSUMER, context=parent,
                                start_time=began + consumed_after_ms * MS)  # fmt: skip
    inner = trace.set_span_in_context(consume)
    for k in range(2):
        at = began + (consumed_after_ms + 1 + 2 * k) * MS
        router.start_span("WITH", kind=SpanKind.CLIENT, context=inner, start_time=at).end(end_time=at + MS)
    consume.end(end_time=began + 9 * MS)
    post.end(end_time=began + 10 * MS)


class TestTimeline:
    def test_the_median_of_each_span_by_its_occurrence_in_the_last_traces_the_gateway_served(
        self, tmp_path: Path
    ) -> None:
        """Each span's median start after the POST and median duration, the k-th of a name counted apart;
        JSON log lines between the spans are skipped and only the last traces count."""
        (tmp_path / "router.log").write_text(json.dumps({"event": "router.ready", "level": "info"}) + "\n")
        gateway = _exporting(tmp_path / "gateway.log", "gateway")
        router = _exporting(tmp_path / "router.log", "router")
        _workflow(gateway, router, began=1_000 * MS, consumed_after_ms=7)  # older: not among the last two
        for n, after_ms in enumerate((2, 4)):
            _workflow(gateway, router, began=(2_000 + 100 * n) * MS, consumed_after_ms=after_ms)
        steps = {(s.service, s.name): s for s in timeline(tmp_path, last=2)}
        assert steps[("gateway", "POST /x#1")].start_ms == 0
        assert steps[("gateway", "POST /x#1")].duration_ms == 10
        assert steps[("router", "process router#1")].start_ms == 3  # median of 2 and 4, not 7
        assert steps[("router", "WITH#1")].start_ms == 4
        assert steps[("router", "WITH#2")].start_ms == 6
        assert steps[("router", "WITH#2")].duration_ms == 1
        assert all(s.traces == 2 for s in steps.values())
        assert [s.name for s in timeline(tmp_path, last=2)][:2] == ["POST /x#1", "process router#1"]
