"""Exactly-once on a platform that does NOT honour Idempotency-Key: an unknown outcome is looked up, not
resent blindly, and only the approval the delivery's record names may move it — a stale one (superseded by
a re-queue) is dropped, two handled at once send once. The of-sender runs on real Redis (send log) and
PostgreSQL (its record), against the platform simulator as an HTTP server that delivers a key sent twice
twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from contracts import Envelope
from contracts.enums import ErrorType
from contracts.messages import DeliveryApproved, DeliveryCompleted, DeliveryFailed, DeliveryScheduled
from contracts.routing import OF_SENDER
from libs.bus.memory import MemoryBus
from libs.simulators import PlatformFaultKind, PlatformSimulator
from libs.simulators.platform import PlatformRoute
from services.of_sender.pg_store import PostgresMessageStore
from services.of_sender.store import MessageRecord, MessageStatus, MessageStore
from tests.delivery.compliance import all_violations
from tests.of_sender.harness import (
    FAST_REDELIVERY,
    GAP_S,
    LIMIT,
    WAIT_S,
    WINDOW_S,
    SenderHarness,
    approval,
    platform,
    sender_settings,
)

# Settings under which the last check alone would let two handlings of one delivery both send: no spacing
# per fan (the send log would otherwise refuse the second request to the same fan for a while).
NO_FAN_SPACING = {"of_recipient_min_interval_s": 0.0, "of_safety_margin_s": 0.0}

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with platform(honour_idempotency=False) as s:
        yield s


@pytest.fixture
def store(postgres_dsn: str, pg_schema: str) -> PostgresMessageStore:
    return PostgresMessageStore(postgres_dsn, schema=pg_schema, pool_size=2)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {}


@pytest.fixture
async def h(
    sim: PlatformSimulator,
    store: PostgresMessageStore,
    redis_url: str,
    prefix: str,
    settings_overrides: dict[str, object],
) -> AsyncIterator[SenderHarness]:
    settings = sender_settings(redis_url=redis_url, of_sender_key_prefix=prefix, **settings_overrides)
    harness = await SenderHarness.start(sim, settings, store)
    yield harness
    await harness.close()


async def record_of(store: MessageStore, delivery_id: uuid.UUID) -> MessageRecord:
    """The stored delivery (`open` returns the record of a delivery it already has)."""
    envelope = approval(delivery_id=delivery_id)
    return await store.open(envelope, envelope.payload, 0)  # type: ignore[arg-type]


async def status_of(store: MessageStore, delivery_id: uuid.UUID) -> tuple[MessageStatus, int]:
    """The stored delivery's status and attempts."""
    record = await record_of(store, delivery_id)
    return record.status, record.attempts


def requeued(envelope: Envelope, delay_s: float = 0.0) -> Envelope:
    """`envelope` re-published by the sender, due `delay_s` from now."""
    slot = datetime.now(UTC) + timedelta(seconds=delay_s)
    return envelope.child(envelope.payload.model_copy(update={"slot_at": slot}), attempt=envelope.attempt + 1)


async def record_requeue(store: MessageStore, record: MessageRecord, by: Envelope, to: Envelope) -> MessageRecord:
    """What the sender records when the handling of `by` re-queues the delivery as `to`."""
    slot = to.payload.slot_at  # type: ignore[attr-defined]
    return await store.queue(
        record,
        bus_message_id=to.id,
        requeued_from=by.id,
        scheduled_for=slot,
        unconfirmed=record.status is MessageStatus.SENDING,
    )


async def until(check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait until `check()` holds (polled; for what the sink does not collect, such as log entries)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def logged(logs: Sequence[Mapping[str, Any]], event: str) -> list[Mapping[str, Any]]:
    """The captured log entries of `event`."""
    return [entry for entry in logs if entry["event"] == event]


def completed_by(h: SenderHarness, delivery_id: uuid.UUID) -> set[uuid.UUID | None]:
    """The approvals whose handling reported the delivery completed."""
    return {e.causation_id for e in h.sink.reports[delivery_id] if isinstance(e.payload, DeliveryCompleted)}


class DiesAfterRequeue(MemoryBus):
    """A bus on which the handler dies right after its first re-published approval is confirmed: the
    approval it was handling is not acknowledged, so it is redelivered — as after a crash there."""

    def __init__(self) -> None:
        super().__init__(policy=FAST_REDELIVERY)
        self.died_after: Envelope | None = None  # the re-queued approval published just before

    async def publish(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        await super().publish(envelope, delay=delay)
        if self.died_after is None and isinstance(envelope.payload, DeliveryApproved) and envelope.causation_id:
            self.died_after = envelope
            raise RuntimeError("the sender died after publishing the re-queued approval")


class TestReconciliation:
    @pytest.mark.parametrize("settings_overrides", [{"of_max_retries": 0}])
    async def test_every_lost_answer_still_delivers_once(self, h: SenderHarness) -> None:
        """Every answer is lost after the platform took the message, and the platform would deliver a resend
        again: each delivery arrives exactly once, within the limits, and completes with that arrival's id
        after one attempt — an unknown outcome does not spend the retry budget (OF_MAX_RETRIES 0)."""
        h.sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE, count=None)
        ids = [(await h.approve(fan=f"fan{i % 3}")).payload.delivery_id for i in range(5)]  # type: ignore[attr-defined]
        reports = {i: await h.sink.final(i) for i in ids}
        arrivals = h.sim.arrivals()
        assert sorted(a.idempotency_key or "" for a in arrivals) == sorted(str(i) for i in ids)
        assert {a.outcome for a in arrivals} == {"sent"}
        assert all_violations(arrivals, LIMIT, WINDOW_S, GAP_S) == []
        first_id = {a.idempotency_key: a.message_id for a in arrivals}
        for delivery_id, report in reports.items():
            assert isinstance(report, DeliveryCompleted)
            assert report.platform_message_id == first_id[str(delivery_id)]
            assert await status_of(h.store, delivery_id) == (MessageStatus.SENT, 1)
            [lost] = [s.error for s in h.sink.of(delivery_id, DeliveryScheduled) if s.error is not None]
            assert lost.type is ErrorType.ONLYFANS_API_ERROR and lost.retryable

    async def test_a_failing_lookup_never_resends(self, h: SenderHarness) -> None:
        """The answer is lost and the next two look-ups fail (503): the sender asks again later instead of
        sending, and completes on the look-up that answers — one arrival."""
        h.sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE)
        h.sim.add_fault(PlatformFaultKind.SERVER_ERROR, route=PlatformRoute.LOOKUP, count=2)
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        report = await h.sink.final(delivery_id)
        [arrival] = h.sim.arrivals()
        assert isinstance(report, DeliveryCompleted) and report.platform_message_id == arrival.message_id
        assert [x.outcome for x in h.sim.lookups()] == ["server_error", "server_error", "found"]
        errors = [s.error for s in h.sink.of(delivery_id, DeliveryScheduled) if s.error is not None]
        assert [e.status_code for e in errors] == [None, 503, 503]  # the lost answer, the failed look-ups

    @pytest.mark.parametrize("settings_overrides", [{"of_lookup_max_s": 0.5}])
    async def test_a_lookup_failing_past_its_bound_fails_without_resending(self, h: SenderHarness) -> None:
        """Look-ups fail for longer than OF_LOOKUP_MAX_S: the delivery fails (not retryable, saying the
        message may have arrived) and its approval is dead-lettered — still one arrival, never a blind send."""
        h.sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE)
        h.sim.add_fault(PlatformFaultKind.SERVER_ERROR, route=PlatformRoute.LOOKUP, count=None)
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        report = await h.sink.final(delivery_id)
        assert isinstance(report, DeliveryFailed) and not report.error.retryable
        assert "may have arrived" in report.error.message
        assert len(h.sim.arrivals()) == 1 and len(h.sim.lookups()) >= 2
        [dead] = await h.bus.dead_letters(OF_SENDER)
        assert "may have arrived" in dead.reason
        assert (await status_of(h.store, delivery_id))[0] is MessageStatus.FAILED

    @pytest.mark.parametrize("settings_overrides", [{"onlyfans_timeout_s": 0.3}])
    async def test_a_send_that_did_not_arrive_is_resent_once(self, h: SenderHarness) -> None:
        """A timeout before the platform took the message: the look-up finds nothing, and the message is sent
        once more and completes with that arrival's id (two attempts, one delivery)."""
        h.sim.add_fault(PlatformFaultKind.LATENCY, latency_s=2)
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        report = await h.sink.final(delivery_id)
        assert [a.outcome for a in h.sim.arrivals()] == ["abandoned", "sent"]
        assert [x.outcome for x in h.sim.lookups()] == ["not_found"]
        assert isinstance(report, DeliveryCompleted) and report.platform_message_id == h.sim.delivered()[0].message_id
        assert await status_of(h.store, delivery_id) == (MessageStatus.SENT, 2)


class TestSenderDiedMidRequest:
    @pytest.mark.parametrize("arrived", [True, False])
    async def test_a_redelivered_approval_is_looked_up_first(
        self, h: SenderHarness, store: PostgresMessageStore, arrived: bool
    ) -> None:
        """The durable record says `sending` (a sender died after recording its attempt) when the approval
        comes again: if the message arrived it completes with that id and nothing is sent; if it did not it
        is sent, once."""
        envelope = approval()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        await store.sending(record, "tok-died", datetime.now(UTC))
        if arrived:
            url = f"{h.sim.url}/accounts/acct/chats/fan/messages"
            headers = {"Authorization": "Bearer t", "Idempotency-Key": str(delivery_id)}
            async with aiohttp.ClientSession() as http, http.post(url, json={"text": "hello fan"}, headers=headers):
                pass
        await h.bus.publish(envelope)
        report = await h.sink.final(delivery_id)
        [arrival] = h.sim.arrivals()
        assert isinstance(report, DeliveryCompleted) and report.platform_message_id == arrival.message_id
        assert [x.outcome for x in h.sim.lookups()] == ["found" if arrived else "not_found"]
        assert await status_of(store, delivery_id) == (MessageStatus.SENT, 1 if arrived else 2)


class TestStaleApprovals:
    async def test_a_superseded_approval_is_dropped_unsent(self, h: SenderHarness, store: PostgresMessageStore) -> None:
        """The approval's handler re-published it and died before the ack; the redelivered original was
        re-queued again: the first re-published copy is now stale — acknowledged (not retried, not
        dead-lettered), logged, nothing sent or looked up, the record untouched; the current one delivers."""
        original = approval()
        delivery_id = original.payload.delivery_id  # type: ignore[attr-defined]
        stale, current = requeued(original), requeued(original)
        record = await store.open(original, original.payload, 3)  # type: ignore[arg-type]
        await record_requeue(store, record, by=original, to=current)
        with capture_logs() as logs:
            await h.bus.publish(stale)
            await until(lambda: bool(logged(logs, "delivery.stale_approval")))
            await asyncio.sleep(0.1)
        [drop] = logged(logs, "delivery.stale_approval")
        assert (drop["approval_id"], drop["current_id"]) == (str(stale.id), str(current.id))
        assert not logged(logs, "bus.message.retry") and await h.bus.dead_letters(OF_SENDER) == []
        assert h.bus.depth(OF_SENDER) == 0 and not h.sink.reports[delivery_id]
        assert h.sim.arrivals() == [] and h.sim.lookups() == []
        assert (await record_of(store, delivery_id)).bus_message_id == current.id
        await h.bus.publish(current)
        assert isinstance(await h.sink.final(delivery_id), DeliveryCompleted)
        assert len(h.sim.arrivals()) == 1 and completed_by(h, delivery_id) == {current.id}

    async def test_a_first_approval_owns_a_new_delivery(self, h: SenderHarness, store: PostgresMessageStore) -> None:
        """No record yet: the first approval creates it naming itself, and is sent."""
        envelope = await h.approve()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        assert isinstance(await h.sink.final(delivery_id), DeliveryCompleted)
        assert (await record_of(store, delivery_id)).bus_message_id == envelope.id
        assert len(h.sim.arrivals()) == 1 and completed_by(h, delivery_id) == {envelope.id}


class TestCrashAroundARequeue:
    async def test_a_requeue_recorded_but_never_published_is_published_again(
        self, h: SenderHarness, store: PostgresMessageStore
    ) -> None:
        """The sender recorded a re-queue and died before publishing it: the redelivered approval that made
        it publishes it again (not dropped as stale — the delivery would be stranded), and it arrives once."""
        original = approval()
        delivery_id = original.payload.delivery_id  # type: ignore[attr-defined]
        lost = requeued(original, delay_s=0.05)
        record = await store.open(original, original.payload, 3)  # type: ignore[arg-type]
        await record_requeue(store, record, by=original, to=lost)
        with capture_logs() as logs:
            await h.bus.publish(original)
            report = await h.sink.final(delivery_id)
        assert isinstance(report, DeliveryCompleted) and len(h.sim.arrivals()) == 1
        assert len(logged(logs, "delivery.requeue_reissued")) == 1 and not logged(logs, "delivery.stale_approval")
        final = await record_of(store, delivery_id)
        assert final.bus_message_id not in (original.id, lost.id) and final.requeued_from == original.id
        assert completed_by(h, delivery_id) == {final.bus_message_id}

    async def test_a_crash_after_publishing_a_requeue_still_sends_once(
        self, sim: PlatformSimulator, store: PostgresMessageStore, redis_url: str, prefix: str
    ) -> None:
        """End to end, the review's case: a 503 re-queues the delivery, the sender dies once the re-queued
        approval is published and before the ack, the original is redelivered: it re-issues the re-queue,
        the first re-published copy arrives stale and is dropped, and the message arrives once."""
        # The re-queued copy is due well after the redelivery (FAST_REDELIVERY), so it arrives stale.
        settings = sender_settings(redis_url=redis_url, of_sender_key_prefix=prefix, of_retry_base_s=0.5)
        bus = DiesAfterRequeue()
        h = await SenderHarness.start(sim, settings, store, bus=bus)
        try:
            h.sim.add_fault(PlatformFaultKind.SERVER_ERROR)
            with capture_logs() as logs:
                original = await h.approve()
                delivery_id = original.payload.delivery_id  # type: ignore[attr-defined]
                report = await h.sink.final(delivery_id)
                await until(lambda: bool(logged(logs, "delivery.stale_approval")))
            final = await record_of(store, delivery_id)
        finally:
            await h.close()
        assert bus.died_after is not None and isinstance(report, DeliveryCompleted)
        assert [a.outcome for a in h.sim.arrivals()] == ["server_error", "sent"]
        assert len(logged(logs, "delivery.requeue_reissued")) == 1 and len(logged(logs, "bus.message.retry")) == 1
        [drop] = logged(logs, "delivery.stale_approval")
        assert drop["approval_id"] == str(bus.died_after.id) != str(final.bus_message_id)
        assert completed_by(h, delivery_id) == {final.bus_message_id}


class TestOneRequestInFlight:
    @pytest.mark.parametrize("settings_overrides", [NO_FAN_SPACING])
    async def test_an_approval_and_its_requeue_handled_at_once_send_once(
        self, h: SenderHarness, store: PostgresMessageStore
    ) -> None:
        """The outcome of an attempt was lost (`sending`, not on the platform) and the approval had been
        re-queued when its handler died before the ack: the original (redelivered) and the re-queued copy are
        handled at the same time. Both would look up, find nothing and send; one request goes out."""
        original = approval()
        delivery_id = original.payload.delivery_id  # type: ignore[attr-defined]
        current = requeued(original)
        record = await store.open(original, original.payload, 3)  # type: ignore[arg-type]
        record = await store.sending(record, "tok-lost", datetime.now(UTC) - timedelta(seconds=1))
        await record_requeue(store, record, by=original, to=current)
        await asyncio.gather(h.bus.publish(original), h.bus.publish(current))
        assert isinstance(await h.sink.final(delivery_id), DeliveryCompleted)
        await asyncio.sleep(0.5)  # a second request, if any, would arrive now
        assert [a.outcome for a in h.sim.arrivals()] == ["sent"]
        assert await status_of(store, delivery_id) == (MessageStatus.SENT, 2)

    @pytest.mark.parametrize("settings_overrides", [NO_FAN_SPACING])
    async def test_two_copies_of_one_approval_at_once_send_once(
        self, h: SenderHarness, store: PostgresMessageStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same approval twice at once (its publisher died before its ack, or a redelivery raced a
        handler that lost its connection): one records the attempt and sends; the other finds the request
        out and re-queues itself to look it up later instead of sending. Both copies read the record before
        either moves it (a barrier after the first two reads), so the race happens on every run."""
        real_open = store.open
        both_read = asyncio.Barrier(2)
        reads = 0

        async def open_side_by_side(*args: Any, **kwargs: Any) -> MessageRecord:
            nonlocal reads
            record = await real_open(*args, **kwargs)
            reads += 1
            if reads <= 2:
                await asyncio.wait_for(both_read.wait(), 5)
            return record

        monkeypatch.setattr(store, "open", open_side_by_side)
        envelope = approval()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        with capture_logs() as logs:
            await asyncio.gather(h.bus.publish(envelope), h.bus.publish(envelope))
            assert isinstance(await h.sink.final(delivery_id), DeliveryCompleted)
            await asyncio.sleep(0.5)  # a second request, if any, would arrive now
        assert [a.outcome for a in h.sim.arrivals()] == ["sent"]
        assert logged(logs, "delivery.record_changed")
        assert await status_of(store, delivery_id) == (MessageStatus.SENT, 1)
        assert await h.bus.dead_letters(OF_SENDER) == []


class TestRequeues:
    async def test_requeued_deliveries_arrive_once_completed_by_their_current_approval(
        self, h: SenderHarness, store: PostgresMessageStore
    ) -> None:
        """Held back by the last check, failed with 503s, an answer lost: each delivery is re-queued at least
        once, arrives exactly once, and is completed by the approval its record names — none dropped stale."""
        h.sim.add_fault(PlatformFaultKind.SERVER_ERROR, count=2)
        h.sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE)
        with capture_logs() as logs:
            ids = [(await h.approve(fan=f"fan{i % 2}")).payload.delivery_id for i in range(4)]  # type: ignore[attr-defined]
            reports = {i: await h.sink.final(i) for i in ids}
        assert all(isinstance(r, DeliveryCompleted) for r in reports.values())
        delivered = h.sim.delivered()
        assert sorted(a.idempotency_key or "" for a in delivered) == sorted(str(i) for i in ids)
        assert all_violations(delivered, LIMIT, WINDOW_S, GAP_S) == []
        assert all(h.sink.of(i, DeliveryScheduled) for i in ids)
        for delivery_id in ids:
            record = await record_of(store, delivery_id)
            assert record.requeued_from is not None and completed_by(h, delivery_id) == {record.bus_message_id}
        assert not logged(logs, "delivery.stale_approval") and await h.bus.dead_letters(OF_SENDER) == []
