"""Creator accounts across processes: two users sending from one creator account share its platform window.

Gateway, router, rate-limiter and of-sender each their own OS process on RabbitMQ, PostgreSQL and Redis,
sending to the platform simulator with its 10-messages-a-minute account limit. The test process stands in
for the LLM workers. Two users, each with the account in their token's `accounts` claim, start a campaign of
8 fans at the same time: the platform receives exactly 10 messages from the account in the first window —
none refused, none from the users' own ids — and the other 6 are planned a window later.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from contracts import Envelope
from contracts.messages import GenerationCompleted, GenerationRequested, Usage
from contracts.routing import AZURE_WORKER, OPENAI_WORKER
from libs.bus.amqp import AmqpBus
from libs.simulators import PlatformLimits, PlatformSimulator
from services.gateway.auth import make_token
from tests.fixtures.waiting import eventually
from tests.integration.stack import Stack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ACCOUNT, LIMIT, WINDOW_S = "creator-shared", 10, 60.0
FANS_EACH = 8
PLATFORM_TOKEN = "platform-token"


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    limits = PlatformLimits(account_limit=LIMIT, window_s=WINDOW_S, recipient_min_interval_s=0.0)
    async with PlatformSimulator(limits, token=PLATFORM_TOKEN) as simulator:
        yield simulator


@pytest.fixture
async def stack(
    amqp_url: str, postgres_dsn: str, redis_url: str, sim: PlatformSimulator, tmp_path: Path
) -> AsyncIterator[Stack]:
    prefix = f"ho:t{uuid.uuid4().hex[:8]}:"
    # A limiter that has been running: without this a fresh planner holds every account for one window
    # (it cannot know what was planned before it), and the test would wait a minute for its first send.
    client = aioredis.from_url(redis_url)
    run_id = (await client.info("server"))["run_id"]
    await client.set(f"{prefix}rl:epoch", run_id)
    await client.aclose()
    env = {
        "ONLYFANS_API_URL": sim.url,
        "ONLYFANS_API_TOKEN": PLATFORM_TOKEN,
        "OF_ACCOUNT_LIMIT": str(LIMIT),
        "OF_ACCOUNT_WINDOW_S": str(WINDOW_S),
        "OF_RECIPIENT_MIN_INTERVAL_S": "0",
        "RATE_LIMITER_KEY_PREFIX": f"{prefix}rl:",
        "OF_SENDER_KEY_PREFIX": f"{prefix}of:",
        "GATEWAY_JWT_SECRET": secrets.token_urlsafe(32),
        "GATEWAY_PORT": str(free_port()),
    }
    async with Stack(amqp_url, postgres_dsn, redis_url, tmp_path, env=env) as running:
        await asyncio.gather(*(running.start(p) for p in ("router", "rate_limiter", "of_sender")))
        await running.start("gateway")
        yield running


@pytest.fixture
async def workers(stack: Stack, amqp_url: str) -> AsyncIterator[None]:
    """The test process answers every generation request (the LLM is not under test)."""
    bus = AmqpBus(amqp_url, namespace=stack.namespace)
    await bus.connect()

    async def write(envelope: Envelope) -> None:
        request = envelope.payload
        assert isinstance(request, GenerationRequested)
        usage = Usage(prompt_tokens=5, completion_tokens=5, total_tokens=10)
        answer = GenerationCompleted(provider=request.provider, model="m", content="hi", usage=usage, latency_ms=1.0)
        await bus.publish(envelope.child(answer))

    for worker in (AZURE_WORKER, OPENAI_WORKER):
        await bus.subscribe(worker, {GenerationRequested.TYPE: write})
    yield
    await bus.close(grace_s=1)


async def campaign(session: aiohttp.ClientSession, url: str, token: str, fans: list[str]) -> str:
    body = {"type": "campaign_execution", "data": {"p": 1}, "sendToOnlyFans": True, "recipientIds": fans,
            "accountId": ACCOUNT}  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(f"{url}/api/v2/campaigns/hybrid", json=body, headers=headers) as response:
        answer = await response.json()
        assert response.status == 202, answer
        return str(answer["data"]["workflowId"])


async def status(session: aiohttp.ClientSession, url: str, token: str, workflow_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(f"{url}/api/v2/campaigns/status", params={"workflowId": workflow_id}, headers=headers) as r:
        answer = await r.json()
        assert r.status == 200, answer
        return dict(answer["data"])


class TestSharedAccount:
    async def test_two_users_on_one_account_share_its_window(
        self, stack: Stack, workers: None, sim: PlatformSimulator
    ) -> None:
        """16 messages from one account by two users: 10 reach the platform in the first window, none
        refused by it, all from the account; the other 6 are scheduled at least a window after the first."""
        url = f"http://127.0.0.1:{stack.env['GATEWAY_PORT']}"
        secret = stack.env["GATEWAY_JWT_SECRET"]
        alice = make_token(secret, "alice", accounts=[ACCOUNT])
        bob = make_token(secret, "bob", accounts=[ACCOUNT, "creator-other"])
        async with aiohttp.ClientSession() as session:
            ids = await asyncio.gather(
                campaign(session, url, alice, [f"a-{i}" for i in range(FANS_EACH)]),
                campaign(session, url, bob, [f"b-{i}" for i in range(FANS_EACH)]),
            )

            async def window_full() -> bool:
                return len(sim.arrivals()) >= LIMIT

            await eventually(window_full, timeout=45)
            await asyncio.sleep(5)  # anything beyond the window would arrive now
            arrivals = sim.arrivals()
            assert len(arrivals) == LIMIT, (arrivals, stack.logs())
            assert {a.account_id for a in arrivals} == {ACCOUNT}
            assert {a.outcome for a in arrivals} == {"sent"}
            first = min(a.at for a in arrivals)
            views = [await status(session, url, token, wid) for token, wid in zip((alice, bob), ids, strict=True)]
        assert sum(v["progress"]["sent"] for v in views) == LIMIT
        assert sum(v["progress"]["scheduled"] for v in views) == 2 * FANS_EACH
        assert all(v["accountId"] == ACCOUNT for v in views)
        planned = [d for v in views for d in v["deliveries"] if d["status"] != "sent"]
        assert len(planned) == 2 * FANS_EACH - LIMIT
        for delivery in planned:
            slot = datetime.fromisoformat(delivery["scheduledFor"]).timestamp()
            assert slot >= first + WINDOW_S - 1, delivery
