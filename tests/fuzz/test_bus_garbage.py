"""Garbage on every consuming service's queue, with the real services running: on the memory bus (the embedded
system in this process) and on RabbitMQ (every service its own process, tests.integration.stack).

For each transport: a workflow is run to its end first; then random bytes, random JSON and envelope-shaped
garbage (tests.fuzz.garbage) go onto every queue with `publish_raw`. Every message must come back out of its
service's dead-letter queue with a reason that fits it, and nothing else may; the earlier workflow must read
exactly as before; and workflows submitted afterwards through the gateway must complete — proof the consumers
kept serving.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import strategies as st

import libs.bus
from contracts.routing import SERVICES
from libs.bus import Bus
from libs.bus.amqp import AmqpBus
from libs.runtime import Shared
from libs.simulators import LLMSimulator, PlatformSimulator
from services import embedded
from tests.fuzz.garbage import Garbage, bad_headers, collect_dead_letters, garbage, handled_types, publish, sample
from tests.integration.client import GatewayClient
from tests.integration.stack import Stack, free_port

SECRET = "fuzz-secret-of-at-least-thirty-two-bytes!"
PER_KIND = 12  # messages of each garbage kind per queue: ~80 per queue, ~500 in all
DEAD_LETTER_TIMEOUT_S = 20.0
WORKFLOW_TIMEOUT_S = 30.0
RECIPIENT = "fuzz-fan"
PLATFORM_TOKEN = "platform-token"
# Short delivery limits: a fresh rate-limiter state holds the first delivery for one window (it cannot tell a
# new Redis from a lost one), and a test should not wait a minute for it.
DELIVERY_LIMITS = {
    "OF_ACCOUNT_WINDOW_S": "2",
    "OF_RECIPIENT_MIN_INTERVAL_S": "0.5",
    "OF_SAFETY_MARGIN_S": "0.1",
}
# Every service the distributed stack runs, in start order (the gateway last); those without a package yet
# are left out.
STACK_PACKAGES = ("router", "azure_worker", "openai_worker", "cost_tracker", "rate_limiter", "of_sender")


@dataclass
class System:
    """A running system as this module sees it: a bus to throw garbage on, the services consuming from it,
    and the gateway."""

    bus: Bus
    consumers: tuple[str, ...]
    gateway_url: str
    logs: Callable[[], str] = lambda: ""

    def client(self) -> GatewayClient:
        """A client of a user of its own: the cost-tracker's figures for it count this round only."""
        return GatewayClient(self.gateway_url, SECRET, user=f"fuzz-{uuid.uuid4().hex[:8]}")

    @property
    def delivers(self) -> bool:
        """rate-limiter and of-sender run: a workflow can deliver to the platform."""
        return {"rate-limiter", "of-sender"} <= set(self.consumers)


def draw_garbage(system: System, workflow_ids: list[uuid.UUID]) -> dict[str, list[Garbage]]:
    """PER_KIND messages of every kind for every consuming queue, the envelope-shaped ones naming one of
    `workflow_ids` (a real workflow among them)."""
    ids = st.sampled_from(workflow_ids)
    return {
        service: [item for kind in garbage(service, ids).values() for item in sample(kind, PER_KIND)]
        for service in system.consumers
    }


async def finished_workflow(system: System, client: GatewayClient, body: dict[str, Any]) -> dict[str, Any]:
    code, answer = await client.submit(body)
    assert code == 202, (code, answer, system.logs())
    view = await client.wait_terminal(answer["data"]["workflowId"], timeout=WORKFLOW_TIMEOUT_S)
    assert view["status"] == "completed", (view, system.logs())
    return view


async def status_of(client: GatewayClient, workflow_id: str) -> dict[str, Any]:
    code, answer = await client.status(workflow_id)
    assert code == 200, answer
    return dict(answer["data"])


async def accounted_workflows(client: GatewayClient, expected: int) -> int:
    """How many of the user's workflows the cost-tracker has accounted, once it reached `expected` (usage is
    recorded beside the workflow's end, so it may lag a little) or WORKFLOW_TIMEOUT_S passed."""
    deadline = time.monotonic() + WORKFLOW_TIMEOUT_S
    while True:
        async with client.session.get(f"{client.base_url}/api/v2/costs/stats", headers=client.headers) as response:
            assert response.status == 200, await response.text()
            count = int((await response.json())["data"]["workflows"])
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.1)


def workflows(system: System) -> list[dict[str, Any]]:
    """What each consumer must still serve afterwards: planning (azure), messages (openai), and a delivery
    to the platform (rate-limiter, of-sender) when those run."""
    bodies: list[dict[str, Any]] = [{"type": "content_planning"}, {"type": "message_generation"}]
    if system.delivers:
        # A fan of its own: a second message to the same fan waits for the per-recipient spacing.
        fan = f"{RECIPIENT}-{uuid.uuid4().hex[:8]}"
        bodies.append({"type": "message_generation", "sendToOnlyFans": True, "recipientId": fan})
    return bodies


async def throw(system: System, batches: dict[str, list[Garbage]]) -> None:
    """Publish every batch, then require each message back from its dead-letter queue with a fitting reason."""
    await asyncio.gather(*(publish(system.bus, batch) for batch in batches.values()))
    reports = await asyncio.gather(
        *(
            collect_dead_letters(system.bus, service, batch, timeout=DEAD_LETTER_TIMEOUT_S)
            for service, batch in batches.items()
        )
    )
    failures = [f"--- {service}\n{report}" for service, report in zip(batches, reports, strict=True) if report]
    assert not failures, "\n".join(failures) + "\n" + system.logs()


async def garbage_round(system: System, make: Callable[[System, list[uuid.UUID]], dict[str, list[Garbage]]]) -> None:
    """The whole property: a finished workflow, garbage on every queue, every message dead-lettered with its
    reason, the workflow unchanged, and new workflows served."""
    client = system.client()
    try:
        earlier = await finished_workflow(system, client, workflows(system)[-1])
        workflow_id = earlier["workflowId"]
        before = await status_of(client, workflow_id)
        for service in system.consumers:
            assert await system.bus.dead_letters(service) == [], f"{service} dead-lettered a real message"
        phantom = uuid.uuid4()  # named by garbage too: no workflow may come into being under it
        await throw(system, make(system, [uuid.UUID(workflow_id), phantom]))
        assert await status_of(client, workflow_id) == before
        code, answer = await client.status(str(phantom))
        assert code == 404, answer
        afterwards = workflows(system)
        for body in afterwards:
            await finished_workflow(system, client, body)
        # The cost-tracker kept consuming too: it accounted every workflow, before the garbage and after.
        assert await accounted_workflows(client, 1 + len(afterwards)) == 1 + len(afterwards)
    finally:
        await client.close()


def with_bad_headers(system: System, workflow_ids: list[uuid.UUID]) -> dict[str, list[Garbage]]:
    return {service: sample(bad_headers(service), PER_KIND) for service in system.consumers}


# --- the memory bus: the embedded system in this process --------------------------------------------------


@pytest.fixture
async def memory_system(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[System]:
    for key in ("BUS_URL", "DATABASE_URL", "REDIS_URL", "AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL", "ONLYFANS_API_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GATEWAY_JWT_SECRET", SECRET)
    monkeypatch.setenv("GATEWAY_PORT", "0")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_RPS", "0")  # status polls must not meet the per-user limit
    monkeypatch.setenv("HEALTH_PORT", "0")
    for key, value in DELIVERY_LIMITS.items():
        monkeypatch.setenv(key, value)
    buses: list[Bus] = []
    consumers: list[str] = []

    def capture(url: str, **options: Any) -> Bus:
        """The runner's bus, its subscriptions noted: the queues that have consumers are the ones to fuzz."""
        bus = libs.bus.create_bus(url, **options)
        subscribe = bus.subscribe

        async def noting(service: str, handlers: Any, **kwargs: Any) -> None:
            consumers.append(service)
            await subscribe(service, handlers, **kwargs)

        bus.subscribe = noting  # type: ignore[method-assign]
        buses.append(bus)
        return bus

    monkeypatch.setattr("libs.runtime.process.create_bus", capture)
    stop, started = asyncio.Event(), asyncio.Event()
    async with LLMSimulator() as llm, PlatformSimulator() as platform:
        shared = Shared(llm_simulator_url=llm.url, platform_simulator_url=platform.url)
        task = asyncio.create_task(embedded.run(stop=stop, started=started, shared=shared))
        await asyncio.wait_for(started.wait(), 15)
        try:
            yield System(buses[0], tuple(consumers), str(shared.gateway_url))
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


class TestGarbageOnTheMemoryBus:
    async def test_every_message_is_dead_lettered_and_nothing_breaks(self, memory_system: System) -> None:
        """Garbage of every kind on every consuming queue of the embedded system: each message is
        dead-lettered with a reason that fits it, a finished workflow reads the same, and new workflows
        complete."""
        assert set(memory_system.consumers) >= {"router", "azure-worker", "openai-worker", "cost-tracker"}
        await garbage_round(memory_system, draw_garbage)

    async def test_garbage_in_the_bus_headers_is_dead_lettered(self, memory_system: System) -> None:
        """Undecodable messages whose bus headers (deliveries, deliver-at, reply-to, trace context) are
        garbage too are dead-lettered like any other, and the consumers keep serving."""
        await garbage_round(memory_system, with_bad_headers)


# --- RabbitMQ: every service its own process -------------------------------------------------------------


def stack_packages() -> list[str]:
    return [p for p in STACK_PACKAGES if importlib.util.find_spec(f"services.{p}.__main__") is not None]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def simulators() -> AsyncIterator[tuple[LLMSimulator, PlatformSimulator]]:
    async with LLMSimulator() as llm, PlatformSimulator(token=PLATFORM_TOKEN) as platform:
        yield llm, platform


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def amqp_system(
    amqp_url: str,
    postgres_dsn: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    simulators: tuple[LLMSimulator, PlatformSimulator],
) -> AsyncIterator[System]:
    llm, platform = simulators
    env = {
        "AZURE_OPENAI_ENDPOINT": llm.azure_endpoint,
        "AZURE_OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": llm.openai_base_url,
        "OPENAI_API_KEY": "test-key",
        "ONLYFANS_API_URL": platform.url,
        "ONLYFANS_API_TOKEN": PLATFORM_TOKEN,
        "GATEWAY_JWT_SECRET": SECRET,
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_RATE_LIMIT_RPS": "0",
        **DELIVERY_LIMITS,
    }
    workdir: Path = tmp_path_factory.mktemp("fuzz-bus")
    packages = stack_packages()
    async with Stack(amqp_url, postgres_dsn, redis_url, workdir, env=env) as stack:
        await asyncio.gather(*(stack.start(p) for p in packages))
        await stack.start("gateway")
        bus = AmqpBus(amqp_url, namespace=stack.namespace)
        await bus.connect()
        consumers = tuple(s for s in SERVICES if handled_types(s) and s.replace("-", "_") in packages)
        try:
            yield System(bus, consumers, f"http://127.0.0.1:{env['GATEWAY_PORT']}", logs=stack.logs)
        finally:
            await bus.close(grace_s=1)


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
class TestGarbageOnRabbitMQ:
    async def test_every_message_is_dead_lettered_and_nothing_breaks(self, amqp_system: System) -> None:
        """Garbage of every kind on every service's queue, each service its own process: each message is
        dead-lettered with a reason that fits it, a finished workflow reads the same, and new workflows
        (delivery included) complete."""
        assert set(amqp_system.consumers) >= {"router", "azure-worker", "openai-worker", "cost-tracker"}
        await garbage_round(amqp_system, draw_garbage)

    async def test_garbage_in_the_bus_headers_is_dead_lettered(self, amqp_system: System) -> None:
        """Undecodable messages with garbage bus headers are dead-lettered, and the consumers keep serving."""
        await garbage_round(amqp_system, with_bad_headers)
