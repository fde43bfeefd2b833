"""`amqp://`: the bus on RabbitMQ (aio-pika), with no plugins.

Topology, per namespace `ns` (declared by every instance at connect; declaring is idempotent):

    {ns}.direct   direct exchange ── key = queue ──▶ {ns}.{queue}       quorum queue, one per service's lane
    {ns}.delay    topic exchange ── "{tier}.#" ──▶ {ns}.delay.{tier}     quorum queue, TTL = tier ms
                   (expired messages are dead-lettered, at-least-once, to:)
    {ns}.expired  topic exchange ── "*.{queue}" ──▶ {ns}.{queue}
    (default)     ── key = queue name ──▶ {ns}.{queue}.dlq               quorum queue, reason in a header

`queue` is a service's name for its default lane, `{service}.{lane}` for another (contracts.routing).

With `declare=false` in BUS_URL (`amqp://user:pass@host/vhost?declare=false`) the bus declares nothing but
its own reply queue: it only looks the exchanges up, so a service whose broker user has no `configure`
permission on them still connects (the topology is provisioned once, e.g. from the definitions that
`python -m libs.bus.permissions rabbitmq` generates; see libs.bus.permissions).

Replies leave on a second connection, opened by the first reply a process sends. On the connection a
router fans a campaign out on, a reply queued behind the fan-out's publishes (and RabbitMQ throttles a
connection that publishes faster than its queues take messages): in the campaign bench a status reply made
0.3 s after its query reached the gateway 2 s later; on its own connection, in about 15 ms.

Dead-letter queues are bounded (DLQ_ARGUMENTS) and listed, replayed and measured through libs.bus.amqp_dead.

Delays use fixed-TTL tier queues (no head-of-line blocking: every message in a tier waits the same time).
A delay is covered by hops through the largest tier not longer than what remains; the consumer sends a
message that arrives early on to its next tier instead of handling it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from contracts.routing import QUEUES
from libs.bus import amqp_dead
from libs.bus import constants as c
from libs.bus.amqp_dead import text_headers
from libs.bus.base import Bus, Consumer, DeadLetter, Verdict, int_header, new_instance_id
from libs.bus.errors import BusConnectionError, BusError, PublishError, Unroutable

log = structlog.get_logger("libs.bus.amqp")

# Delay tiers in milliseconds: 50 ms · 2^k, up to ~27 minutes per hop.
DELAY_TIERS_MS = tuple(50 * 2**k for k in range(16))
# Quorum queues count deliveries themselves; beyond this the broker dead-letters a message that keeps
# crashing its consumer (a process dying mid-handler never reaches our own bounded retry).
BROKER_DELIVERY_LIMIT = 20
# How long a publish waits for a lost connection to come back before failing.
RECONNECT_WAIT_S = 30.0
RECONNECT_INTERVAL_S = 1.0
# A consumer cancel is one round trip to a live broker; one that dies mid-cancel cannot hold close() longer.
CANCEL_TIMEOUT_S = 5.0
CLOSE_RESERVE_S = 1.0  # of close()'s grace, kept for closing the connection if the drain is cut short
# How long a dead-letter look waits for the messages it took without acknowledging to be back in their queue.
DEAD_LETTERS_BACK_WAIT_S = 2.0
DEAD_LETTERS_BACK_POLL_S = 0.01


def tier_for(remaining_ms: int) -> int | None:
    """The largest delay tier not longer than `remaining_ms` (None: due within the smallest tier)."""
    if remaining_ms < DELAY_TIERS_MS[0]:
        return None
    return max((t for t in DELAY_TIERS_MS if t <= remaining_ms), default=None)


def delay_binding(tier: int) -> str:
    """The key binding the delay queue of `tier` ms: `{tier}.{queue}`, a lane's queue name having a "." too.
    (Before lanes it was `{tier}.*`; a broker keeping that binding as well delivers one copy all the same.)"""
    return f"{tier}.#"


def service_queue_arguments(namespace: str, service: str) -> dict[str, Any]:
    """Arguments of a service's queue (what `connect` declares and provisioning must match exactly)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": BROKER_DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": c.dlq_name(namespace, service),
    }


def tier_queue_arguments(namespace: str, tier: int) -> dict[str, Any]:
    """Arguments of the delay queue of `tier` ms."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": tier,
        "x-dead-letter-exchange": f"{namespace}.expired",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


# Dead-letter queues are bounded (libs.bus.constants.DEAD_LETTER_MAX_LENGTH). `drop-head`, not
# `reject-publish`: a full DLQ refusing a dead letter would leave the failing message unacknowledged on its
# service's queue, redelivered until the broker's delivery limit drops it anyway; dropping the oldest dead
# letter keeps the service moving and the newest reasons visible. Queue arguments cannot change on an
# existing queue (PRECONDITION_FAILED): `connect` then keeps the old DLQ and warns (README: migrating).
DLQ_ARGUMENTS: Mapping[str, Any] = {
    "x-queue-type": "quorum",
    "x-max-length": c.DEAD_LETTER_MAX_LENGTH,
    "x-overflow": "drop-head",
}


def split_declare_option(url: str) -> tuple[str, bool]:
    """`url` without our own `declare` parameter (aio-pika must not see it), and its value (default true)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    declare = True
    for key, value in query:
        if key == "declare":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"BUS_URL parameter declare must be true or false, not {value!r}")
            declare = value.lower() == "true"
    kept = urlencode([(k, v) for k, v in query if k != "declare"])
    return urlunsplit(parts._replace(query=kept)), declare


class AmqpBus(Bus):
    system = "rabbitmq"

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url, self.declare = split_declare_option(url)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._tiers_declared: set[int] = set()
        self._consumer_channels: dict[int, tuple[AbstractChannel, AbstractQueue, str]] = {}
        self._reply_name: str | None = None
        self._declare_lock = asyncio.Lock()
        # Replies leave on a connection of their own, opened by the first one (see the module docstring).
        self._answer_connection: AbstractRobustConnection | None = None
        self._answer_exchange: AbstractExchange | None = None
        self._answer_lock = asyncio.Lock()

    def _q(self, service: str) -> str:
        return c.queue_name(self.namespace, service)

    # --- connection and topology -------------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(
                self.url, reconnect_interval=RECONNECT_INTERVAL_S, client_properties={"connection_name": "ho"}
            )
            self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._declare_topology(self._publish_channel)
        except (OSError, aiormq.exceptions.AMQPError) as exc:
            raise BusConnectionError(f"cannot connect to RabbitMQ: {exc}") from exc

    async def _declare_topology(self, channel: AbstractChannel) -> None:
        ns = self.namespace
        self._exchanges["default"] = channel.default_exchange
        if not self.declare:
            # Passive look-ups need no permission; a missing exchange fails here, at connect.
            for kind in ("direct", "delay", "expired"):
                self._exchanges[kind] = await channel.get_exchange(f"{ns}.{kind}", ensure=True)
            return
        durable = aio_pika.ExchangeType
        self._exchanges["direct"] = await channel.declare_exchange(f"{ns}.direct", durable.DIRECT, durable=True)
        self._exchanges["delay"] = await channel.declare_exchange(f"{ns}.delay", durable.TOPIC, durable=True)
        expired = await channel.declare_exchange(f"{ns}.expired", durable.TOPIC, durable=True)
        self._exchanges["expired"] = expired
        # The dead-letter queues one after the other: the broker closes the channel of one it refuses, and a
        # channel it closes while others open can have its number reused too early ("second 'channel.open'
        # seen", which closes the whole connection). Then every queue at once, each on a channel of its own:
        # a quorum queue takes the broker a round of its own to create, and there is one per service lane.
        for name in QUEUES:
            await self._declare_dead_letter_queue(c.dlq_name(ns, name))
        await asyncio.gather(*(self._declare_queue(name) for name in QUEUES))

    async def _declare_queue(self, name: str) -> None:
        """Declare the queue `name` (contracts.routing.QUEUES) and its bindings; its DLQ exists already."""
        assert self._connection is not None
        ns = self.namespace
        async with self._connection.channel() as channel:
            queue = await channel.declare_queue(
                self._q(name), durable=True, arguments=service_queue_arguments(ns, name)
            )
            await queue.bind(self._exchanges["direct"], routing_key=name)
            await queue.bind(self._exchanges["expired"], routing_key=f"*.{name}")

    async def _declare_dead_letter_queue(self, name: str) -> None:
        """Declare a DLQ on a channel of its own: a DLQ declared by an older release without the bound has
        other arguments, the broker refuses the declaration and closes that channel — the bus still works
        (with the old, unbounded DLQ) and says so."""
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            await channel.declare_queue(name, durable=True, arguments=dict(DLQ_ARGUMENTS))
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            log.warning("bus.amqp.dlq_arguments_differ", queue=name, error=str(exc))
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _tier_exchange(self, tier: int) -> AbstractExchange:
        """The delay exchange, after making sure the queue of `tier` exists (tiers are declared lazily)."""
        if self.declare and tier not in self._tiers_declared:
            async with self._declare_lock:
                assert self._publish_channel is not None
                queue = await self._publish_channel.declare_queue(
                    f"{self.namespace}.delay.{tier}", durable=True, arguments=tier_queue_arguments(self.namespace, tier)
                )
                await queue.bind(self._exchanges["delay"], routing_key=delay_binding(tier))
                self._tiers_declared.add(tier)
        return self._exchanges["delay"]

    # --- publishing --------------------------------------------------------------------------------------

    async def _send(
        self, key: str, services: tuple[str, ...], body: bytes, headers: dict[str, str], delay: float
    ) -> None:
        if not services:
            raise Unroutable(f"no service consumes {key!r}")
        for service in services:
            await self._send_one(service, body, headers, int(delay * 1000))

    async def _send_one(self, service: str, body: bytes, headers: Mapping[str, str], delay_ms: int) -> None:
        tier = tier_for(delay_ms)
        message = aio_pika.Message(
            body,
            headers=dict(headers),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
        )
        if tier is None:
            await self._confirmed(lambda: self._exchanges["direct"].publish(message, routing_key=service))
        else:
            exchange = await self._tier_exchange(tier)
            await self._confirmed(lambda: exchange.publish(message, routing_key=f"{tier}.{service}"))

    async def _confirmed(self, publish: Any) -> None:
        """Run a publish until the broker confirms it, riding out a reconnect (a retry may duplicate: the
        envelope id lets consumers de-duplicate)."""
        deadline = time.monotonic() + RECONNECT_WAIT_S
        while True:
            try:
                await publish()
                return
            except aio_pika.exceptions.PublishError as exc:
                raise Unroutable(f"broker could not route the message: {exc}") from exc
            except aio_pika.exceptions.DeliveryError as exc:
                raise PublishError(f"broker refused the message: {exc}") from exc
            except aiormq.exceptions.ChannelAccessRefused as exc:
                # The broker user may not write there (libs.bus.permissions): retrying cannot help.
                raise PublishError(f"broker refused access: {exc}") from exc
            except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                if time.monotonic() > deadline:
                    raise PublishError(f"publish not confirmed: {exc!r}") from exc
                log.warning("bus.amqp.publish_retry", error=repr(exc))
                await asyncio.sleep(RECONNECT_INTERVAL_S / 2)

    async def _reply(self, reply_to: str, body: bytes, headers: dict[str, str]) -> None:
        message = aio_pika.Message(body, headers=dict(headers), content_type="application/json")
        exchange = await self._answer_exchange_()
        # Not mandatory: a requester that gave up (and lost its reply queue) is not this handler's failure.
        await self._confirmed(lambda: exchange.publish(message, routing_key=reply_to, mandatory=False))

    async def _answer_exchange_(self) -> AbstractExchange:
        """The default exchange on the connection replies leave by, opened on the first reply."""
        if self._answer_exchange is None:
            async with self._answer_lock:
                if self._answer_exchange is None:
                    try:
                        connection = await aio_pika.connect_robust(
                            self.url,
                            reconnect_interval=RECONNECT_INTERVAL_S,
                            client_properties={"connection_name": "ho-replies"},
                        )
                        channel = await connection.channel(publisher_confirms=True)
                    except (OSError, aiormq.exceptions.AMQPError) as exc:
                        raise PublishError(f"cannot open the reply connection: {exc!r}") from exc
                    self._answer_connection = connection
                    self._answer_exchange = channel.default_exchange
        return self._answer_exchange

    async def _reply_queue(self) -> str:
        if self._reply_name is None:
            async with self._declare_lock:
                if self._reply_name is None:
                    assert self._connection is not None
                    channel = await self._connection.channel()
                    name = f"{self.namespace}.reply.{new_instance_id()}"
                    queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)

                    async def on_reply(message: AbstractIncomingMessage) -> None:
                        self._resolve_reply(message.body, text_headers(message.headers))

                    await queue.consume(on_reply, no_ack=True)
                    self._reply_name = name
        return self._reply_name

    # --- consuming ---------------------------------------------------------------------------------------

    async def _start_consumer(self, consumer: Consumer) -> None:
        """Consume `consumer`'s queue, riding out a connection the broker closes meanwhile: under load a
        quorum queue can answer basic.consume with "timed out consuming" (INTERNAL_ERROR), which closes the
        whole connection; the robust connection reconnects (restoring the consumers already started) and
        this one is started again on it, within RECONNECT_WAIT_S."""
        deadline = time.monotonic() + RECONNECT_WAIT_S
        while True:
            try:
                self._consumer_channels[id(consumer)] = await self._consume(consumer)
                return
            except (aiormq.exceptions.AMQPConnectionError, RuntimeError) as exc:  # RuntimeError: not yet back
                if time.monotonic() > deadline:
                    raise BusConnectionError(f"cannot consume {consumer.service!r}: {exc!r}") from exc
                log.warning("bus.amqp.consume_retry", service=consumer.service, error=repr(exc))
                await asyncio.sleep(RECONNECT_INTERVAL_S)

    async def _consume(self, consumer: Consumer) -> tuple[AbstractChannel, AbstractQueue, str]:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=consumer.prefetch)
        queue = await channel.declare_queue(self._q(consumer.service), passive=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                consumer.track(task)
            await self._process(consumer, message)

        return channel, queue, await queue.consume(on_message)

    async def _process(self, consumer: Consumer, message: AbstractIncomingMessage) -> None:
        headers = text_headers(message.headers)
        due = int_header(headers, c.H_DELIVER_AT)
        remaining = due - int(time.time() * 1000)
        if tier_for(remaining) is not None:
            await self._send_one(consumer.service, message.body, headers, remaining)
            await self._settle(message)
            return
        if remaining > 0:
            await asyncio.sleep(remaining / 1000)  # below the smallest tier: never early
        outcome = await consumer.handle(message.body, headers, int_header(headers, c.H_BROKER_DELIVERIES))
        if outcome.verdict is Verdict.RETRY:
            await self._send_one(consumer.service, message.body, outcome.headers, int(outcome.delay_s * 1000))
        elif outcome.verdict is Verdict.DEAD:
            await self._dead_letter(consumer.service, message.body, outcome.headers)
        await self._settle(message)

    async def _dead_letter(self, service: str, body: bytes, headers: Mapping[str, str]) -> None:
        dead = aio_pika.Message(
            body,
            headers=dict(headers),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        dlq = c.dlq_name(self.namespace, service)
        await self._confirmed(lambda: self._exchanges["default"].publish(dead, routing_key=dlq))

    @staticmethod
    async def _settle(message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except (aiormq.exceptions.AMQPError, RuntimeError) as exc:
            # The channel died after the work was done: the broker redelivers; handlers are idempotent.
            log.warning("bus.amqp.ack_lost", error=repr(exc))

    async def close(self, grace_s: float = c.SHUTDOWN_GRACE_S) -> None:
        """The base's drain, all of it within `grace_s` whatever the broker's state: with the broker gone, the
        robust connection's calls wait for a reconnect that may never come, so the drain is cut short at the
        grace and the connection closed in what is kept back for it."""
        reserve = min(CLOSE_RESERVE_S, grace_s / 4)
        try:
            async with asyncio.timeout(grace_s - reserve):
                await super().close(grace_s - reserve)
        except TimeoutError:
            log.warning("bus.amqp.drain_cut_short", grace_s=grace_s)
            try:
                await asyncio.wait_for(self._disconnect(), reserve)
            except TimeoutError:
                log.warning("bus.amqp.close_abandoned")
                self._connection = None

    async def _stop_consumer(self, consumer: Consumer) -> None:
        entry = self._consumer_channels.get(id(consumer))
        if entry is None:
            return
        if self._connection is None or not self._connection.connected.is_set():
            # Nothing to cancel: the broker dropped the consumer with the connection, and the cancel would
            # wait for a reconnect that may never come.
            log.info("bus.amqp.cancel_skipped", reason="not connected")
            return
        _, queue, tag = entry
        try:
            await asyncio.wait_for(queue.cancel(tag), CANCEL_TIMEOUT_S)
        except (aiormq.exceptions.AMQPError, RuntimeError, TimeoutError) as exc:
            log.warning("bus.amqp.cancel_failed", error=repr(exc))

    async def _disconnect(self) -> None:
        if self._answer_connection is not None:
            await self._answer_connection.close()
            self._answer_connection = None
            self._answer_exchange = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    # --- operations --------------------------------------------------------------------------------------

    async def dead_letters(self, service: str) -> list[DeadLetter]:
        async with self._dead_letter_queue(service) as (queue, _):
            return await amqp_dead.drain(queue)

    async def peek_dead_letters(self, service: str, limit: int) -> list[DeadLetter]:
        """basic.get without acknowledging, then the channel closes (libs.bus.amqp_dead explains)."""
        async with self._dead_letter_queue(service) as (queue, depth):
            seen = await amqp_dead.peek(queue, depth, limit)
        await self._dead_letters_back(service, depth)
        return seen

    async def replay_dead_letters(self, service: str, message_id: str | None = None) -> int:
        async def send(body: bytes, headers: dict[str, str]) -> None:
            await self._send(f"replay.{service}", (service,), body, headers, 0.0)

        async with self._dead_letter_queue(service) as (queue, depth):
            replayed = await amqp_dead.replay(queue, depth, message_id, new_instance_id(), send)
        await self._dead_letters_back(service, depth - replayed)
        return replayed

    async def dead_letter_depth(self, service: str) -> int:
        async with self._dead_letter_queue(service) as (_, depth):
            return depth

    async def _dead_letters_back(self, service: str, ready: int) -> None:
        """Wait until the messages a closed channel handed back are ready again (at least `ready`): the broker
        puts them back after answering the close, so a look right after — the depth, a replay — could miss
        them. Bounded: another operator's replay meanwhile can leave fewer for good."""
        deadline = asyncio.get_running_loop().time() + DEAD_LETTERS_BACK_WAIT_S
        while await self.dead_letter_depth(service) < ready:
            if asyncio.get_running_loop().time() > deadline:
                log.warning("bus.amqp.dead_letters_not_back", service=service, expected=ready)
                return
            await asyncio.sleep(DEAD_LETTERS_BACK_POLL_S)

    @asynccontextmanager
    async def _dead_letter_queue(self, service: str) -> AsyncIterator[tuple[AbstractQueue, int]]:
        """`service`'s DLQ looked up (passive: no permission needed) on a channel of its own, and its ready
        messages; closing the channel returns whatever was taken and not acknowledged."""
        if self._connection is None:
            raise BusConnectionError("not connected to RabbitMQ")
        try:
            async with self._connection.channel() as channel:
                queue = await channel.declare_queue(c.dlq_name(self.namespace, service), passive=True)
                result = queue.declaration_result
                yield queue, int(result.message_count or 0) if result is not None else 0
        except aiormq.exceptions.AMQPError as exc:
            raise BusError(f"dead-letter queue of {service}: {exc!r}") from exc

    async def ping(self) -> None:
        if self._connection is None or self._connection.is_closed or not self._connection.connected.is_set():
            raise BusConnectionError("not connected to RabbitMQ")

    async def destroy(self) -> None:
        """Delete this namespace's queues and exchanges (tests and teardown of temporary environments)."""
        assert self._connection is not None
        async with self._connection.channel() as channel:
            names = [self._q(s) for s in QUEUES] + [c.dlq_name(self.namespace, s) for s in QUEUES]
            names += [f"{self.namespace}.delay.{t}" for t in DELAY_TIERS_MS]
            for name in names:
                await channel.queue_delete(name, if_unused=False, if_empty=False)
            for kind in ("direct", "delay", "expired"):
                await channel.exchange_delete(f"{self.namespace}.{kind}")
