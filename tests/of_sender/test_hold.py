"""Stopping the of-sender: the kill switch and a paused account hold approvals (nothing sent, nothing lost,
no retry spent) until they let go, and a cancelled workflow's approvals are never sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from contracts import Envelope
from contracts.messages import (
    DeliveryApproved,
    DeliveryCompleted,
    DeliveryFailed,
    DeliveryScheduled,
    WorkflowCancelled,
)
from libs.flags import FlagClient, Flags, FlagUpdate, MemoryFlagStore
from libs.simulators import PlatformFaultKind
from services.of_sender.constants import HOLD_JITTER_S, HOLD_RECHECK_S
from services.of_sender.store import MemoryMessageStore, MessageStatus
from tests.delivery.compliance import all_violations
from tests.of_sender.harness import GAP_S, LIMIT, WINDOW_S, SenderHarness, platform, sender_settings
from tests.of_sender.test_reconcile import logged, until

# Longer than a hold round: a held approval has come back (and been held again) at least once.
ONE_ROUND_S = HOLD_RECHECK_S + HOLD_JITTER_S + 0.3


@pytest.fixture
async def flags() -> AsyncIterator[FlagClient]:
    """An admin's flag client on the store the of-sender reads (as the gateway's, in the embedded mode)."""
    client = FlagClient(MemoryFlagStore(), Flags())
    await client.start()
    yield client
    await client.stop()


async def switch(flags: FlagClient, on: bool) -> None:
    await flags.update(FlagUpdate(hybrid_orchestrator_enabled=on), updated_by="admin")


def approval(account: str, fan: str, workflow_id: uuid.UUID | None = None) -> Envelope:
    payload = DeliveryApproved(
        delivery_id=uuid.uuid4(), account_id=account, recipient_id=fan, text=f"hi {fan}", slot_at=datetime.now(UTC)
    )
    return Envelope.new(payload, workflow_id=workflow_id or uuid.uuid4(), user_id=account)


def cancelled(workflow_id: uuid.UUID, account: str = "acct") -> Envelope:
    payload = WorkflowCancelled(workflow_id=workflow_id, account_id=account, cancelled_at=datetime.now(UTC))
    return Envelope.new(payload, workflow_id=workflow_id, user_id=account)


def delivery(envelope: Envelope) -> uuid.UUID:
    assert isinstance(envelope.payload, DeliveryApproved)
    return envelope.payload.delivery_id


async def started(flags: FlagClient, window_s: float = WINDOW_S, **overrides: object) -> SenderHarness:
    sim = platform(window_s=window_s)
    await sim.start()
    settings = sender_settings(of_account_window_s=window_s, **overrides)
    return await SenderHarness.start(sim, settings, flag_store=flags.store)


@pytest.fixture
async def h(flags: FlagClient) -> AsyncIterator[SenderHarness]:
    harness = await started(flags)
    yield harness
    await harness.close()
    await harness.sim.stop()


class TestKillSwitch:
    async def test_nothing_is_sent_while_off_and_everything_once_on_again(
        self, h: SenderHarness, flags: FlagClient
    ) -> None:
        """Off: approvals are re-queued, not sent, no attempt or retry spent, the router told once per
        delivery; on again: each is sent exactly once."""
        await switch(flags, False)
        envelopes = [approval("acct", f"fan{i}") for i in range(4)]
        for envelope in envelopes:
            await h.bus.publish(envelope)
        await asyncio.sleep(ONE_ROUND_S * 1.5)
        assert h.sim.arrivals() == []
        store = h.store
        assert isinstance(store, MemoryMessageStore)
        for envelope in envelopes:
            record = store.get(delivery(envelope))
            assert record is not None and record.attempts == 0 and record.paused_since is not None
            assert record.status is MessageStatus.QUEUED
            assert len(h.sink.of(delivery(envelope), DeliveryScheduled)) == 1  # once, not per round
        await switch(flags, True)
        for envelope in envelopes:
            assert isinstance(await h.sink.final(delivery(envelope)), DeliveryCompleted)
        delivered = h.sim.delivered()
        assert sorted(a.idempotency_key or "" for a in delivered) == sorted(str(delivery(e)) for e in envelopes)
        assert all(store.get(delivery(e)).attempts == 1 for e in envelopes)  # type: ignore[union-attr]

    async def test_resumed_approvals_still_keep_the_platform_limits(self, flags: FlagClient) -> None:
        """Held approvals coming back at once, their slots long past, within a window already full: the
        last check on actual send times spaces them (no window or fan-spacing breach on the platform)."""
        window_s = 2.0
        h = await started(flags, window_s=window_s)
        try:
            first = [approval("acct", f"fan{i}") for i in range(LIMIT)]  # fill the window
            for envelope in first:
                await h.bus.publish(envelope)
            for envelope in first:
                await h.sink.final(delivery(envelope))
            await switch(flags, False)
            held = [approval("acct", f"fan{i % 2}") for i in range(3)]  # also the same fans again
            for envelope in held:
                await h.bus.publish(envelope)
            await until(lambda: all(h.sink.of(delivery(e), DeliveryScheduled) for e in held))
            await switch(flags, True)
            for envelope in held:
                assert isinstance(await h.sink.final(delivery(envelope), timeout=15), DeliveryCompleted)
            delivered = h.sim.delivered()
            assert len(delivered) == LIMIT + 3
            assert all_violations(delivered, LIMIT, window_s, GAP_S) == []
        finally:
            await h.close()
            await h.sim.stop()

    async def test_false_in_the_environment_holds_whatever_the_store_says(self, flags: FlagClient) -> None:
        """HYBRID_ORCHESTRATOR_ENABLED=false for this of-sender: the stored switch is on, nothing is sent."""
        await switch(flags, True)
        h = await started(flags, hybrid_orchestrator_enabled=False)
        try:
            envelope = approval("acct", "fan")
            await h.bus.publish(envelope)
            await h.sink.wait(lambda: bool(h.sink.of(delivery(envelope), DeliveryScheduled)))
            await asyncio.sleep(ONE_ROUND_S)
            assert h.sim.arrivals() == [] and not h.sink.of(delivery(envelope), DeliveryCompleted)
        finally:
            await h.close()
            await h.sim.stop()


class TestPause:
    async def test_a_paused_account_waits_while_another_sends(self, h: SenderHarness, flags: FlagClient) -> None:
        """Account a paused: its approvals are held while b's go out; resumed, a's are sent once each."""
        await flags.set_paused("acct-a", True, updated_by="admin")
        held = [approval("acct-a", f"fan{i}") for i in range(2)]
        going = approval("acct-b", "fan0")
        for envelope in [*held, going]:
            await h.bus.publish(envelope)
        assert isinstance(await h.sink.final(delivery(going)), DeliveryCompleted)
        await asyncio.sleep(ONE_ROUND_S)
        assert {a.account_id for a in h.sim.arrivals()} == {"acct-b"}
        await flags.set_paused("acct-a", False, updated_by="admin")
        for envelope in held:
            assert isinstance(await h.sink.final(delivery(envelope)), DeliveryCompleted)
        assert sorted(a.account_id for a in h.sim.delivered()) == ["acct-a", "acct-a", "acct-b"]


class TestCancel:
    async def test_an_approval_of_a_cancelled_workflow_is_dropped_without_a_report(self, h: SenderHarness) -> None:
        """After workflow.cancelled, its approval sends nothing and reports nothing; another workflow's does."""
        workflow_id = uuid.uuid4()
        await h.bus.publish(cancelled(workflow_id))
        store = h.store
        assert isinstance(store, MemoryMessageStore)
        await until(lambda: workflow_id in store._cancelled)
        dropped, other = approval("acct", "fan0", workflow_id), approval("acct", "fan1")
        with capture_logs() as logs:
            await h.bus.publish(dropped)
            await h.bus.publish(other)
            await until(lambda: bool(logged(logs, "delivery.cancelled")))
        assert isinstance(await h.sink.final(delivery(other)), DeliveryCompleted)
        await asyncio.sleep(0.2)
        assert [a.recipient_id for a in h.sim.arrivals()] == ["fan1"]
        assert h.sink.reports[delivery(dropped)] == []
        assert store.get(delivery(dropped)).attempts == 0  # type: ignore[union-attr]

    async def test_a_held_approval_of_a_cancelled_workflow_is_dropped_at_its_next_round(
        self, h: SenderHarness, flags: FlagClient
    ) -> None:
        """Cancelled while held by the kill switch: dropped at the next round, not sent when it is on again."""
        await switch(flags, False)
        workflow_id = uuid.uuid4()
        envelope = approval("acct", "fan", workflow_id)
        await h.bus.publish(envelope)
        await h.sink.wait(lambda: bool(h.sink.of(delivery(envelope), DeliveryScheduled)))
        with capture_logs() as logs:
            await h.bus.publish(cancelled(workflow_id))
            await until(lambda: bool(logged(logs, "delivery.cancelled")))
        await switch(flags, True)
        await asyncio.sleep(ONE_ROUND_S)
        assert h.sim.arrivals() == []
        assert not h.sink.of(delivery(envelope), DeliveryCompleted) + h.sink.of(delivery(envelope), DeliveryFailed)

    async def test_a_request_already_out_when_the_cancel_lands_is_reported_sent(self, h: SenderHarness) -> None:
        """The fence stops claims, not requests in flight: that message arrives and is reported completed."""
        h.sim.add_fault(PlatformFaultKind.LATENCY, latency_s=0.5)
        workflow_id = uuid.uuid4()
        envelope = approval("acct", "fan", workflow_id)
        await h.bus.publish(envelope)
        store = h.store
        assert isinstance(store, MemoryMessageStore)
        await until(lambda: getattr(store.get(delivery(envelope)), "status", None) is MessageStatus.SENDING)
        await h.bus.publish(cancelled(workflow_id))
        assert isinstance(await h.sink.final(delivery(envelope)), DeliveryCompleted)
        assert len(h.sim.delivered()) == 1
