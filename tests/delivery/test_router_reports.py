"""The router's side of delivery: reports that come twice, out of order, or after the workflow finished."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Envelope
from contracts.enums import DeliveryState, ErrorType, IntentType, WorkflowStatus
from contracts.messages import DeliveryCompleted, DeliveryScheduled, Intent, WorkflowView
from libs.simulators import PlatformSimulator
from tests.delivery.harness import DeliveryHarness, campaign, platform
from tests.fixtures.waiting import eventually

D = DeliveryState


@pytest.fixture
async def h() -> AsyncIterator[DeliveryHarness]:
    sim: PlatformSimulator = platform()
    harness = await DeliveryHarness.start(sim, router={"router_delivery_grace_s": 0.3}, of_sender=False)
    yield harness
    await harness.close()


async def delivering(h: DeliveryHarness, *fans: str, deadline_s: float = 5.0) -> WorkflowView:
    """A workflow whose deliveries were requested and scheduled (nobody sends them: no of-sender)."""
    accepted = await h.pipeline.request(campaign(*fans), deadline_s=deadline_s)
    assert accepted.workflow is not None
    workflow_id = accepted.workflow.workflow_id

    async def scheduled() -> bool:
        view = await h.pipeline.view(workflow_id)
        return bool(view.deliveries) and all(d.scheduled_for for d in view.deliveries)

    await eventually(scheduled)
    return await h.pipeline.view(workflow_id)


async def report(h: DeliveryHarness, view: WorkflowView, payload: DeliveryCompleted | DeliveryScheduled) -> None:
    await h.bus.publish(Envelope.new(payload, workflow_id=view.workflow_id, user_id=view.user_id))


def sent(view: WorkflowView, index: int = 0) -> DeliveryCompleted:
    delivery = view.deliveries[index]
    return DeliveryCompleted(
        delivery_id=delivery.delivery_id,
        recipient_id=delivery.recipient_id,
        platform_message_id="msg_1",
        sent_at=datetime.now(UTC),
    )


class TestDeliveryReports:
    async def test_a_stale_schedule_does_not_undo_a_send(self, h: DeliveryHarness) -> None:
        """delivery.scheduled arriving after delivery.completed (reordered) leaves the delivery sent."""
        view = await delivering(h, "fan-1", "fan-2")
        await report(h, view, sent(view))
        first = view.deliveries[0]
        stale = DeliveryScheduled(
            delivery_id=first.delivery_id, recipient_id=first.recipient_id, slot_at=datetime.now(UTC) + timedelta(1)
        )
        await report(h, view, stale)
        await report(h, view, sent(view))  # and a duplicate

        async def settled() -> bool:
            return (await h.pipeline.view(view.workflow_id)).deliveries[0].status is D.SENT

        await eventually(settled)
        after = await h.pipeline.view(view.workflow_id)
        assert after.deliveries[0].scheduled_for == first.scheduled_for
        assert after.status is WorkflowStatus.DELIVERING  # fan-2 is still pending

    async def test_a_slot_reported_after_the_send_is_still_shown(self) -> None:
        """When the send's report overtakes the slot's (they are handled concurrently), the delivery stays
        sent, the workflow completed, and the slot still shows as its scheduledFor."""
        h = await DeliveryHarness.start(platform(), of_sender=False, rate_limiter=False)
        try:
            accepted = await h.pipeline.request(campaign("fan-1"))
            assert accepted.workflow is not None
            workflow_id = accepted.workflow.workflow_id
            await eventually(lambda: _status_is(h, workflow_id, WorkflowStatus.DELIVERING))
            view = await h.pipeline.view(workflow_id)
            await report(h, view, sent(view))
            await eventually(lambda: _status_is(h, workflow_id, WorkflowStatus.COMPLETED))
            slot = datetime.now(UTC)
            target = view.deliveries[0]
            await report(h, view, DeliveryScheduled(delivery_id=target.delivery_id, recipient_id="fan-1", slot_at=slot))

            async def slot_shown() -> bool:
                return (await h.pipeline.view(workflow_id)).deliveries[0].scheduled_for == slot

            await eventually(slot_shown)
            after = await h.pipeline.view(workflow_id)
            assert after.status is WorkflowStatus.COMPLETED and after.deliveries[0].status is D.SENT
        finally:
            await h.close()

    async def test_a_late_send_is_recorded_on_a_failed_workflow(self, h: DeliveryHarness) -> None:
        """A send reported after the delivery deadline failed the workflow is still shown (the fan did get
        the message); the workflow stays failed."""
        view = await delivering(h, "fan-1", deadline_s=0.5)
        finished = await h.pipeline.sink.wait(view.workflow_id)
        assert finished.type == "workflow.failed"
        await report(h, view, sent(view))

        async def noted() -> bool:
            return (await h.pipeline.view(view.workflow_id)).deliveries[0].status is D.SENT

        await eventually(noted)
        after = await h.pipeline.view(view.workflow_id)
        assert after.status is WorkflowStatus.FAILED and after.provider_states.onlyfans is D.SENT
        assert after.progress is not None and (after.progress.sent, after.progress.failed) == (1, 0)

    async def test_sending_without_recipients_is_refused(self, h: DeliveryHarness) -> None:
        """send_to_onlyfans without any recipient is refused before anything is generated."""
        intent = Intent(type=IntentType.MESSAGE_GENERATION, send_to_onlyfans=True)
        accepted = await h.pipeline.request(intent, workflow_id=uuid.uuid4())
        assert not accepted.accepted and accepted.error is not None
        assert accepted.error.type is ErrorType.INVALID_REQUEST


async def _status_is(h: DeliveryHarness, workflow_id: uuid.UUID, status: WorkflowStatus) -> bool:
    return (await h.pipeline.view(workflow_id)).status is status
