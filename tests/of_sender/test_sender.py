"""The of-sender on the memory bus against the platform simulator: one message per delivery, within the
limits, every failure path ending in a report to the router."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Envelope
from contracts.enums import ErrorType
from contracts.messages import DeliveryCompleted, DeliveryFailed, DeliveryReplanned, DeliveryScheduled
from contracts.routing import OF_SENDER
from libs.ratelimit import DownPolicy
from libs.simulators import PlatformFaultKind, PlatformSimulator
from services.of_sender.store import MemoryMessageStore, MessageStatus
from tests.delivery.compliance import all_violations
from tests.fixtures.waiting import eventually
from tests.of_sender.harness import GAP_S, LIMIT, WINDOW_S, SenderHarness, approval, platform, sender_settings

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with platform() as s:
        yield s


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {}


@pytest.fixture
async def h(sim: PlatformSimulator, settings_overrides: dict[str, object]) -> AsyncIterator[SenderHarness]:
    harness = await SenderHarness.start(sim, sender_settings(**settings_overrides))
    yield harness
    await harness.close()


class TestSending:
    async def test_an_approval_becomes_one_message(self, h: SenderHarness) -> None:
        """One platform message with the delivery id as Idempotency-Key; delivery.completed carries the
        platform's id and the send time; the record is sent after one attempt."""
        envelope = await h.approve()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        report = await h.sink.final(delivery_id)
        assert isinstance(report, DeliveryCompleted)
        [arrival] = h.sim.delivered()
        assert arrival.idempotency_key == str(delivery_id) and report.platform_message_id == arrival.message_id
        assert abs(report.sent_at.timestamp() - arrival.at) < 0.5
        record = h.store.get(delivery_id)  # type: ignore[attr-defined]
        assert record.status is MessageStatus.SENT and record.attempts == 1

    async def test_a_redelivered_approval_only_repeats_the_report(self, h: SenderHarness) -> None:
        """The same approval again (a broker redelivery) sends nothing more and reports the same result."""
        envelope = await h.approve()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        first = await h.sink.final(delivery_id)
        await h.bus.publish(envelope)
        await h.sink.wait(lambda: len(h.sink.of(delivery_id, DeliveryCompleted)) == 2)
        assert h.sink.of(delivery_id, DeliveryCompleted)[1] == first
        assert len(h.sim.arrivals()) == 1

    async def test_the_last_check_holds_back_what_the_window_cannot_take(self, h: SenderHarness) -> None:
        """Five approvals at once for one account: the platform never sees more than the limit per window
        nor a fan twice within the spacing; the held ones are re-scheduled (reported) and then sent."""
        envelopes = [await h.approve(fan=f"fan{i % 3}") for i in range(5)]
        for envelope in envelopes:
            assert isinstance(await h.sink.final(envelope.payload.delivery_id), DeliveryCompleted)  # type: ignore[attr-defined]
        delivered = h.sim.delivered()
        assert len(delivered) == 5 and all_violations(delivered, LIMIT, WINDOW_S, GAP_S) == []
        held = [e for e in envelopes if h.sink.of(e.payload.delivery_id, DeliveryScheduled)]  # type: ignore[attr-defined]
        assert len(held) >= 3
        assert all(s.error is None for e in held for s in h.sink.of(e.payload.delivery_id, DeliveryScheduled))  # type: ignore[attr-defined]

    async def test_history_survives_a_lost_send_log(self, sim: PlatformSimulator) -> None:
        """A new of-sender (its in-process log empty, as after a Redis flush) loads the sends from the
        durable record: a send right after the limit was reached still waits for the window."""
        store = MemoryMessageStore()
        first = await SenderHarness.start(sim, sender_settings(), store)
        try:
            for i in range(LIMIT):
                await first.sink.final((await first.approve(fan=f"fan{i}")).payload.delivery_id)  # type: ignore[attr-defined]
        finally:
            await first.close()
        second = await SenderHarness.start(sim, sender_settings(), store)
        try:
            await second.sink.final((await second.approve(fan="fan9")).payload.delivery_id)  # type: ignore[attr-defined]
        finally:
            await second.close()
        assert all_violations(sim.delivered(), LIMIT, WINDOW_S, GAP_S) == []


class TestReplanned:
    async def test_an_approval_due_before_its_new_slot_waits_for_it(self, h: SenderHarness) -> None:
        """delivery.replanned before the approval (as when an urgent delivery took its slot): the approval,
        due now, is re-queued to the new slot without a report to the router, then sent there."""
        envelope = approval()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        new_slot = datetime.now(UTC) + timedelta(seconds=0.8)
        replanned = DeliveryReplanned(delivery_id=delivery_id, account_id="acct", slot_at=new_slot)
        await h.bus.publish(Envelope.new(replanned))

        async def recorded() -> bool:  # read as the approval's handler will read it: `open` of its record
            return (await h.store.open(envelope, envelope.payload, 3)).replanned_to == new_slot  # type: ignore[arg-type]

        await eventually(recorded)
        await h.bus.publish(envelope)
        report = await h.sink.final(delivery_id)
        assert isinstance(report, DeliveryCompleted)
        [arrival] = h.sim.delivered()
        assert arrival.at >= new_slot.timestamp() - 0.01
        assert h.sink.of(delivery_id, DeliveryScheduled) == []  # the rate-limiter told the router
        assert h.store.get(delivery_id).attempts == 1  # type: ignore[attr-defined]

    async def test_a_replan_after_the_send_changes_nothing(self, h: SenderHarness) -> None:
        """A new slot heard of after the delivery went: nothing more is sent, the report stands."""
        envelope = await h.approve()
        delivery_id = envelope.payload.delivery_id  # type: ignore[attr-defined]
        first = await h.sink.final(delivery_id)
        later = datetime.now(UTC) + timedelta(seconds=5)
        await h.bus.publish(Envelope.new(DeliveryReplanned(delivery_id=delivery_id, account_id="acct", slot_at=later)))
        await h.bus.publish(envelope)  # a redelivery: only repeats the report, at once
        await h.sink.wait(lambda: len(h.sink.of(delivery_id, DeliveryCompleted)) == 2, timeout=2.0)
        assert h.sink.of(delivery_id, DeliveryCompleted)[1] == first and len(h.sim.arrivals()) == 1


class TestPlatformFailures:
    async def test_a_5xx_is_retried_with_the_same_key(self, h: SenderHarness) -> None:
        """A 503 re-queues the send (reported with the error); the retry carries the same key and succeeds."""
        h.sim.add_fault(PlatformFaultKind.SERVER_ERROR)
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        assert isinstance(await h.sink.final(delivery_id), DeliveryCompleted)
        assert [a.outcome for a in h.sim.arrivals()] == ["server_error", "sent"]
        assert {a.idempotency_key for a in h.sim.arrivals()} == {str(delivery_id)}
        # The failed attempt still counts as a send (the platform may have counted it): the retry may also be
        # held back by the fan's spacing, reported as a plain re-schedule.
        moved = h.sink.of(delivery_id, DeliveryScheduled)[0]
        assert moved.error.type is ErrorType.ONLYFANS_API_ERROR and moved.error.status_code == 503
        assert h.store.get(delivery_id).attempts == 2  # type: ignore[attr-defined]

    @pytest.mark.parametrize("settings_overrides", [{"of_max_retries": 1}])
    async def test_retries_end_in_failure_and_a_dead_letter(self, h: SenderHarness) -> None:
        """Past OF_MAX_RETRIES the delivery fails (not retryable, with the reason) and its approval goes to
        the dead-letter queue with that reason."""
        h.sim.add_fault(PlatformFaultKind.SERVER_ERROR, count=None)
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        report = await h.sink.final(delivery_id)
        assert isinstance(report, DeliveryFailed) and not report.error.retryable
        assert "gave up after 2 attempts" in report.error.message
        [dead] = await h.bus.dead_letters(OF_SENDER)
        assert "failed after 2 attempts" in dead.reason
        assert h.store.get(delivery_id).status is MessageStatus.FAILED  # type: ignore[attr-defined]

    async def test_a_4xx_fails_at_once(self, h: SenderHarness) -> None:
        """A 400 is permanent: one attempt, delivery.failed with the status."""
        h.sim.add_fault(PlatformFaultKind.BAD_REQUEST)
        report = await h.sink.final((await h.approve()).payload.delivery_id)  # type: ignore[attr-defined]
        assert isinstance(report, DeliveryFailed) and report.error.status_code == 400
        assert len(h.sim.arrivals()) == 1

    async def test_a_429_requeues_after_its_retry_after(self, h: SenderHarness) -> None:
        """A platform 429 is onlyfans_rate_limited: re-queued for at least its Retry-After, then sent."""
        h.sim.add_fault(PlatformFaultKind.RATE_LIMIT, retry_after=0.3)
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        assert isinstance(await h.sink.final(delivery_id), DeliveryCompleted)
        limited, sent = h.sim.arrivals()
        assert sent.at - limited.at >= 0.3
        moved = h.sink.of(delivery_id, DeliveryScheduled)[0]
        assert moved.error.type is ErrorType.RATE_LIMIT_EXCEEDED and moved.error.retry_after_s == 0.3

    async def test_a_second_429_fails_the_delivery(self, h: SenderHarness) -> None:
        """The onlyfans_rate_limited row allows one re-queue (max retries 0): the next 429 fails it."""
        h.sim.add_fault(PlatformFaultKind.RATE_LIMIT, count=2, retry_after=0)
        report = await h.sink.final((await h.approve()).payload.delivery_id)  # type: ignore[attr-defined]
        assert isinstance(report, DeliveryFailed) and report.error.type is ErrorType.RATE_LIMIT_EXCEEDED
        assert "re-queued 1 times" in report.error.message

    async def test_a_lost_answer_is_looked_up_not_resent(self, h: SenderHarness) -> None:
        """The platform took the message but the connection dropped: the look-up finds it, nothing is sent
        again, and the delivery completes with the first arrival's id after one attempt."""
        h.sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE)
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        report = await h.sink.final(delivery_id)
        assert isinstance(report, DeliveryCompleted)
        assert [a.outcome for a in h.sim.arrivals()] == ["sent"]
        assert [x.outcome for x in h.sim.lookups()] == ["found"]
        assert report.platform_message_id == h.sim.delivered()[0].message_id
        assert h.store.get(delivery_id).attempts == 1  # type: ignore[attr-defined]


class TestLimiterDown:
    @pytest.mark.parametrize(
        "settings_overrides", [{"redis_url": UNREACHABLE_REDIS, "rate_limiter_down_max_hold_s": 0.3}]
    )
    async def test_hold_never_sends_and_fails_after_the_bound(self, h: SenderHarness) -> None:
        """With the send log unreachable and policy hold: nothing is sent, the router hears of the hold
        once, and the delivery fails with the reason after RATE_LIMITER_DOWN_MAX_HOLD_S."""
        started = time.monotonic()
        delivery_id = (await h.approve()).payload.delivery_id  # type: ignore[attr-defined]
        report = await h.sink.final(delivery_id)
        assert isinstance(report, DeliveryFailed) and report.error.type is ErrorType.PROVIDER_UNAVAILABLE
        assert time.monotonic() - started >= 0.3
        [held] = h.sink.of(delivery_id, DeliveryScheduled)
        assert held.error.type is ErrorType.PROVIDER_UNAVAILABLE and "held" in held.error.message
        assert h.sim.arrivals() == []

    @pytest.mark.parametrize(
        "settings_overrides",
        [{"redis_url": UNREACHABLE_REDIS, "rate_limiter_down_policy": DownPolicy.BYPASS_WITH_WARNING}],
    )
    async def test_bypass_sends_within_the_replicas_own_conservative_limit(self, h: SenderHarness) -> None:
        """bypass_with_warning sends without Redis, but this replica lets at most
        RATE_LIMITER_BYPASS_ACCOUNT_LIMIT (1) through per window."""
        envelopes = [await h.approve(fan=f"fan{i}") for i in range(3)]
        for envelope in envelopes:
            assert isinstance(await h.sink.final(envelope.payload.delivery_id), DeliveryCompleted)  # type: ignore[attr-defined]
        assert all_violations(h.sim.delivered(), 1, WINDOW_S, GAP_S) == []
