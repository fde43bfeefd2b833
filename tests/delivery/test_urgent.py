"""An urgent message within an account's own campaign, end to end on the memory bus (router → rate-limiter →
of-sender → platform simulator): the rate-limiter gives a critical reply a slot ahead of the campaign's
planned ones, the displaced delivery is planned again and its approval waits for the new slot — every fan
once, nothing over the limits."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from contracts.enums import IntentType, Priority, WorkflowStatus
from contracts.messages import Intent
from libs.ratelimit.constants import PREEMPT_MARGIN_MS
from libs.simulators import PlatformSimulator
from tests.delivery.compliance import all_violations
from tests.delivery.harness import GAP_S, LIMIT, WINDOW_S, DeliveryHarness, campaign, platform
from tests.fixtures.waiting import eventually

CREATOR = "creator-1"
FANS = 24  # twelve windows of two: the campaign's plan reaches about 4.8 s ahead


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with platform() as s:
        yield s


@pytest.fixture
async def h(sim: PlatformSimulator) -> AsyncIterator[DeliveryHarness]:
    harness = await DeliveryHarness.start(sim)
    yield harness
    await harness.close()


class TestUrgentWithinAnAccount:
    async def test_a_critical_reply_goes_ahead_of_its_accounts_planned_campaign(self, h: DeliveryHarness) -> None:
        """A low campaign of 24 fans is planned 4.8 s ahead; a critical reply from the same account reaches its
        fan within the margin and a window, the one displaced campaign delivery waits for its new slot, and
        the platform sees every fan once within the limits."""
        fans = [f"fan-{i}" for i in range(FANS)]
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
        assert len(campaign_after) >= FANS // 2
        assert Counter(a.recipient_id for a in arrivals) == Counter([*fans, "vip"])  # each fan once
        assert all_violations(arrivals, LIMIT, WINDOW_S, GAP_S) == []
        campaign_view = await h.pipeline.view(accepted.workflow.workflow_id)
        assert campaign_view.status is WorkflowStatus.COMPLETED
        assert campaign_view.progress is not None and campaign_view.progress.sent == FANS
        [replanned] = [e for e in logs if e["event"] == "delivery.replanned"]
        waited = [e for e in logs if e["event"] == "delivery.replanned_wait"]
        assert [e["delivery_id"] for e in waited] == [replanned["delivery_id"]]
