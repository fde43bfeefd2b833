"""What an operator sees of a dead letter (redaction), what a replay changes in its headers, and the depth
gauge — the transport-neutral parts of libs.bus.dead_letters."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from contracts import Envelope
from contracts import messages as m
from libs.bus import constants as c
from libs.bus.base import DeadLetter
from libs.bus.dead_letters import REDACTED, DeadLetterDepth, describe, preview, replay_headers, selected
from libs.bus.errors import Reject
from libs.bus.memory import MemoryBus
from libs.bus.metrics import BusMetrics
from tests.bus.conformance import eventually


class TestPreview:
    def test_text_and_secret_like_fields_are_redacted_ids_types_and_counts_kept(self) -> None:
        """Message text, variables, results and secret-named values become "[redacted]"; the rest stays."""
        payload = {
            "delivery_id": "d-1",
            "text": "hi fan",
            "vars": {"name": "Ann"},
            "usage": {"prompt_tokens": 40, "total_tokens": 100},
            "api_key": "sk-1",
            "accessToken": "t",
            "headers": {"Authorization": "Bearer x", "X-Signature": "abc"},
            "password": 1234,
            "status": "failed",
            "error": {"code": "rate_limited", "message": "Fan Ann said no"},
        }
        assert preview(payload) == {
            "delivery_id": "d-1",
            "text": REDACTED,
            "vars": REDACTED,
            "usage": {"prompt_tokens": 40, "total_tokens": 100},
            "api_key": REDACTED,
            "accessToken": REDACTED,
            "headers": {"Authorization": REDACTED, "X-Signature": REDACTED},
            "password": REDACTED,
            "status": "failed",
            "error": {"code": "rate_limited", "message": REDACTED},
        }

    def test_long_strings_lists_and_nesting_are_bounded(self) -> None:
        """A preview cuts strings at 120 characters, lists at five items (saying how many more), deep nests."""
        deep: dict[str, Any] = {"id": "x"}
        for _ in range(10):
            deep = {"inner": deep}
        shown = preview({"ids": list(range(8)), "note": "y" * 500, "deep": deep})
        assert shown["ids"] == [0, 1, 2, 3, 4, "[+3 more]"]
        assert len(shown["note"]) == 121
        assert "[...]" in repr(shown["deep"])

    def test_describe_never_raises_on_odd_envelopes(self) -> None:
        """A JSON object with wrong field types is described with what can be trusted; no id → a digest."""
        odd = DeadLetter(b'{"type": 3, "version": "1", "payload": ["a"]}', "undecodable: x", {})
        info = describe(odd)
        assert (info.type, info.version, info.workflow_id, info.dead_lettered_at) == (None, None, None, None)
        assert info.id.startswith("sha256:") and info.preview == ["a"]


class TestReplayHeaders:
    def test_replay_resets_the_count_and_dead_letter_bookkeeping_and_counts_replays(self) -> None:
        """A replayed copy has no delivery count, delay, reason or broker death headers, and one more replay."""
        headers = {
            c.H_DELIVERIES: "4",
            c.H_DELIVER_AT: "1",
            c.H_DEAD_REASON: "boom",
            c.H_DEAD_AT: "2",
            c.H_REPLAYS: "1",
            "x-delivery-count": "3",
            "x-first-death-reason": "delivery_limit",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        assert replay_headers(headers, "r2") == {
            c.H_REPLAYS: "2",
            c.H_REPLAY_ID: "r2",
            "traceparent": headers["traceparent"],
        }

    def test_a_replay_never_selects_what_it_sent_itself(self) -> None:
        """A dead letter carrying this replay's id is skipped by it, taken by a later one."""
        body = Envelope.new(m.WorkflowStatusReply(found=False)).encode()
        dead = DeadLetter(body, "r", {c.H_REPLAY_ID: "r1"})
        assert not selected(dead, None, "r1")
        assert selected(dead, None, "r2")


class TestDepthGauge:
    async def test_the_gauge_reports_each_service_s_dead_letter_count(self) -> None:
        """DeadLetterDepth reads the depths and the bus_dead_letters gauge reports them per service; after
        stop it reports nothing."""
        reader = InMemoryMetricReader()
        metrics = BusMetrics.from_meter(MeterProvider(metric_readers=[reader]).get_meter("test"))
        bus = MemoryBus()

        async def reject(envelope: Envelope) -> None:
            raise Reject("no")

        await bus.subscribe("router", {"workflow.requested": reject})
        for _ in range(2):
            await bus.publish(Envelope.new(m.WorkflowRequested(intent=m.Intent(type="message_generation"))))
        await eventually(lambda: len(bus._dead["router"]) == 2)
        depth = DeadLetterDepth(bus, ["router", "of-sender"], interval_s=3600, metrics=metrics)
        depth.start()
        await eventually(lambda: depth.depths == {"router": 2, "of-sender": 0})
        assert _gauge(reader) == {"router": 2, "of-sender": 0}
        await depth.stop()
        assert _gauge(reader) == {}
        await bus.close()

    async def test_stop_returns_at_once_when_the_look_up_swallows_the_cancel(self) -> None:
        """A cancel swallowed inside the depth look-up (as aio-pika's channel close can do) does not leave stop
        waiting for the next interval."""
        looking = asyncio.Event()

        class SwallowingBus(MemoryBus):
            async def dead_letter_depth(self, service: str) -> int:
                looking.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(3600)
                return 0

        depth = DeadLetterDepth(SwallowingBus(), ["router"], interval_s=3600)
        depth.start()
        await looking.wait()
        await asyncio.wait_for(depth.stop(), 2)


def _gauge(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    points = [
        p
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "bus_dead_letters"
        for p in metric.data.data_points
    ]
    return {str((p.attributes or {})["service"]): int(p.value) for p in points if isinstance(p, NumberDataPoint)}
