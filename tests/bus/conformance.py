"""The bus conformance suite: written once, subclassed per transport (docs/architecture.md#the-bus).

A transport's test module subclasses `BusConformance` and provides the `make_bus` fixture: an async factory
returning a connected bus on a namespace private to the test (the same namespace on every call within one
test, so a second bus instance sees the first one's queues, as a restarted process would).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts import Envelope, Message
from contracts import messages as m
from contracts.enums import Priority
from libs.bus import Bus, RequestTimeout, Unroutable, message_priority, reply_address
from libs.bus.errors import Reject
from libs.storage import DatabaseError
from tests.bus.conformance_dead_letters import DeadLetterConformance

MakeBus = Callable[..., Awaitable[Bus]]
ROUTER = "router"


def requested(n: int = 0, priority: Priority = Priority.MEDIUM) -> Envelope:
    intent = m.Intent(type="message_generation", data={"n": n}, priority=priority)
    return Envelope.new(m.WorkflowRequested(intent=intent), workflow_id=uuid.uuid4(), user_id="u1")


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# The bus times a delay on the wall clock and the test on the monotonic one; a timer may also fire within the
# event loop's clock resolution of its time (seen: 0.2 ms early).
CLOCKS_S = 0.005


class Recorder:
    """A handler that records what it saw; `fail_first` makes its first N runs raise."""

    def __init__(self, fail_first: int = 0, sleep_s: float = 0.0) -> None:
        self.seen: list[Envelope] = []
        self.times: list[float] = []
        self.fail_first = fail_first
        self.sleep_s = sleep_s
        self.running = 0
        self.max_running = 0
        self.finished = 0

    async def __call__(self, envelope: Envelope) -> Message | None:
        self.seen.append(envelope)
        self.times.append(time.monotonic())
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.sleep_s:
                await asyncio.sleep(self.sleep_s)
            if len(self.seen) <= self.fail_first:
                raise RuntimeError(f"boom {len(self.seen)}")
        finally:
            self.running -= 1
        self.finished += 1
        return None


class BusConformance(DeadLetterConformance):
    """Semantics every transport must show. Subclasses set DURABLE and provide `make_bus`."""

    DURABLE: ClassVar[bool] = True  # does a message survive its bus instance (a process restart)?

    async def test_publish_then_consume(self, make_bus: MakeBus) -> None:
        """A published message reaches the consuming service's handler intact."""
        bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        sent = requested()
        await bus.publish(sent)
        await eventually(lambda: len(rec.seen) == 1)
        assert rec.seen[0] == sent

    async def test_handler_exception_redelivers(self, make_bus: MakeBus) -> None:
        """A handler that raises sees the message again until it succeeds; nothing is dead-lettered."""
        bus = await make_bus()
        rec = Recorder(fail_first=2)
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        await bus.publish(requested())
        await eventually(lambda: rec.finished == 1)
        assert len(rec.seen) == 3
        assert len({e.id for e in rec.seen}) == 1
        assert await bus.dead_letters(ROUTER) == []

    async def test_bounded_redelivery_then_dead_letter_with_reason(self, make_bus: MakeBus) -> None:
        """A message that always fails is tried max_deliveries times, then dead-lettered with the error."""
        bus = await make_bus()
        rec = Recorder(fail_first=1000)
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        sent = requested()
        await bus.publish(sent)
        dead = await self._wait_dead(bus, 1)
        assert len(rec.seen) == bus.policy.max_deliveries
        assert f"boom {bus.policy.max_deliveries}" in dead[0].reason
        assert Envelope.decode(dead[0].body).id == sent.id

    async def test_reject_dead_letters_at_once(self, make_bus: MakeBus) -> None:
        """A handler raising Reject is not retried: the message goes straight to the dead-letter queue."""
        bus = await make_bus()
        calls: list[Envelope] = []

        async def reject(envelope: Envelope) -> None:
            calls.append(envelope)
            raise Reject("never valid")

        await bus.subscribe(ROUTER, {"workflow.requested": reject})
        await bus.publish(requested())
        dead = await self._wait_dead(bus, 1)
        assert len(calls) == 1
        assert "never valid" in dead[0].reason

    async def test_a_permanent_error_dead_letters_at_once_with_its_reason(self, make_bus: MakeBus) -> None:
        """A handler's error marked permanent (the database refused the data itself) is dead-lettered on its
        first delivery with the error as the reason, not retried max_deliveries times."""
        bus = await make_bus()
        calls: list[Envelope] = []

        async def refused(envelope: Envelope) -> None:
            calls.append(envelope)
            raise DatabaseError("insert failed: UntranslatableCharacterError: \\u0000", retryable=False, permanent=True)

        await bus.subscribe(ROUTER, {"workflow.requested": refused})
        await bus.publish(requested())
        dead = await self._wait_dead(bus, 1)
        assert len(calls) == 1
        assert "permanent: DatabaseError: insert failed: UntranslatableCharacterError" in dead[0].reason

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"\x00\x01garbage", "not JSON"),
            (b'{"type": "no.such.type", "version": 1, "payload": {}}', "unknown message type"),
            (b'{"type": "workflow.requested", "version": 7, "payload": {}}', "v7 is not supported"),
            (b'{"type": "workflow.requested", "version": 1, "payload": {"intent": 3}}', "intent"),
        ],
    )
    async def test_undecodable_messages_are_dead_lettered_and_consumer_keeps_serving(
        self, make_bus: MakeBus, body: bytes, reason: str
    ) -> None:
        """Garbage, unknown types and unknown versions go to the DLQ with a reason; good messages still flow."""
        bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        await bus.publish_raw(ROUTER, body)
        await bus.publish(requested())
        dead = await self._wait_dead(bus, 1)
        assert reason in dead[0].reason
        assert dead[0].body == body
        await eventually(lambda: rec.finished == 1)

    async def test_garbled_bus_headers_neither_lose_nor_jam_a_message(self, make_bus: MakeBus) -> None:
        """A valid message whose bus headers are garbage is still handled, and the consumer keeps serving."""
        bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec}, prefetch=1)
        garbled = requested(1)
        headers = {"x-ho-deliveries": "x", "x-ho-deliver-at": "soon"}
        await bus.publish_raw(ROUTER, garbled.encode(), headers)
        await bus.publish(requested(2))
        await eventually(lambda: rec.finished == 2)
        assert rec.seen[0].id == garbled.id

    async def test_delayed_delivery_fires_on_time(self, make_bus: MakeBus) -> None:
        """A delayed message is handled no earlier than asked and within one second after."""
        bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        start = time.monotonic()
        await bus.publish(requested(), delay=1.5)
        await eventually(lambda: len(rec.seen) == 1, timeout=5)
        late = rec.times[0] - start
        assert 1.5 - CLOCKS_S <= late <= 2.5, late

    async def test_publish_all_stores_each_at_its_own_delay(self, make_bus: MakeBus) -> None:
        """publish_all: every message is stored, each handled no earlier than its own delay."""
        bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        later, now = requested(), requested()
        start = time.monotonic()
        await bus.publish_all([later, now], delays=[1.5, 0.0])
        await eventually(lambda: len(rec.seen) == 2, timeout=5)
        assert [e.id for e in rec.seen] == [now.id, later.id]
        assert rec.times[0] - start < 1.5 - CLOCKS_S <= rec.times[1] - start <= 2.5, [t - start for t in rec.times]

    async def test_published_message_waits_for_a_consumer(self, make_bus: MakeBus) -> None:
        """publish returns once the message is stored: a consumer started later (in another bus) gets it."""
        bus = await make_bus()
        sent = requested()
        await bus.publish(sent)
        if self.DURABLE:
            await bus.close()
            bus = await make_bus()
        rec = Recorder()
        await bus.subscribe(ROUTER, {"workflow.requested": rec})
        await eventually(lambda: len(rec.seen) == 1)
        assert rec.seen[0].id == sent.id

    async def test_unroutable_publish_raises(self, make_bus: MakeBus) -> None:
        """A message no service consumes is refused, not silently dropped."""
        bus = await make_bus()
        reply = Envelope.new(m.WorkflowStatusReply(found=False))
        with pytest.raises(Unroutable):
            await bus.publish(reply)

    async def test_prefetch_bounds_concurrency(self, make_bus: MakeBus) -> None:
        """No more than `prefetch` handlers of one subscription run at once."""
        bus = await make_bus()
        rec = Recorder(sleep_s=0.2)
        await bus.subscribe(ROUTER, {"workflow.requested": rec}, prefetch=3)
        for n in range(9):
            await bus.publish(requested(n))
        await eventually(lambda: rec.finished == 9)
        assert rec.max_running == 3

    async def test_graceful_shutdown_finishes_in_flight_and_takes_no_new(self, make_bus: MakeBus) -> None:
        """close() lets the running handler finish, starts no other, and the rest stays queued."""
        bus = await make_bus()
        rec = Recorder(sleep_s=0.5)
        await bus.subscribe(ROUTER, {"workflow.requested": rec}, prefetch=1)
        first, second = requested(1), requested(2)
        await bus.publish(first)
        await bus.publish(second)
        await eventually(lambda: rec.running == 1)
        await bus.close()
        assert rec.finished == 1
        assert [e.id for e in rec.seen] == [first.id]
        if self.DURABLE:
            later = Recorder()
            bus = await make_bus()
            await bus.subscribe(ROUTER, {"workflow.requested": later})
            await eventually(lambda: len(later.seen) == 1)
            assert later.seen[0].id == second.id

    async def test_request_reply(self, make_bus: MakeBus) -> None:
        """A request gets the handler's returned payload back as a reply caused by the request."""
        bus = await make_bus()

        async def status(envelope: Envelope) -> Message:
            assert isinstance(envelope.payload, m.WorkflowStatusQuery)
            return m.WorkflowStatusReply(found=False)

        await bus.subscribe(ROUTER, {"workflow.status.query": status})
        wid = uuid.uuid4()
        query = Envelope.new(m.WorkflowStatusQuery(workflow_id=wid, requester_user_id="u1"), user_id="u1")
        reply = await bus.request(query, timeout=5)
        assert isinstance(reply.payload, m.WorkflowStatusReply)
        assert reply.payload.found is False
        assert reply.causation_id == query.id

    async def test_reply_sent_after_the_handler_returned(self, make_bus: MakeBus) -> None:
        """A handler may keep its request's reply address, return None (the message is settled, its prefetch
        slot free), and answer later; a message that is not a request has no address."""
        bus = await make_bus()
        later: list[asyncio.Task[None]] = []
        addresses: list[object] = []

        async def status(envelope: Envelope) -> None:
            address = reply_address()
            assert address is not None and address.request.id == envelope.id

            async def answer() -> None:
                await asyncio.sleep(0.3)
                await bus.reply_later(address, m.WorkflowStatusReply(found=False))

            later.append(asyncio.create_task(answer()))

        async def plain(envelope: Envelope) -> None:
            addresses.append(reply_address())

        # Both on the router's query lane, which takes one message at a time.
        await bus.subscribe(ROUTER, {"workflow.status.query": status, "workflow.list.query": plain}, prefetch=1)
        query = Envelope.new(m.WorkflowStatusQuery(workflow_id=uuid.uuid4(), requester_user_id="u1"), user_id="u1")
        asked = asyncio.create_task(bus.request(query, timeout=5))
        listing = Envelope.new(m.WorkflowListQuery(requester=m.Requester(user_id="u1")), user_id="u1")
        await bus.publish(listing)  # published, not asked; handled while the request waits: the slot was given back
        await eventually(lambda: addresses == [None], timeout=3)
        assert not asked.done()
        reply = await asked
        assert isinstance(reply.payload, m.WorkflowStatusReply) and reply.causation_id == query.id

    async def test_a_lane_is_served_while_another_is_full(self, make_bus: MakeBus) -> None:
        """A service's query lane is consumed on its own: a status query is answered while every prefetch slot
        of its default lane is held by a slow handler and more messages wait behind it."""
        bus = await make_bus()
        release = asyncio.Event()
        writes = Recorder()

        async def slow(envelope: Envelope) -> None:
            await writes(envelope)
            await release.wait()

        async def status(envelope: Envelope) -> Message:
            return m.WorkflowStatusReply(found=False)

        await bus.subscribe(ROUTER, {"workflow.requested": slow, "workflow.status.query": status}, prefetch=1)
        for n in range(3):
            await bus.publish(requested(n))
        await eventually(lambda: len(writes.seen) == 1)
        query = Envelope.new(m.WorkflowStatusQuery(workflow_id=uuid.uuid4(), requester_user_id="u1"), user_id="u1")
        reply = await bus.request(query, timeout=5)
        assert isinstance(reply.payload, m.WorkflowStatusReply)
        assert len(writes.seen) == 1  # the default lane is still held: the reply did not wait for it
        release.set()
        await eventually(lambda: writes.finished == 3)

    async def test_an_urgent_message_overtakes_a_bulk_backlog(self, make_bus: MakeBus) -> None:
        """A critical message is handled while every slot of the service's bulk lane is held by a low one and
        more low ones wait; the low ones are all handled afterwards."""
        bus = await make_bus()
        release = asyncio.Event()
        seen: list[Priority] = []

        async def handler(envelope: Envelope) -> None:
            assert isinstance(envelope.payload, m.WorkflowRequested)
            seen.append(envelope.payload.intent.priority)
            if envelope.payload.intent.priority is Priority.LOW:
                await release.wait()

        await bus.subscribe(ROUTER, {"workflow.requested": handler}, prefetch=2)  # the bulk lane takes 1
        for n in range(3):
            await bus.publish(requested(n, Priority.LOW))
        await eventually(lambda: seen == [Priority.LOW])
        await bus.publish(requested(3, Priority.CRITICAL))
        await eventually(lambda: Priority.CRITICAL in seen)
        assert seen == [Priority.LOW, Priority.CRITICAL]  # the backlog is still held
        release.set()
        await eventually(lambda: seen.count(Priority.LOW) == 3)

    async def test_what_a_handler_publishes_inherits_its_message_s_priority(self, make_bus: MakeBus) -> None:
        """A message without a priority of its own, published by a handler, has the priority of the message
        that handler runs for; one published outside any handler has none."""
        bus = await make_bus()
        inherited: list[Priority | None] = []

        async def router(envelope: Envelope) -> None:
            delivery = m.DeliveryRequested(delivery_id=uuid.uuid4(), account_id="u1", recipient_id="r1", text="hi")
            await bus.publish(envelope.child(delivery))

        async def limiter(envelope: Envelope) -> None:
            inherited.append(message_priority())

        await bus.subscribe(ROUTER, {"workflow.requested": router})
        await bus.subscribe("rate-limiter", {"delivery.requested": limiter})
        await bus.publish(requested(0, Priority.LOW))
        await eventually(lambda: inherited == [Priority.LOW])
        await bus.publish(requested(1, Priority.HIGH))
        await eventually(lambda: inherited == [Priority.LOW, Priority.HIGH])
        orphan = m.DeliveryRequested(delivery_id=uuid.uuid4(), account_id="u1", recipient_id="r1", text="hi")
        await bus.publish(Envelope.new(orphan))
        await eventually(lambda: inherited == [Priority.LOW, Priority.HIGH, None])

    async def test_expected_replies_resolve_their_futures(self, make_bus: MakeBus) -> None:
        """Replies sent to this instance's reply queue (by whoever was handed the address) under the correlation
        ids it expects resolve their futures, each its own, and none is kept after the block."""
        bus = await make_bus()
        async with bus.expecting("end", "cost") as (reply_to, (end, cost)):
            for correlation in ("cost", "end"):
                reply = Envelope.new(m.WorkflowStatusReply(found=correlation == "end"))
                await bus.reply(reply_to, correlation, reply)
            told = await asyncio.wait_for(asyncio.gather(end, cost), 10)
        assert [isinstance(e.payload, m.WorkflowStatusReply) and e.payload.found for e in told] == [True, False]
        assert not bus._pending

    async def test_request_times_out_without_a_responder(self, make_bus: MakeBus) -> None:
        """A request nobody answers raises RequestTimeout after the timeout, not later."""
        bus = await make_bus()
        query = Envelope.new(m.WorkflowStatusQuery(workflow_id=uuid.uuid4(), requester_user_id="u1"))
        start = time.monotonic()
        with pytest.raises(RequestTimeout):
            await bus.request(query, timeout=0.5)
        assert time.monotonic() - start < 2.0

    async def test_three_handler_chain_is_one_trace(self, make_bus: MakeBus, spans: InMemorySpanExporter) -> None:
        """A → B → C handlers give one trace: each CONSUMER span a child of its PRODUCER span, and each
        publish made inside a handler a child of that handler's CONSUMER span."""
        bus = await make_bus()
        done = asyncio.Event()
        delivery = m.DeliveryRequested(delivery_id=uuid.uuid4(), account_id="u1", recipient_id="r1", text="hi")

        async def router(envelope: Envelope) -> None:
            await bus.publish(envelope.child(delivery))

        async def limiter(envelope: Envelope) -> None:
            approved = m.DeliveryApproved(**delivery.model_dump(), slot_at=envelope.occurred_at)
            await bus.publish(envelope.child(approved))

        async def sender(envelope: Envelope) -> None:
            done.set()

        await bus.subscribe(ROUTER, {"workflow.requested": router})
        await bus.subscribe("rate-limiter", {"delivery.requested": limiter})
        await bus.subscribe("of-sender", {"delivery.approved": sender})
        with trace.get_tracer("test").start_as_current_span("root") as root:
            await bus.publish(requested())
        await asyncio.wait_for(done.wait(), 10)
        await eventually(lambda: sum(s.kind is SpanKind.CONSUMER for s in spans.get_finished_spans()) == 3)
        finished = [s for s in spans.get_finished_spans() if s.context.trace_id == root.get_span_context().trace_id]
        by_id = {s.context.span_id: s for s in finished}
        consumers = [s for s in finished if s.kind is SpanKind.CONSUMER]
        producers = [s for s in finished if s.kind is SpanKind.PRODUCER]
        assert len(consumers) == 3 and len(producers) == 3
        for span in consumers:
            assert span.parent is not None and by_id[span.parent.span_id].kind is SpanKind.PRODUCER
        inner = [p for p in producers if p.parent is not None and p.parent.span_id != root.get_span_context().span_id]
        assert len(inner) == 2
        assert all(by_id[p.parent.span_id].kind is SpanKind.CONSUMER for p in inner if p.parent)
        types = {s.attributes.get("message.type") for s in consumers if s.attributes}
        assert types == {"workflow.requested", "delivery.requested", "delivery.approved"}

    @staticmethod
    async def _wait_dead(bus: Bus, count: int, timeout: float = 10.0) -> list:  # type: ignore[type-arg]
        dead: list = []  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        while len(dead) < count:
            dead += await bus.dead_letters(ROUTER)
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} dead letters, got {len(dead)}")
            await asyncio.sleep(0.05)
        return dead
