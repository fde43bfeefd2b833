"""Every fallback-matrix scenario end to end: the embedded system (memory bus) with the real openai SDK
against the LLM simulator injecting the fault, driven through the gateway's HTTP API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libs.runtime import Shared
from libs.simulators import LLMSimulator
from libs.simulators.llm import FaultKind
from services import embedded
from tests.integration.client import GatewayClient

SECRET = "test-secret-of-at-least-thirty-two-bytes!"
MATRIX = {
    "azure_timeout": {"delay_s": 0.1},
    "azure_rate_limited": {"delay_s": 0.1},
    "openai_timeout": {"delay_s": 0.1},
    "openai_rate_limited": {"delay_s": 0.5},
    "provider_unavailable": {"delay_s": 0.1},
}


@pytest.fixture
async def llm() -> AsyncIterator[LLMSimulator]:
    async with LLMSimulator() as sim:
        yield sim


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, llm: LLMSimulator) -> AsyncIterator[GatewayClient]:
    for key in ("BUS_URL", "DATABASE_URL", "REDIS_URL", "AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GATEWAY_JWT_SECRET", SECRET)
    monkeypatch.setenv("GATEWAY_PORT", "0")
    # Long enough for an answer on a loaded CI machine (0.5 s timed out a slow but healthy call).
    monkeypatch.setenv("AZURE_TIMEOUT_S", "2")
    monkeypatch.setenv("OPENAI_TIMEOUT_S", "2")
    monkeypatch.setenv("ROUTER_WORKFLOW_DEADLINE_S", "10")
    monkeypatch.setenv("ROUTER_BREAKER_FAILURE_THRESHOLD", "2")
    monkeypatch.setenv("ROUTER_BREAKER_OPEN_S", "1")
    monkeypatch.setenv("ROUTER_FALLBACK_MATRIX", json.dumps(MATRIX))
    stop, started = asyncio.Event(), asyncio.Event()
    shared = Shared(llm_simulator_url=llm.url)
    task = asyncio.create_task(embedded.run(stop=stop, started=started, shared=shared))
    await asyncio.wait_for(started.wait(), 15)
    c = GatewayClient(str(shared.gateway_url), SECRET)
    yield c
    await c.close()
    stop.set()
    await asyncio.wait_for(task, 15)


async def run(client: GatewayClient, body: dict[str, Any]) -> dict[str, Any]:
    code, answer = await client.submit(body)
    assert code == 202, answer
    return await client.wait_terminal(answer["data"]["workflowId"], timeout=15)


def moves(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["from"], f["to"]) for f in view["fallbackHistory"]]


class TestFallbackMatrixEndToEnd:
    async def test_azure_timeout_falls_back_to_openai(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """An Azure call that hangs past its timeout is answered by OpenAI."""
        llm.add_fault(FaultKind.HANG, target="azure")
        view = await run(client, {"type": "content_planning"})
        assert (view["status"], view["currentProvider"]) == ("completed", "openai")
        assert moves(view) == [("azure", "openai")]
        assert "azure_timeout" in view["fallbackHistory"][0]["reason"]
        assert view["providerStates"]["azure"] == "timeout"

    async def test_azure_rate_limit_falls_back_to_openai(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """An Azure 429 is answered by OpenAI."""
        llm.add_fault(FaultKind.RATE_LIMIT, target="azure", retry_after=30)
        view = await run(client, {"type": "content_planning"})
        assert (view["status"], view["currentProvider"]) == ("completed", "openai")
        assert moves(view) == [("azure", "openai")]

    async def test_openai_timeout_falls_back_to_azure(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """An OpenAI call that hangs past its timeout is answered by Azure."""
        llm.add_fault(FaultKind.HANG, target="openai")
        view = await run(client, {"type": "message_generation"})
        assert (view["status"], view["currentProvider"]) == ("completed", "azure")
        assert moves(view) == [("openai", "azure")]

    async def test_openai_rate_limit_is_retried_later_on_openai(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """An OpenAI 429 queues a retry of OpenAI after the configured delay (0.5 s here)."""
        llm.add_fault(FaultKind.RATE_LIMIT, target="openai", retry_after=0.2)
        start = time.monotonic()
        view = await run(client, {"type": "message_generation"})
        assert time.monotonic() - start >= 0.5
        assert (view["status"], view["currentProvider"]) == ("completed", "openai")
        assert moves(view) == [("openai", "queue")]
        assert llm.request_count("openai") == 2 and llm.request_count("azure") == 0

    async def test_both_providers_down_fails_with_the_reason(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """With both providers failing, the workflow fails, says why, and stops within its bounds."""
        llm.set_fault(FaultKind.SERVER_ERROR)
        start = time.monotonic()
        view = await run(client, {"type": "message_generation"})
        assert view["status"] == "failed"
        assert view["error"]["type"] == "provider_unavailable"
        assert time.monotonic() - start < 10
        assert llm.request_count() <= 4  # ROUTER_MAX_ATTEMPTS: no ping-pong

    async def test_invalid_request_fails_without_fallback(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """A 400 is permanent: failed at once, no fallback, one provider call."""
        llm.add_fault(FaultKind.BAD_REQUEST, target="openai")
        view = await run(client, {"type": "message_generation"})
        assert view["status"] == "failed"
        assert view["error"]["type"] == "invalid_request"
        assert view["fallbackHistory"] == []
        assert llm.request_count() == 1

    async def test_circuit_opens_and_closes_after_a_probe(self, client: GatewayClient, llm: LLMSimulator) -> None:
        """Two Azure failures open its circuit (planning goes straight to OpenAI); after the open period a
        successful probe closes it again."""
        llm.add_fault(FaultKind.SERVER_ERROR, target="azure", count=2)
        for _ in range(2):
            assert (await run(client, {"type": "content_planning"}))["currentProvider"] == "openai"
        llm.reset_counts()
        avoided = await run(client, {"type": "content_planning"})
        assert (avoided["currentProvider"], avoided["fallbackHistory"]) == ("openai", [])
        assert llm.request_count("azure") == 0
        await asyncio.sleep(1.1)
        probe = await run(client, {"type": "content_planning"})
        assert probe["currentProvider"] == "azure"
        assert (await run(client, {"type": "content_planning"}))["currentProvider"] == "azure"
