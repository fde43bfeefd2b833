"""The generated RabbitMQ users, for real: imported into a vhost of their own on the local broker, each
service's bus runs with its own user — what it needs works, the rest is refused by the broker.

Needs `rabbitmqctl` on this machine (as a user allowed to run it) besides the broker itself.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import aiormq
import pytest

from contracts import Envelope, Message
from contracts import messages as m
from contracts import routing as r
from contracts.enums import Provider
from libs.bus import Bus, BusError, PublishError, RedeliveryPolicy, create_bus
from libs.bus.amqp import AmqpBus
from libs.bus.permissions import rabbitmq_definitions, user_name
from tests.bus.conformance import Recorder, eventually, requested

BusAs = Callable[[str], Awaitable[Bus]]
"""A connected bus logged in as the given service's generated user."""

FAST = RedeliveryPolicy(max_deliveries=2, base_s=0.05, cap_s=0.1)


def _rabbitmqctl(*args: str, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], input=stdin, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def _import(definitions: dict[str, Any], vhost: str) -> None:
    """Import from standard input (the broker may not see our temporary files), and wait for the import,
    which runs after the command returns, to reach the bindings (imported last)."""
    _rabbitmqctl("import_definitions", stdin=json.dumps(definitions))
    expected = len(definitions["bindings"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = _rabbitmqctl("list_bindings", "-p", vhost, "source_name", check=False)
        if sum(1 for line in listed.splitlines() if line.strip()) >= expected:
            return
        time.sleep(0.5)
    raise AssertionError("the definitions were not imported within 30 s")


class Broker:
    """A vhost (named like the namespace) with the generated users and topology; guest administers it."""

    def __init__(self, admin_url: str, run: str) -> None:
        self.run = run
        self.passwords = {s: uuid.uuid4().hex for s in r.SERVICES}
        parts = urlsplit(admin_url)
        self.host = f"{parts.hostname}:{parts.port or 5672}"
        self.admin_user = parts.username or "guest"
        self.admin_url = f"amqp://{parts.username}:{parts.password}@{self.host}/{run}"

    def url(self, service: str, *, declare: bool = False) -> str:
        user = user_name(self.run, service)
        suffix = "" if declare else "?declare=false"
        return f"amqp://{quote(user)}:{self.passwords[service]}@{self.host}/{self.run}{suffix}"

    def definitions(self) -> dict[str, Any]:
        document = rabbitmq_definitions(self.run, self.run, self.passwords)
        permissions = document["permissions"]
        assert isinstance(permissions, list)
        permissions.append({"user": self.admin_user, "vhost": self.run, "configure": ".*", "write": ".*", "read": ".*"})
        return document


@pytest.fixture(scope="module")
def broker(amqp_url: str) -> Iterator[Broker]:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to create the test users (it comes with RabbitMQ)", pytrace=False)
    broker = Broker(amqp_url, f"lp{uuid.uuid4().hex[:8]}")
    try:
        _import(broker.definitions(), broker.run)
        yield broker
    finally:
        _rabbitmqctl("delete_vhost", broker.run, check=False)
        for service in r.SERVICES:
            _rabbitmqctl("delete_user", user_name(broker.run, service), check=False)


@pytest.fixture
async def bus_as(broker: Broker) -> AsyncIterator[BusAs]:
    buses: list[Bus] = []

    async def make(service: str) -> Bus:
        bus = create_bus(broker.url(service), namespace=broker.run, policy=FAST)
        await bus.connect()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close(grace_s=1)


def _generation(provider: Provider, workflow: Envelope) -> Envelope:
    assert isinstance(workflow.payload, m.WorkflowRequested)
    return workflow.child(m.GenerationRequested(provider=provider, intent=workflow.payload.intent, timeout_s=5))


class TestGeneratedRabbitmqUsers:
    async def test_router_consumes_its_queue_and_publishes_to_the_workers(self, bus_as: BusAs) -> None:
        """The router, as its own user, takes workflow.requested and publishes to both workers, one delayed."""
        router, azure, openai, gateway = [
            await bus_as(s) for s in (r.ROUTER, r.AZURE_WORKER, r.OPENAI_WORKER, r.GATEWAY)
        ]

        async def on_workflow(envelope: Envelope) -> Message | None:
            await router.publish(_generation(Provider.AZURE, envelope))
            await router.publish(_generation(Provider.OPENAI, envelope), delay=0.2)
            return None

        to_azure, to_openai = Recorder(), Recorder()
        await router.subscribe(r.ROUTER, {m.WorkflowRequested.TYPE: on_workflow})
        await azure.subscribe(r.AZURE_WORKER, {m.GenerationRequested.TYPE: to_azure})
        await openai.subscribe(r.OPENAI_WORKER, {m.GenerationRequested.TYPE: to_openai})
        await gateway.publish(requested())
        await eventually(lambda: len(to_azure.seen) == 1 and len(to_openai.seen) == 1)

    async def test_gateway_request_reply(self, bus_as: BusAs) -> None:
        """The gateway's reply queue (configure + read on `{ns}.reply.*`) gets the router's answer."""
        router, gateway = await bus_as(r.ROUTER), await bus_as(r.GATEWAY)

        async def status(envelope: Envelope) -> Message:
            return m.WorkflowStatusReply(found=False)

        await router.subscribe(r.ROUTER, {m.WorkflowStatusQuery.TYPE: status})
        query = Envelope.new(m.WorkflowStatusQuery(workflow_id=uuid.uuid4(), requester_user_id="u1"), user_id="u1")
        reply = await gateway.request(query, timeout=5)
        assert isinstance(reply.payload, m.WorkflowStatusReply)

    async def test_a_failing_handler_retries_and_dead_letters_with_its_own_user(
        self, bus_as: BusAs, broker: Broker
    ) -> None:
        """A worker's retry (delay exchange, its own key) and dead letter (default exchange) are allowed."""
        worker = await bus_as(r.AZURE_WORKER)
        failing = Recorder(fail_first=10)
        await worker.subscribe(r.AZURE_WORKER, {m.GenerationRequested.TYPE: failing})
        await worker.publish(_generation(Provider.AZURE, requested()))
        await eventually(lambda: len(failing.seen) == FAST.max_deliveries)
        admin = AmqpBus(broker.admin_url, namespace=broker.run)
        await admin.connect()
        try:
            dead: list[object] = []
            for _ in range(50):
                dead += await admin.dead_letters(r.AZURE_WORKER)
                if dead:
                    break
                await asyncio.sleep(0.1)
            assert len(dead) == 1
        finally:
            await admin.close()

    async def test_the_gateway_lists_and_replays_another_service_s_dead_letters(self, bus_as: BusAs) -> None:
        """The gateway's user (read on every DLQ, write on the direct exchange) lists a worker's dead letter
        without taking it, reads the depth, and replays it to the worker's queue; the worker's user may not."""
        worker, gateway = await bus_as(r.AZURE_WORKER), await bus_as(r.GATEWAY)
        await worker.subscribe(r.AZURE_WORKER, {m.GenerationRequested.TYPE: Recorder()})
        sent = _generation(Provider.AZURE, requested())  # v9 of its type: dead-lettered on every delivery
        await worker.publish_raw(r.AZURE_WORKER, sent.encode().replace(b'"version":1', b'"version":9'))
        for _ in range(50):
            if await gateway.dead_letter_depth(r.AZURE_WORKER) == 1:
                break
            await asyncio.sleep(0.1)
        (item,) = await gateway.list_dead_letters(r.AZURE_WORKER)
        assert item.id == str(sent.id) and "v9 is not supported" in item.reason
        assert await gateway.dead_letter_depth(r.AZURE_WORKER) == 1
        assert await gateway.replay_dead_letters(r.AZURE_WORKER, item.id) == 1
        for _ in range(50):  # back through the worker's queue, dead-lettered again
            if [i.replays for i in await gateway.list_dead_letters(r.AZURE_WORKER)] == [1]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the replayed message did not come back as a replayed dead letter")
        with pytest.raises(BusError):
            await worker.list_dead_letters(r.AZURE_WORKER)

    async def test_a_worker_cannot_consume_the_routers_queue(self, bus_as: BusAs) -> None:
        """basic.consume on another service's queue is refused by the broker."""
        worker = await bus_as(r.AZURE_WORKER)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await worker.subscribe(r.ROUTER, {m.WorkflowRequested.TYPE: Recorder()})

    async def test_a_delayed_publish_to_a_service_it_never_sends_to_is_refused(self, bus_as: BusAs) -> None:
        """The delay exchange's topic permission lets a worker reach only its own queue and its targets."""
        worker = await bus_as(r.AZURE_WORKER)
        with pytest.raises(PublishError, match="ACCESS_REFUSED"):
            await worker.publish_raw(r.OF_SENDER, b"{}", delay=1.0)

    async def test_services_cannot_declare_delete_or_read_others(self, broker: Broker) -> None:
        """configure is limited to the gateway's reply queues; no service reads another's or a DLQ."""
        connection = await aio_pika.connect(broker.url(r.AZURE_WORKER).split("?")[0])
        try:
            refused = (
                lambda ch: ch.declare_queue(f"{broker.run}.mine", durable=True),
                lambda ch: ch.queue_delete(f"{broker.run}.{r.ROUTER}"),
                lambda ch: ch.declare_exchange(f"{broker.run}.other", aio_pika.ExchangeType.FANOUT),
            )
            for operation in refused:
                channel = await connection.channel()
                with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                    await operation(channel)
            channel = await connection.channel()
            dlq = await channel.get_queue(f"{broker.run}.{r.AZURE_WORKER}.dlq")
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await dlq.get(fail=False)
        finally:
            await connection.close()

    async def test_the_definitions_topology_is_what_connect_declares(self, broker: Broker) -> None:
        """A declaring bus (administrator) connects to the imported topology: every argument matches."""
        admin = AmqpBus(broker.admin_url, namespace=broker.run)
        await admin.connect()
        try:
            await admin.publish(requested(), delay=0.06)  # declares a tier queue: same arguments again
        finally:
            await admin.close()
