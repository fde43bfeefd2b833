"""The conformance suite on RabbitMQ, plus what only a real broker can show (reconnects, mandatory)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator

import aiormq
import pytest
from structlog.testing import capture_logs

from libs.bus import Bus, RedeliveryPolicy, Unroutable, amqp
from libs.bus.amqp import AmqpBus, tier_for
from libs.bus.base import Consumer
from tests.bus.conformance import ROUTER, BusConformance, MakeBus, Recorder, eventually, requested
from tests.bus.conformance_dead_letters import Rejecting, listed

FAST = RedeliveryPolicy(max_deliveries=3, base_s=0.05, cap_s=0.2)


@pytest.fixture
async def make_bus(amqp_url: str) -> AsyncIterator[MakeBus]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    buses: list[AmqpBus] = []

    async def make() -> Bus:
        bus = AmqpBus(amqp_url, namespace=namespace, policy=FAST)
        await bus.connect()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close(grace_s=1)
    cleaner = AmqpBus(amqp_url, namespace=namespace)
    await cleaner.connect()
    await cleaner.destroy()
    await cleaner.close()


class TestAmqpBusConformance(BusConformance):
    DURABLE = True

    async def test_amqp_unroutable_by_the_broker_raises(self, make_bus: MakeBus) -> None:
        """With the target queue gone, the broker returns the mandatory publish and publish raises."""
        bus = await make_bus()
        assert isinstance(bus, AmqpBus)
        assert bus._connection is not None
        async with bus._connection.channel() as channel:
            await channel.queue_delete(f"{bus.namespace}.{ROUTER}", if_unused=False, if_empty=False)
        with pytest.raises(Unroutable):
            await bus.publish(requested())

    @pytest.mark.serial
    async def test_amqp_consumers_survive_a_dropped_connection(self, make_bus: MakeBus) -> None:
        """After `rabbitmqctl close_all_connections` the consumer is restored and nothing confirmed is lost."""
        bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        before = requested(1)
        await bus.publish(before)
        await eventually(lambda: len(rec.seen) == 1)
        await _close_all_connections()
        after = requested(2)
        await bus.publish(after)  # rides out the reconnect
        await eventually(lambda: any(e.id == after.id for e in rec.seen), timeout=30)
        assert {e.id for e in rec.seen} == {before.id, after.id}

    @pytest.mark.serial
    async def test_amqp_a_consumer_starts_although_the_broker_closes_the_connection_meanwhile(
        self, make_bus: MakeBus, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The broker closes the connection while a consumer starts (as a quorum queue's "timed out consuming"
        INTERNAL_ERROR does): subscribe retries on the reconnected connection, and messages flow."""
        bus = await make_bus()
        consume = AmqpBus._consume
        closed: list[bool] = []

        async def closed_on_first_attempt(self: AmqpBus, consumer: Consumer) -> object:
            if not closed:
                closed.append(True)
                await _close_all_connections()
                # What basic.consume raises when the broker closes the connection under it. Raised here rather
                # than left to a race: the robust connection reconnects within milliseconds, so a real
                # consume after the command would as often succeed on the new connection.
                raise aiormq.exceptions.ConnectionInternalError(541, "INTERNAL_ERROR - timed out consuming")
            return await consume(self, consumer)

        monkeypatch.setattr(AmqpBus, "_consume", closed_on_first_attempt)
        rec = Recorder()
        with capture_logs() as logs:
            await bus.subscribe(ROUTER, {"workflow.requested": rec})
        # The first lane's consumer started again once the connection was back (retried until it was); the
        # other lanes then at once.
        assert {e["service"] for e in logs if e["event"] == "bus.amqp.consume_retry"} == {ROUTER}
        sent = requested()
        await bus.publish(sent)
        await eventually(lambda: [e.id for e in rec.seen] == [sent.id], timeout=30)

    async def test_amqp_a_dlq_declared_without_the_bound_still_connects(self, make_bus: MakeBus) -> None:
        """A DLQ an older release declared without x-max-length makes connect warn, not fail, and dead letters
        still reach it (README: migrating a DLQ to the bound)."""
        bus = await make_bus()
        assert isinstance(bus, AmqpBus) and bus._connection is not None
        dlq = f"{bus.namespace}.{ROUTER}.dlq"
        async with bus._connection.channel() as channel:
            await channel.queue_delete(dlq, if_unused=False, if_empty=False)
            await channel.declare_queue(dlq, durable=True, arguments={"x-queue-type": "quorum"})
        with capture_logs() as logs:
            again = await make_bus()
        assert [e["queue"] for e in logs if e["event"] == "bus.amqp.dlq_arguments_differ"] == [dlq]
        await again.subscribe(ROUTER, {"workflow.requested": Rejecting()})
        await again.publish(requested())
        assert (await listed(again, 1))[0].reason == "rejected: attempt 1"

    async def test_amqp_a_full_dead_letter_queue_drops_its_oldest(
        self, make_bus: MakeBus, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the bound at 3 (x-max-length, drop-head), five dead letters leave the newest three."""
        monkeypatch.setattr(amqp, "DLQ_ARGUMENTS", {**amqp.DLQ_ARGUMENTS, "x-max-length": 3})
        bus = await make_bus()
        sent = [requested(n) for n in range(5)]
        for envelope in sent:  # one at a time: the order they are dead-lettered in is the order published
            await bus.publish_raw(ROUTER, envelope.encode().replace(b'"version":1', b'"version":9'))
        await bus.subscribe(ROUTER, {}, prefetch=1)
        newest = [str(e.id) for e in sent[2:]]
        for _ in range(100):
            if [i.id for i in await bus.list_dead_letters(ROUTER)] == newest:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"expected the newest three, listed {await bus.list_dead_letters(ROUTER)}")
        assert await bus.dead_letter_depth(ROUTER) == 3


async def _close_all_connections() -> None:
    """What a broker restart or an operator's `rabbitmqctl close_all_connections` does to every client."""
    await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "close_all_connections", "conformance test"],
        check=True,
        capture_output=True,
    )


class TestDelayTiers:
    def test_tier_is_largest_not_longer_than_remaining(self) -> None:
        """A delay is covered by tiers that never overshoot, and tiny remainders are due now."""
        assert tier_for(10) is None
        assert tier_for(50) == 50
        assert tier_for(1499) == 800
        assert tier_for(15 * 60 * 1000) == 819200
