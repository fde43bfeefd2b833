"""The of-sender's store, in memory and on PostgreSQL: the cancellation fence on the claim of an attempt,
and the time a delivery is held by the flags."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.of_sender.store import MessageStore, RecordChanged, WorkflowCancelled
from tests.of_sender.test_store import approval, requeue, store

__all__ = ["store"]


class TestCancellationFence:
    async def test_a_cancelled_workflow_cannot_claim_an_attempt(self, store: MessageStore) -> None:
        """After cancel, sending raises WorkflowCancelled and records no attempt; other workflows go on."""
        envelope, other = approval("acct"), approval("acct")
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        assert envelope.workflow_id is not None
        assert await store.cancel(envelope.workflow_id, "acct", datetime.now(UTC))
        assert not await store.cancel(envelope.workflow_id, "acct", datetime.now(UTC))  # already recorded
        assert await store.is_cancelled(envelope.workflow_id)
        with pytest.raises(WorkflowCancelled):
            await store.sending(record, "tok-1", datetime.now(UTC))
        assert await store.recent_sends("acct", 60) == []
        claimed = await store.sending(await store.open(other, other.payload, 3), "tok-2", datetime.now(UTC))  # type: ignore[arg-type]
        assert claimed.attempts == 1

    async def test_an_attempt_claimed_before_the_cancel_stands(self, store: MessageStore) -> None:
        """A claim made before the cancel was recorded is not undone: the request went out and is recorded sent."""
        envelope = approval("acct")
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        claimed = await store.sending(record, "tok-1", datetime.now(UTC))
        assert envelope.workflow_id is not None
        await store.cancel(envelope.workflow_id, "acct", datetime.now(UTC))
        sent = await store.sent(record.delivery_id, "msg-1", datetime.now(UTC))
        assert (claimed.attempts, sent.platform_message_id) == (1, "msg-1")

    async def test_a_claim_racing_a_cancel_either_sends_or_is_fenced(self, store: MessageStore) -> None:
        """Claims and cancels at once: every claim either lands before the cancel or is refused by it."""
        envelopes = [approval("acct") for _ in range(10)]
        records = [await store.open(e, e.payload, 3) for e in envelopes]  # type: ignore[arg-type]

        async def claim(index: int) -> str:
            try:
                await store.sending(records[index], f"tok-{index}", datetime.now(UTC))
            except WorkflowCancelled:
                return "fenced"
            except RecordChanged:
                return "changed"
            return "claimed"

        async def cancel(index: int) -> None:
            workflow_id = envelopes[index].workflow_id
            assert workflow_id is not None
            await store.cancel(workflow_id, "acct", datetime.now(UTC))

        outcomes = await asyncio.gather(*(claim(i) for i in range(10)), *(cancel(i) for i in range(10)))
        assert set(outcomes[:10]) <= {"claimed", "fenced"}
        claimed = {f"tok-{i}" for i, outcome in enumerate(outcomes[:10]) if outcome == "claimed"}
        assert {r.token for r in await store.recent_sends("acct", 60)} == claimed


class TestPausedSince:
    async def test_the_flags_hold_time_is_kept_until_an_attempt(self, store: MessageStore) -> None:
        """paused_since is set by the first hold of the flags, kept by the next, cleared by an attempt or
        any other re-queue."""
        envelope = approval()
        record = await store.open(envelope, envelope.payload, 3)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        first = await requeue(store, record, now, paused=True)
        second = await requeue(store, first, now, paused=True)
        assert first.paused_since is not None and second.paused_since == first.paused_since
        assert second.attempts == 0 and second.failures == 0
        assert (await requeue(store, second, now)).paused_since is None
        third = await requeue(store, await store.open(envelope, envelope.payload, 3), now, paused=True)  # type: ignore[arg-type]
        assert (await store.sending(third, "tok", now)).paused_since is None
