"""The of-sender's store, in memory and on PostgreSQL: same semantics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import Envelope
from contracts.enums import ErrorType
from contracts.messages import DeliveryApproved, ErrorInfo
from services.of_sender.pg_store import PostgresMessageStore
from services.of_sender.store import (
    MemoryMessageStore,
    MessageRecord,
    MessageStatus,
    MessageStore,
    RecordChanged,
    to_ms,
)

STORES = [pytest.param("memory"), pytest.param("postgres", marks=pytest.mark.integration)]
ERROR = ErrorInfo(type=ErrorType.ONLYFANS_API_ERROR, message="platform error (503)", retryable=True, status_code=503)


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MessageStore]:
    instance: MessageStore
    if request.param == "memory":
        instance = MemoryMessageStore()
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        instance = PostgresMessageStore(dsn, schema=request.getfixturevalue("pg_schema"), pool_size=2)
    await instance.start()
    yield instance
    await instance.close()


def approval(account: str = "acct", fan: str = "fan") -> Envelope:
    payload = DeliveryApproved(
        delivery_id=uuid.uuid4(), account_id=account, recipient_id=fan, text="hi", slot_at=datetime.now(UTC)
    )
    return Envelope.new(payload, workflow_id=uuid.uuid4(), user_id=account)


async def requeue(store: MessageStore, record: MessageRecord, at: datetime, **changes: Any) -> MessageRecord:
    """Re-queue by the approval that owns `record`, to a new one."""
    return await store.queue(
        record, bus_message_id=uuid.uuid4(), requeued_from=record.bus_message_id, scheduled_for=at, **changes
    )


class TestMessageStore:
    async def test_open_creates_once(self, store: MessageStore) -> None:
        """The first approval creates the record (pending); later ones get the same record back."""
        envelope = approval()
        first = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        assert first.status is MessageStatus.PENDING and first.max_retries == 3 and first.attempts == 0
        again = await store.open(approval(), envelope.payload, 5)  # type: ignore[arg-type]
        assert again == first

    async def test_a_delivery_goes_through_its_states(self, store: MessageStore) -> None:
        """sending (an attempt) → queued after a 429 (with the error and the count) → sending → sent with
        the platform's id; the 429 does not count against the retry budget."""
        envelope = approval()
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        first = await store.sending(record, "tok-1", datetime.now(UTC))
        assert first.status is MessageStatus.SENDING and first.attempts == 1
        later, moved = datetime.now(UTC) + timedelta(seconds=5), uuid.uuid4()
        queued = await store.queue(
            first,
            bus_message_id=moved,
            requeued_from=envelope.id,
            scheduled_for=later,
            error=ERROR,
            rate_limited=True,
        )
        assert (queued.status, queued.last_error, queued.rate_limited) == (MessageStatus.QUEUED, ERROR, 1)
        assert (queued.bus_message_id, queued.requeued_from, queued.scheduled_for) == (moved, envelope.id, later)
        checked = datetime.now(UTC)
        second = await store.sending(queued, "tok-2", checked)
        sent = await store.sent(record.delivery_id, "msg_1", checked)
        assert (second.attempts, sent.status, sent.platform_message_id) == (2, MessageStatus.SENT, "msg_1")
        assert sent.failures == 0 and sent.sent_at == checked

    async def test_hold_time_is_kept_until_a_check_passes(self, store: MessageStore) -> None:
        """held_since is set by the first hold, kept by the next ones, cleared by a send attempt."""
        envelope = approval()
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        first = await requeue(store, record, now, held=True)
        second = await requeue(store, first, now, held=True)
        assert first.held_since is not None and second.held_since == first.held_since
        assert (await store.sending(second, "tok", now)).held_since is None

    async def test_attempts_are_the_durable_send_record(self, store: MessageStore) -> None:
        """recent_sends returns an account's attempts in the horizon (every attempt, with its token and
        check time); purge forgets old ones."""
        envelope = approval("acct-a", "fan1")
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        record = await store.sending(record, "tok-1", now - timedelta(seconds=120))
        await store.sending(record, "tok-2", now)
        other = approval("acct-b", "fan1")
        await store.sending(await store.open(other, other.payload, 3), "tok-3", now)  # type: ignore[arg-type]
        recent = await store.recent_sends("acct-a", 60)
        assert [(r.token, r.recipient_id) for r in recent] == [("tok-2", "fan1")]
        assert abs(recent[0].at_ms - to_ms(now)) <= 1
        assert await store.purge_attempts(60, 100) == 1
        assert len(await store.recent_sends("acct-a", 3600)) == 1

    async def test_a_replanned_slot_is_returned_with_the_record(self, store: MessageStore) -> None:
        """A new slot recorded before the first approval (or after) comes back with `open`; the later of two
        wins whatever their order; purge forgets one long past."""
        envelope = approval()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
        await store.replan(delivery_id, slot)
        await store.replan(delivery_id, slot - timedelta(seconds=10))
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        assert (record.status, record.replanned_to) == (MessageStatus.PENDING, slot)
        await store.replan(delivery_id, slot + timedelta(seconds=5))
        assert (await store.open(envelope, envelope.payload, 3)).replanned_to == slot + timedelta(seconds=5)  # type: ignore[arg-type]
        other = approval()
        old = other.payload.delivery_id  # type: ignore[attr-defined]
        await store.replan(old, datetime.now(UTC) - timedelta(seconds=120))
        await store.purge_attempts(60, 100)
        assert (await store.open(other, other.payload, 3)).replanned_to is None  # type: ignore[arg-type]
        assert (await store.open(envelope, envelope.payload, 3)).replanned_to is not None  # type: ignore[arg-type]

    async def test_an_unconfirmed_requeue_stays_sending(self, store: MessageStore) -> None:
        """After a request whose outcome is unknown the delivery waits for its slot still `sending` (to be
        looked up), with the error; a plain re-queue makes it `queued`."""
        envelope = approval()
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        record = await store.sending(record, "tok-1", datetime.now(UTC))
        later = datetime.now(UTC) + timedelta(seconds=5)
        unconfirmed = await requeue(store, record, later, error=ERROR, unconfirmed=True)
        assert (unconfirmed.status, unconfirmed.last_error, unconfirmed.scheduled_for) == (
            MessageStatus.SENDING,
            ERROR,
            later,
        )
        assert unconfirmed.attempts == 1 and unconfirmed.failures == 1
        queued = await requeue(store, unconfirmed, later)
        assert queued.status is MessageStatus.QUEUED

    async def test_failed_keeps_the_error(self, store: MessageStore) -> None:
        """A failed delivery keeps the error it failed with."""
        envelope = approval()
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        failed = await store.failed(record.delivery_id, ERROR)
        assert failed.status is MessageStatus.FAILED and failed.last_error == ERROR


class TestCompareAndSet:
    async def test_a_first_approval_owns_its_delivery(self, store: MessageStore) -> None:
        """The record names the approval that created it, and no re-queue yet."""
        envelope = approval()
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        assert (record.bus_message_id, record.requeued_from) == (envelope.id, None)

    async def test_of_two_requeues_from_one_read_only_the_first_lands(self, store: MessageStore) -> None:
        """Two handlings read the same record and both re-queue: the second gets RecordChanged and the record
        keeps the first's new approval."""
        envelope = approval()
        read = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        first = await requeue(store, read, datetime.now(UTC))
        with pytest.raises(RecordChanged):
            await requeue(store, read, datetime.now(UTC))
        assert (await store.open(envelope, envelope.payload, 3)).bus_message_id == first.bus_message_id  # type: ignore[arg-type]

    async def test_of_two_attempts_from_one_read_only_the_first_is_recorded(self, store: MessageStore) -> None:
        """Two handlings of the same approval pass the last check together: the second attempt is refused
        (RecordChanged) and leaves no attempt row — one request in flight."""
        envelope = approval()
        read = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        assert (await store.sending(read, "tok-1", now)).attempts == 1
        with pytest.raises(RecordChanged):
            await store.sending(read, "tok-2", now)
        assert [r.token for r in await store.recent_sends("acct", 60)] == ["tok-1"]

    async def test_a_requeue_read_before_an_attempt_does_not_land(self, store: MessageStore) -> None:
        """A handling that read the record before another recorded an attempt cannot re-queue it (that would
        turn `sending` into `queued` with the request out)."""
        envelope = approval()
        read = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        await store.sending(read, "tok-1", datetime.now(UTC))
        with pytest.raises(RecordChanged):
            await requeue(store, read, datetime.now(UTC))

    async def test_a_finished_delivery_is_not_moved(self, store: MessageStore) -> None:
        """Once sent, neither a re-queue nor an attempt from an earlier read lands."""
        envelope = approval()
        read = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        await store.sent(read.delivery_id, "msg_1", datetime.now(UTC))
        with pytest.raises(RecordChanged):
            await requeue(store, read, datetime.now(UTC))
        with pytest.raises(RecordChanged):
            await store.sending(read, "tok", datetime.now(UTC))
        assert (await store.open(envelope, envelope.payload, 3)).status is MessageStatus.SENT  # type: ignore[arg-type]
