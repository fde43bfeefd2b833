"""A campaign across processes: router, rate-limiter and of-sender each their own OS process on RabbitMQ,
PostgreSQL and Redis, sending to the platform simulator. The test process stands in for the LLM workers
(it answers every generation.requested) and asks the router for the workflow's status over the bus.

The router is SIGKILLed while it fans the campaign out (unacknowledged chunks go back to the queue) and
started again: the fan-out resumes from the redelivered chunk, and the platform's log is the referee.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts import Envelope
from contracts.enums import IntentType, WorkflowStatus
from contracts.messages import (
    GenerationCompleted,
    GenerationRequested,
    Intent,
    Usage,
    WorkflowAccepted,
    WorkflowRequested,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowView,
)
from contracts.routing import AZURE_WORKER, OPENAI_WORKER
from libs.bus.amqp import AmqpBus
from libs.simulators import PlatformLimits, PlatformSimulator
from services.router.constants import FANOUT_CHUNK
from tests.integration.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FANS = 2_000
CHUNKS = -(-FANS // FANOUT_CHUNK)
CREATOR = "creator-kill"
TEXT = "hello from the campaign"
PLATFORM_TOKEN = "platform-token"
FANOUT_EVENT = '"delivery.fanout"'  # the router's log line for each chunk it published
REQUEST_TIMEOUT_S = 30.0
STATUS_POLL_S = 1.0  # each status query waits in the router's queue behind the reports: ask seldom
# 2,000 deliveries take 20 to 60 s on two cores, depending on what else runs; the pace is not under test.
FINISH_TIMEOUT_S = 120.0
# Limits lifted: the rate-limiter and the of-sender's last check still run for each delivery, nothing waits
# long. The window stays short: a fresh plan holds an account for one window before its first send.
LIMIT, WINDOW_S = 1_000_000, 1.0


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    limits = PlatformLimits(account_limit=LIMIT, window_s=WINDOW_S, recipient_min_interval_s=0.0)
    async with PlatformSimulator(limits, token=PLATFORM_TOKEN) as simulator:
        yield simulator


@pytest.fixture
async def stack(
    amqp_url: str, postgres_dsn: str, redis_url: str, sim: PlatformSimulator, tmp_path: Path
) -> AsyncIterator[Stack]:
    prefix = f"ho:t{uuid.uuid4().hex[:8]}:"  # Redis keys of this run only
    env = {
        "ONLYFANS_API_URL": sim.url,
        "ONLYFANS_API_TOKEN": PLATFORM_TOKEN,
        "OF_ACCOUNT_LIMIT": str(LIMIT),
        "OF_ACCOUNT_WINDOW_S": str(WINDOW_S),
        "OF_RECIPIENT_MIN_INTERVAL_S": "0",
        "OF_SAFETY_MARGIN_S": "0",
        "RATE_LIMITER_KEY_PREFIX": f"{prefix}rl:",
        "OF_SENDER_KEY_PREFIX": f"{prefix}of:",
    }
    async with Stack(amqp_url, postgres_dsn, redis_url, tmp_path, env=env) as running:
        quiet = {"LOG_LEVEL": "warning"}  # a log line per delivery costs the senders time; the router's are read
        await asyncio.gather(
            running.start("router"), running.start("rate_limiter", env=quiet), running.start("of_sender", env=quiet)
        )
        yield running


@pytest.fixture
async def bus(stack: Stack, amqp_url: str) -> AsyncIterator[AmqpBus]:
    """The test process on the stack's bus, answering every generation request with TEXT."""
    connected = AmqpBus(amqp_url, namespace=stack.namespace)
    await connected.connect()

    async def write(envelope: Envelope) -> None:
        request = envelope.payload
        assert isinstance(request, GenerationRequested)
        usage = Usage(prompt_tokens=5, completion_tokens=5, total_tokens=10)
        answer = GenerationCompleted(provider=request.provider, model="m", content=TEXT, usage=usage, latency_ms=1.0)
        await connected.publish(envelope.child(answer))

    for worker in (AZURE_WORKER, OPENAI_WORKER):
        await connected.subscribe(worker, {GenerationRequested.TYPE: write})
    yield connected
    await connected.close(grace_s=1)


async def status(bus: AmqpBus, workflow_id: uuid.UUID) -> WorkflowView | None:
    query = WorkflowStatusQuery(workflow_id=workflow_id, requester_user_id=CREATOR)
    reply = await bus.request(Envelope.new(query, user_id=CREATOR), timeout=REQUEST_TIMEOUT_S)
    assert isinstance(reply.payload, WorkflowStatusReply)
    return reply.payload.workflow


def chunks_logged(stack: Stack) -> int:
    return stack.procs["router"].log_path.read_text(errors="replace").count(FANOUT_EVENT)


class TestRouterKilledMidFanout:
    async def test_a_router_killed_mid_fanout_resumes_without_a_duplicate(
        self, stack: Stack, bus: AmqpBus, sim: PlatformSimulator
    ) -> None:
        """2,000 fans; the router is SIGKILLed after its first chunks were published and started again: every
        fan gets exactly one message on the platform, and the workflow completes with every delivery sent."""
        started = time.monotonic()
        fans = [f"fan-{i}" for i in range(FANS)]
        intent = Intent(
            type=IntentType.CAMPAIGN_EXECUTION, data={"prompt": "hi"}, send_to_onlyfans=True, recipient_ids=fans
        )
        request = Envelope.new(WorkflowRequested(intent=intent), workflow_id=uuid.uuid4(), user_id=CREATOR)
        reply = await bus.request(request, timeout=REQUEST_TIMEOUT_S)
        assert isinstance(reply.payload, WorkflowAccepted) and reply.payload.accepted, reply.payload
        workflow_id = request.workflow_id
        assert workflow_id is not None

        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while chunks_logged(stack) < 1:
            assert time.monotonic() < deadline, f"the fan-out never started:\n{stack.logs('router')}"
            await asyncio.sleep(0.005)
        await stack.kill("router")
        before_kill = chunks_logged(stack)
        assert before_kill < CHUNKS, "the fan-out was over before the kill: nothing was tested"
        await stack.restart("router")

        view = await status(bus, workflow_id)
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        while view is None or view.status not in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED):
            delivered = len(sim.delivered())
            assert time.monotonic() < deadline, f"{delivered} of {FANS} delivered in time:\n{stack.logs()}"
            await asyncio.sleep(STATUS_POLL_S)
            view = await status(bus, workflow_id)
        reached = Counter(a.recipient_id for a in sim.delivered() if a.account_id == CREATOR)
        twice = {fan: n for fan, n in reached.items() if n > 1}
        assert not twice, f"{len(twice)} fans got the message more than once"
        assert set(reached) == set(fans), f"{FANS - len(reached)} fans got nothing"
        assert {a.text for a in sim.delivered()} == {TEXT}
        assert view.status is WorkflowStatus.COMPLETED, view.error
        assert chunks_logged(stack) == CHUNKS  # each chunk computed once, by one router or the other
        assert view.progress is not None
        assert (view.progress.total, view.progress.sent, view.progress.failed) == (FANS, FANS, 0)
        print(
            f"\nkilled after {before_kill} of {CHUNKS} chunks; {FANS} fans reached once; "
            f"arrivals {Counter(a.outcome for a in sim.arrivals())}; {time.monotonic() - started:.1f}s"
        )
