"""A service's bus stops within its grace period whatever the broker's state: RabbitMQ gone (connections
dropped, new ones refused) or silent (connections open, nothing answered). Before, the consumer cancel
waited for a reconnect that never came and the process hung until it was killed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from libs.bus.amqp import AmqpBus
from tests.bus.conformance import ROUTER, Recorder, eventually, requested
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

GRACE_S = 3.0
MARGIN_S = 0.5  # the event loop's own scheduling, not part of the drain


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(amqp_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.fixture
async def namespace(amqp_url: str) -> AsyncIterator[str]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    yield namespace
    cleaner = AmqpBus(amqp_url, namespace=namespace)
    await cleaner.connect()
    await cleaner.destroy()
    await cleaner.close()


async def consuming_bus(amqp_url: str, proxy: TcpProxy, namespace: str, handler: Recorder) -> AmqpBus:
    """A bus connected through the proxy, consuming the router's queue with `handler`."""
    parts = urlsplit(amqp_url)
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    bus = AmqpBus(through_proxy, namespace=namespace)
    await bus.connect()
    await bus.subscribe(ROUTER, {"workflow.requested": handler})
    return bus


async def timed_close(bus: AmqpBus) -> float:
    started = time.monotonic()
    await asyncio.wait_for(bus.close(grace_s=GRACE_S), GRACE_S * 5)  # the bug: no end at all
    return time.monotonic() - started


async def test_close_returns_at_once_when_the_broker_is_gone(amqp_url: str, proxy: TcpProxy, namespace: str) -> None:
    """With RabbitMQ stopped before the service (as `compose down` does), close neither waits for a reconnect
    nor uses up the grace: there is nothing to cancel and nothing in flight."""
    bus = await consuming_bus(amqp_url, proxy, namespace, Recorder())
    await proxy.cut()
    assert bus._connection is not None
    await eventually(lambda: bus._connection is not None and not bus._connection.connected.is_set())
    assert await timed_close(bus) < 1.0


async def test_close_ends_within_the_grace_when_the_broker_is_silent(
    amqp_url: str, proxy: TcpProxy, namespace: str
) -> None:
    """With RabbitMQ silent (connection still open, no answer to anything) and a handler still running, close
    gives the handler the grace and ends within it, instead of waiting for the cancel's answer."""
    slow = Recorder(sleep_s=GRACE_S * 10)
    bus = await consuming_bus(amqp_url, proxy, namespace, slow)
    await bus.publish(requested())
    await eventually(lambda: slow.running == 1)
    proxy.freeze()
    try:
        assert await timed_close(bus) < GRACE_S + MARGIN_S
    finally:
        for task in bus._consumers[0].in_flight:
            task.cancel()  # the handler outlives the grace by design; it ends with the test


async def test_close_still_drains_when_the_broker_is_up(amqp_url: str, proxy: TcpProxy, namespace: str) -> None:
    """With RabbitMQ up, close still lets an in-flight handler finish and the message is acknowledged: the
    bound does not cut a normal drain short."""
    handler = Recorder(sleep_s=0.5)
    bus = await consuming_bus(amqp_url, proxy, namespace, handler)
    await bus.publish(requested())
    await eventually(lambda: handler.running == 1)
    await timed_close(bus)
    assert handler.finished == 1
    later = Recorder()
    again = await consuming_bus(amqp_url, proxy, namespace, later)
    try:
        await asyncio.sleep(1.0)
        assert later.seen == []  # nothing redelivered: the first delivery was acknowledged
    finally:
        await again.close(grace_s=1)
