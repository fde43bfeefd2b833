"""The embedded mode (no REDIS_URL) shares one flag store between its services: an account paused through
the gateway holds the of-sender's sends in the same process, and resuming it lets them go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from libs.flags import MemoryFlagStore
from libs.runtime import Shared
from libs.simulators import LLMSimulator, PlatformLimits, PlatformSimulator
from services import embedded
from services.gateway.auth import make_token
from tests.integration.client import GatewayClient

SECRET = "test-secret-of-at-least-thirty-two-bytes!"
ACCOUNT = "creator-1"  # the client's sub: the account it sends from
HELD_S = 2.5  # longer than two of the of-sender's hold rounds


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    limits = PlatformLimits(account_limit=1000, window_s=1.0, recipient_min_interval_s=0.0)
    async with PlatformSimulator(limits) as simulator:
        yield simulator


@pytest.fixture
async def running(monkeypatch: pytest.MonkeyPatch, sim: PlatformSimulator) -> AsyncIterator[dict[str, Any]]:
    for key in ("BUS_URL", "DATABASE_URL", "REDIS_URL", "AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL", "ONLYFANS_API_URL"):
        monkeypatch.delenv(key, raising=False)
    values = {
        "GATEWAY_JWT_SECRET": SECRET,
        "GATEWAY_PORT": "0",
        "OF_ACCOUNT_LIMIT": "1000",
        "OF_ACCOUNT_WINDOW_S": "1",
        "OF_RECIPIENT_MIN_INTERVAL_S": "0",
        "OF_SAFETY_MARGIN_S": "0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    async with LLMSimulator() as llm:
        stop, started = asyncio.Event(), asyncio.Event()
        shared = Shared(llm_simulator_url=llm.url, platform_simulator_url=sim.url)
        task = asyncio.create_task(embedded.run(stop=stop, started=started, shared=shared))
        await asyncio.wait_for(started.wait(), 15)
        yield shared
        stop.set()
        await asyncio.wait_for(task, 15)


async def put(url: str, path: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {make_token(SECRET, 'ops-admin', role='admin')}"}
    async with aiohttp.ClientSession(headers=headers) as session, session.put(url + path) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


class TestEmbeddedStop:
    async def test_a_pause_through_the_gateway_holds_the_of_sender(
        self, running: Shared, sim: PlatformSimulator
    ) -> None:
        """One MemoryFlagStore for every service: paused, the fan gets nothing; resumed, exactly one message."""
        assert isinstance(running.flag_store, MemoryFlagStore)
        url = str(running.gateway_url)
        await put(url, f"/api/admin/accounts/{ACCOUNT}/pause")
        client = GatewayClient(url, SECRET, ACCOUNT)
        try:
            body = {"type": "message_generation", "sendToOnlyFans": True, "recipientIds": ["fan-1"]}
            code, answer = await client.submit(body)
            assert code == 202, answer
            await asyncio.sleep(HELD_S)
            assert sim.arrivals() == []
            await put(url, f"/api/admin/accounts/{ACCOUNT}/resume")
            view = await client.wait_terminal(answer["data"]["workflowId"], timeout=30)
        finally:
            await client.close()
        assert view["status"] == "completed", view
        assert [a.recipient_id for a in sim.delivered()] == ["fan-1"]
