"""The metrics people read: LLM calls by model and on the GenAI conventions, gateway requests, platform sends
per account, workflow failures, refusals and campaign deliveries — each with the attributes dashboards use."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from contracts.messages import Usage
from libs.llm.metrics import LLMMetrics
from services.gateway.metrics import GatewayMetrics
from services.of_sender.metrics import SEND_HELD, SEND_SENT, SenderMetrics
from services.router.metrics import RouterMetrics


@pytest.fixture
def reader_and_meter() -> tuple[InMemoryMetricReader, Meter]:
    reader = InMemoryMetricReader()
    return reader, MeterProvider(metric_readers=[reader]).get_meter("test")


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """{metric name: [(attributes, value or (count, sum))]}"""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    value = (point.count, point.sum) if hasattr(point, "count") else point.value
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


class TestLLM:
    def test_a_call_is_measured_by_model_and_on_the_genai_conventions(
        self, reader_and_meter: tuple[InMemoryMetricReader, Meter]
    ) -> None:
        """One answered and one timed-out call: llm_* carry the model; gen_ai.client.operation.duration is in
        seconds with error.type on the failure; gen_ai.client.token.usage splits input and output."""
        reader, meter = reader_and_meter
        llm = LLMMetrics.from_meter(meter)
        usage = Usage(prompt_tokens=90, completion_tokens=41, total_tokens=131)
        llm.record_call(
            provider="openai", model="gpt-4o-mini", outcome="ok", duration_ms=1500, usage=usage, response_model="m-1"
        )
        llm.record_call(provider="azure", model="gpt-4", outcome="azure_timeout", duration_ms=45_000, usage=None)
        points = _points(reader)
        assert sorted((a["model"], a["outcome"], v) for a, v in points["llm_calls"]) == [
            ("gpt-4", "azure_timeout", 1),
            ("gpt-4o-mini", "ok", 1),
        ]
        durations = {a["gen_ai.provider.name"]: (a, v) for a, v in points["gen_ai.client.operation.duration"]}
        ok, ok_value = durations["openai"]
        assert (ok["gen_ai.request.model"], ok["gen_ai.response.model"], ok_value) == ("gpt-4o-mini", "m-1", (1, 1.5))
        failed, failed_value = durations["azure.ai.openai"]
        assert (failed["error.type"], failed_value) == ("azure_timeout", (1, 45.0))
        assert sorted((a["gen_ai.token.type"], v) for a, v in points["gen_ai.client.token.usage"]) == [
            ("input", (1, 90)),
            ("output", (1, 41)),
        ]
        assert sorted((a["kind"], a["model"], v) for a, v in points["llm_tokens"]) == [
            ("completion", "gpt-4o-mini", 41),
            ("prompt", "gpt-4o-mini", 90),
        ]


class TestGatewayAndDelivery:
    def test_requests_sends_and_workflow_outcomes(self, reader_and_meter: tuple[InMemoryMetricReader, Meter]) -> None:
        """A request by route/method/status, sends per account and outcome, a deadline failure, a budget
        refusal and delivery reports, each counted under its attributes."""
        reader, meter = reader_and_meter
        GatewayMetrics.from_meter(meter).record_request(
            method="POST", route="/api/v2/campaigns/hybrid", status=202, duration_s=0.02
        )
        GatewayMetrics.from_meter(meter).record_request(method="GET", route=None, status=404, duration_s=0.001)
        sender = SenderMetrics.from_meter(meter)
        sender.record_send(account="creator-1", outcome=SEND_SENT)
        sender.record_send(account="creator-1", outcome=SEND_SENT)
        sender.record_send(account="creator-2", outcome=SEND_HELD)
        router = RouterMetrics.from_meter(meter)
        router.record_failure(error_type="azure_timeout", deadline=True)
        router.record_refusal(reason="cost_limit_exceeded")
        router.record_delivery_report(state="completed")
        points = _points(reader)
        requests = sorted(
            (a["http.request.method"], a.get("http.route"), a["http.response.status_code"], v[0])
            for a, v in points["http.server.request.duration"]
        )
        assert requests == [("GET", None, 404, 1), ("POST", "/api/v2/campaigns/hybrid", 202, 1)]
        assert sorted((a["account"], a["outcome"], v) for a, v in points["platform_sends"]) == [
            ("creator-1", "sent", 2),
            ("creator-2", "held", 1),
        ]
        assert points["workflow_failures"] == [({"error_type": "azure_timeout", "deadline": True}, 1)]
        assert points["workflow_refusals"] == [({"reason": "cost_limit_exceeded"}, 1)]
        assert points["campaign_deliveries"] == [({"state": "completed"}, 1)]
