"""One workflow is one trace across every service process, exported over OTLP and read back decoded."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from libs.simulators import LLMSimulator, PlatformSimulator
from libs.simulators.llm import FaultKind
from tests.fixtures.otlp import OtlpReceiver, ReceivedSpan
from tests.integration.client import GatewayClient
from tests.integration.stack import Stack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SERVICES = {
    "router": "router",
    "azure_worker": "azure-worker",
    "openai_worker": "openai-worker",
    "cost_tracker": "cost-tracker",
    "rate_limiter": "rate-limiter",
    "of_sender": "of-sender",
    "gateway": "gateway",
}


@pytest_asyncio.fixture(
    loop_scope="module", params=["tracecontext,baggage", "tracecontext,baggage,xray"], ids=["w3c", "xray"]
)
async def traced(
    request: pytest.FixtureRequest,
    amqp_url: str,
    postgres_dsn: str,
    redis_url: str,
    tmp_path: Path,
    otlp_receiver: OtlpReceiver,
) -> AsyncIterator[tuple[GatewayClient, LLMSimulator]]:
    async with LLMSimulator() as llm, PlatformSimulator() as platform:
        env = {
            "ONLYFANS_API_URL": platform.url,
            "ONLYFANS_API_TOKEN": "test-token",
            # A fresh Redis looks like one that lost its data: the limiter holds one window. Keep it short.
            "OF_ACCOUNT_WINDOW_S": "1",
            "OF_RECIPIENT_MIN_INTERVAL_S": "0.2",
            "OF_SAFETY_MARGIN_S": "0.1",
            "AZURE_OPENAI_ENDPOINT": llm.azure_endpoint,
            "AZURE_OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": llm.openai_base_url,
            "OPENAI_API_KEY": "test-key",
            "GATEWAY_JWT_SECRET": secrets.token_urlsafe(32),
            "GATEWAY_PORT": str(free_port()),
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_PROPAGATORS": request.param,
        }
        async with Stack(amqp_url, postgres_dsn, redis_url, tmp_path, env=env) as stack:
            await asyncio.gather(*(stack.start(p) for p in SERVICES if p != "gateway"))
            await stack.start("gateway")
            client = GatewayClient(f"http://127.0.0.1:{env['GATEWAY_PORT']}", env["GATEWAY_JWT_SECRET"])
            yield client, llm
            await client.close()


async def spans_of(
    receiver: OtlpReceiver, trace_id: str, services: set[str], timeout: float = 15
) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while True:
        spans = receiver.trace(trace_id)
        ids = {s.span_id for s in spans}
        # Spans arrive in batches per process: wait for every service, and for the parent of every span
        # (the gateway's SERVER span, the root, ends last: after the wait=true answer).
        if (
            {s.service for s in spans} >= services
            and all(s.parent_span_id in ids for s in spans if s.kind in ("consumer", "producer"))
            and any(s.kind == "server" and s.service == "gateway" for s in spans)
        ):
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"services seen: {sorted({s.service for s in spans})}")
        await asyncio.sleep(0.2)


class TestOneTracePerWorkflow:
    async def test_every_service_joins_the_workflow_trace(
        self, traced: tuple[GatewayClient, LLMSimulator], otlp_receiver: OtlpReceiver
    ) -> None:
        """A planning workflow that falls back from Azure to OpenAI and is delivered to a fan is one trace
        holding spans from all seven services, each consumer span the child of a producer span,
        plus the HTTP server, database and HTTP client spans of the official instrumentations."""
        client, llm = traced
        llm.add_fault(FaultKind.SERVER_ERROR, target="azure", count=1)  # Azure fails once: OpenAI answers
        body = {"type": "content_planning", "sendToOnlyFans": True, "recipientId": "fan-1"}
        code, answer = await client.submit(body, wait=True)
        assert code == 200, answer
        code, status = await client.status(answer["data"]["workflowId"])
        trace_id = status["data"]["traceId"]
        assert status["data"]["deliveries"][0]["status"] == "sent", status
        expected = set(SERVICES.values())  # all seven
        spans = await spans_of(otlp_receiver, trace_id, expected)
        by_id = {s.span_id: s for s in spans}
        consumers = [s for s in spans if s.kind == "consumer"]
        assert consumers
        for span in consumers:
            parent = by_id.get(span.parent_span_id)
            assert parent is not None and parent.kind == "producer", span
        kinds = {(s.service, s.kind) for s in spans}
        assert ("gateway", "server") in kinds
        assert ("azure-worker", "client") in kinds  # the provider call, aiohttp-client instrumentation
        assert any(s.service == "router" and s.attributes.get("db.system", "").startswith("postgres") for s in spans)
        assert any(s.attributes.get("db.system") == "redis" for s in spans)  # the limiter's / workers' Redis
