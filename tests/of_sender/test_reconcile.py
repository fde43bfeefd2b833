"""Reconciliation: an unknown outcome is looked up, not resent blindly — so exactly-once holds on a platform
that does NOT honour Idempotency-Key. The of-sender runs on real Redis (send log) and PostgreSQL (its
record), against the platform simulator as an HTTP server that delivers a key sent twice twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from contracts.enums import ErrorType
from contracts.messages import DeliveryCompleted, DeliveryFailed, DeliveryScheduled
from contracts.routing import OF_SENDER
from libs.simulators import PlatformFaultKind, PlatformSimulator
from libs.simulators.platform import PlatformRoute
from services.of_sender.pg_store import PostgresMessageStore
from services.of_sender.store import MessageStatus, MessageStore
from tests.delivery.compliance import all_violations
from tests.of_sender.harness import GAP_S, LIMIT, WINDOW_S, SenderHarness, approval, platform, sender_settings

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


async def status_of(store: MessageStore, delivery_id: uuid.UUID) -> tuple[MessageStatus, int]:
    """The stored delivery's status and attempts (`open` returns the record of a delivery it already has)."""
    envelope = approval(delivery_id=delivery_id)
    record = await store.open(envelope, envelope.payload, 0)  # type: ignore[arg-type]
    return record.status, record.attempts


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
