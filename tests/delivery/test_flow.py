"""Delivery end to end on the memory bus: router → rate-limiter → of-sender → platform simulator → router.
Every workflow ends completed or failed, with each delivery's state visible in its status; an urgent message
goes ahead of its own account's planned campaign."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from contracts.enums import DeliveryState, ErrorType, IntentType, Priority, Provider, RateLimiterState, WorkflowStatus
from contracts.messages import Intent, WorkflowCompleted, WorkflowFailed
from libs.ratelimit.constants import PREEMPT_MARGIN_MS
from libs.simulators import PlatformFaultKind, PlatformSimulator
from services.router.delivery import delivery_id_for
from tests.delivery.compliance import all_violations
from tests.delivery.harness import GAP_S, LIMIT, WINDOW_S, DeliveryHarness, campaign, personal_text, platform
from tests.fixtures.waiting import eventually

D = DeliveryState
CREATOR = "creator-1"
URGENT_FANS = 24  # twelve windows of two: the campaign's plan reaches about 4.8 s ahead


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with platform() as s:
        yield s


@pytest.fixture
async def h(sim: PlatformSimulator) -> AsyncIterator[DeliveryHarness]:
    harness = await DeliveryHarness.start(sim)
    yield harness
    await harness.close()


class TestDelivery:
    async def test_a_message_is_generated_sent_and_reported(self, h: DeliveryHarness) -> None:
        """send_to_onlyfans with one fan: completed after the send, the delivery sent with its slot, send
        time and the platform's message id; the fan got the generated text once."""
        intent = Intent(type=IntentType.MESSAGE_GENERATION, data={"p": 1}, send_to_onlyfans=True, recipient_id="fan-1")
        view, finished = await h.run(intent, user="creator-1")
        assert isinstance(finished.payload, WorkflowCompleted) and view.status is WorkflowStatus.COMPLETED
        [delivery] = view.deliveries
        [arrival] = h.sim.delivered()
        assert delivery.delivery_id == delivery_id_for(view.workflow_id, "fan-1")
        assert (delivery.status, delivery.platform_message_id) == (D.SENT, arrival.message_id)
        assert delivery.scheduled_for is not None and delivery.sent_at is not None
        assert (arrival.account_id, arrival.recipient_id, arrival.text) == ("creator-1", "fan-1", view.result)
        assert view.provider_states.onlyfans is D.SENT
        assert view.provider_states.rate_limiter is RateLimiterState.APPROVED
        events = [e.name for e in await h.pipeline.store.history(view.workflow_id)]
        assert events[-3:] == ["generation_completed", "delivery_requested", "completed"]  # the workflow's own
        assert view.progress is not None and (view.progress.total, view.progress.sent) == (1, 1)

    async def test_a_campaign_reaches_every_fan_within_the_limits(self, h: DeliveryHarness) -> None:
        """Seven fans, two per window: every fan gets the text once, no window or spacing is exceeded, and
        the workflow completes only after the last send."""
        fans = [f"fan-{i}" for i in range(7)]
        view, _ = await h.run(campaign(*fans), deadline_s=20)
        assert view.status is WorkflowStatus.COMPLETED
        assert {d.recipient_id for d in view.deliveries if d.status is D.SENT} == set(fans)
        delivered = h.sim.delivered()
        assert sorted(a.recipient_id for a in delivered) == sorted(fans)
        assert all_violations(delivered, LIMIT, WINDOW_S, GAP_S) == []
        assert view.completed_at is not None and view.completed_at.timestamp() >= max(a.at for a in delivered)
        assert len(h.pipeline.workers.calls[Provider.OPENAI]) + len(h.pipeline.workers.calls[Provider.AZURE]) == 1

    async def test_a_fan_given_twice_gets_one_message(self, h: DeliveryHarness) -> None:
        """Duplicates in recipientIds are one delivery: the fan receives the text once."""
        view, _ = await h.run(campaign("a", "b", "a"), deadline_s=20)
        assert view.status is WorkflowStatus.COMPLETED
        assert [d.recipient_id for d in view.deliveries] == ["a", "b"]
        assert sorted(a.recipient_id for a in h.sim.delivered()) == ["a", "b"]

    async def test_a_personalized_campaign_writes_each_fan_its_own_text(self, h: DeliveryHarness) -> None:
        """data.personalize: one generation per fan (asked for that fan), each fan receives its own text."""
        for provider in Provider:
            h.pipeline.workers.script(provider, personal_text)
        view, _ = await h.run(campaign("a", "b", "c", data={"personalize": True}), deadline_s=20)
        assert view.status is WorkflowStatus.COMPLETED and len(view.deliveries) == 3
        calls = h.pipeline.workers.calls[Provider.OPENAI] + h.pipeline.workers.calls[Provider.AZURE]
        assert [c.request.payload.recipient_id for c in calls] == ["a", "b", "c"]  # type: ignore[attr-defined]
        assert {a.recipient_id: a.text for a in h.sim.delivered()} == {f: f"hello {f}" for f in "abc"}
        assert view.retry_attempts.openai == 0 and view.retry_attempts.azure == 0

    async def test_a_refused_message_fails_the_workflow_with_the_reason(self, h: DeliveryHarness) -> None:
        """The platform refuses the only delivery (400): the workflow fails, saying why, and the delivery
        shows failed with the platform's status."""
        h.sim.add_fault(PlatformFaultKind.BAD_REQUEST)
        view, finished = await h.run(campaign("fan-1"))
        assert isinstance(finished.payload, WorkflowFailed) and view.status is WorkflowStatus.FAILED
        assert view.error is not None and view.error.type is ErrorType.ONLYFANS_API_ERROR
        assert "the delivery to fan-1 failed" in view.error.message and "400" in view.error.message
        [delivery] = view.deliveries
        assert delivery.status is D.FAILED and delivery.error is not None and delivery.error.status_code == 400
        assert view.provider_states.onlyfans is D.FAILED

    async def test_a_partly_failed_campaign_completes_and_shows_the_failure(self, h: DeliveryHarness) -> None:
        """One of two deliveries refused: completed (something was sent), the refused one visible as failed."""
        h.sim.add_fault(PlatformFaultKind.BAD_REQUEST)
        view, _ = await h.run(campaign("fan-1", "fan-2"))
        assert view.status is WorkflowStatus.COMPLETED
        assert sorted(d.status for d in view.deliveries) == sorted([D.SENT, D.FAILED])

    async def test_a_rate_limited_retry_is_visible_then_sent(self, h: DeliveryHarness) -> None:
        """A platform 429 shows as a retry (retryAttempts.onlyFans, the delivery's error), then the send
        succeeds on the re-queue."""
        h.sim.add_fault(PlatformFaultKind.RATE_LIMIT, retry_after=0.2)
        view, _ = await h.run(campaign("fan-1"))
        assert view.status is WorkflowStatus.COMPLETED and view.retry_attempts.onlyfans >= 1
        [delivery] = view.deliveries
        assert delivery.status is D.SENT and delivery.error is None


class TestDeliveryDeadline:
    async def test_a_delivery_that_never_finishes_fails_the_workflow_visibly(self, sim: PlatformSimulator) -> None:
        """No of-sender: the delivery stays scheduled; ROUTER_DELIVERY_GRACE_S after its slot the workflow
        fails, naming the unfinished delivery and its slot, and the delivery is failed with that reason."""
        h = await DeliveryHarness.start(sim, router={"router_delivery_grace_s": 0.5}, of_sender=False)
        try:
            view, finished = await h.run(campaign("fan-1"), deadline_s=1.0)
        finally:
            await h.close()
        assert isinstance(finished.payload, WorkflowFailed)
        assert view.error is not None and view.error.message.startswith("deadline passed while delivering")
        assert "1 of 1 deliveries unfinished, next scheduled for" in view.error.message
        [delivery] = view.deliveries
        assert delivery.status is D.FAILED and delivery.scheduled_for is not None
        assert delivery.error is not None and delivery.error.message == view.error.message

    async def test_a_held_delivery_fails_the_workflow_with_the_hold_as_reason(self, sim: PlatformSimulator) -> None:
        """Redis unreachable under hold: the workflow shows the hold (rate limiter throttled, the error) and
        fails at its delivery deadline with that reason — nothing was sent."""
        limits = {"redis_url": "redis://127.0.0.1:1/0", "rate_limiter_down_max_hold_s": 60}
        h = await DeliveryHarness.start(sim, router={"router_delivery_grace_s": 0.5}, limits=limits)
        try:
            view, _ = await h.run(campaign("fan-1"), deadline_s=1.0)
        finally:
            await h.close()
        assert view.status is WorkflowStatus.FAILED and view.provider_states.rate_limiter is RateLimiterState.THROTTLED
        assert view.error is not None and "held: the rate limiter's Redis is unreachable" in view.error.message
        assert sim.arrivals() == []


class TestUrgentWithinAnAccount:
    """The rate-limiter gives a critical reply a slot ahead of its own account's planned campaign, the
    displaced delivery is planned again and its approval waits for the new slot."""

    async def test_a_critical_reply_goes_ahead_of_its_accounts_planned_campaign(self, h: DeliveryHarness) -> None:
        """A low campaign of 24 fans is planned 4.8 s ahead; a critical reply from the same account reaches its
        fan within the margin and a window, the one displaced campaign delivery waits for its new slot, and
        the platform sees every fan once within the limits."""
        fans = [f"fan-{i}" for i in range(URGENT_FANS)]
        bulk = campaign(*fans, priority=Priority.LOW)
        with capture_logs() as logs:
            accepted = await h.pipeline.request(bulk, user=CREATOR, deadline_s=30)
            assert accepted.workflow is not None

            async def first_window_sent() -> bool:  # the whole campaign is planned by then
                return len(h.sim.delivered()) >= LIMIT

            await eventually(first_window_sent)
            reply = Intent(
                type=IntentType.MESSAGE_GENERATION,
                data={"p": 1},
                send_to_onlyfans=True,
                recipient_id="vip",
                priority=Priority.CRITICAL,
            )
            asked = time.time()
            view, _ = await h.run(reply, user=CREATOR, deadline_s=30)
            assert view.status is WorkflowStatus.COMPLETED
            await h.pipeline.sink.wait(accepted.workflow.workflow_id)
        arrivals = h.sim.delivered()
        [vip] = [a for a in arrivals if a.recipient_id == "vip"]
        # Without taking a campaign slot it would wait for the whole plan (about 4.8 s); it waits for the
        # margin and at most a window after it.
        assert vip.at - asked < PREEMPT_MARGIN_MS / 1000 + WINDOW_S + 0.5
        campaign_after = [a for a in arrivals if a.recipient_id != "vip" and a.at > vip.at]
        assert len(campaign_after) >= URGENT_FANS // 2
        assert Counter(a.recipient_id for a in arrivals) == Counter([*fans, "vip"])  # each fan once
        assert all_violations(arrivals, LIMIT, WINDOW_S, GAP_S) == []
        campaign_view = await h.pipeline.view(accepted.workflow.workflow_id)
        assert campaign_view.status is WorkflowStatus.COMPLETED
        assert campaign_view.progress is not None and campaign_view.progress.sent == URGENT_FANS
        [replanned] = [e for e in logs if e["event"] == "delivery.replanned"]
        waited = [e for e in logs if e["event"] == "delivery.replanned_wait"]
        assert [e["delivery_id"] for e in waited] == [replanned["delivery_id"]]
