"""An operator's cancel and retry as the router handles them, on the memory bus and each store: a cancel stops
a campaign's open deliveries in one write and announces it; a send that was already under way still counts;
only the owner, a user of the account or an admin may; a failed workflow is retried as a new, linked one
with the fans not sent."""

from __future__ import annotations

import asyncio
import uuid

from contracts import Envelope, Message
from contracts.enums import DeliveryState, ErrorType, IntentType, Provider, WorkflowStatus
from contracts.messages import (
    DeliveryCompleted,
    DeliveryCounts,
    DeliveryRequested,
    Intent,
    Recipient,
    Requester,
    WorkflowCancelled,
    WorkflowCancelReply,
    WorkflowCancelRequest,
    WorkflowRetryReply,
    WorkflowRetryRequest,
)
from services.router.control import retry_id
from tests.fixtures.waiting import eventually
from tests.router.harness import WAIT_S, Harness, fail, ok
from tests.router.test_campaigns import answer_deliveries, campaign, delivering

D = DeliveryState
OWNER = Requester(user_id="user-1")


async def ask(harness: Harness, payload: Message, user: str) -> Message:
    reply = await harness.bus.request(Envelope.new(payload, user_id=user), timeout=WAIT_S)
    return reply.payload


async def cancel(harness: Harness, workflow_id: uuid.UUID, requester: Requester = OWNER) -> WorkflowCancelReply:
    reply = await ask(harness, WorkflowCancelRequest(workflow_id=workflow_id, requester=requester), requester.user_id)
    assert isinstance(reply, WorkflowCancelReply)
    return reply


async def retry(harness: Harness, workflow_id: uuid.UUID, requester: Requester = OWNER) -> WorkflowRetryReply:
    reply = await ask(harness, WorkflowRetryRequest(workflow_id=workflow_id, requester=requester), requester.user_id)
    assert isinstance(reply, WorkflowRetryReply)
    return reply


def sent(request: Envelope) -> Envelope:
    payload = request.payload
    assert isinstance(payload, DeliveryRequested)
    report = DeliveryCompleted(
        delivery_id=payload.delivery_id,
        recipient_id=payload.recipient_id,
        platform_message_id=f"msg-{payload.recipient_id}",
        sent_at=request.occurred_at,
    )
    return request.child(report)


class TestCancel:
    async def test_open_deliveries_are_cancelled_and_the_sent_ones_counted(self, harness: Harness) -> None:
        """Two of five fans sent, then the cancel: cancelled with sentBefore 2, three deliveries cancelled, and
        workflow.cancelled announced for the workflow's account."""
        await answer_deliveries(harness, skip=lambda fan: fan not in ("fan-0", "fan-1"))
        workflow_id = await delivering(harness, campaign(5))

        async def two_sent() -> bool:
            workflow = await harness.store.get(workflow_id)
            return workflow is not None and workflow.tally.sent == 2

        await eventually(two_sent, timeout=WAIT_S)
        reply = await cancel(harness, workflow_id)
        assert (reply.outcome, reply.sent_before) == ("cancelled", 2)
        assert reply.workflow is not None and reply.workflow.status is WorkflowStatus.CANCELLED
        view = await harness.view(workflow_id)
        assert view.progress is not None and (view.progress.sent, view.progress.cancelled) == (2, 3)
        assert sorted(d.status for d in view.deliveries) == [D.CANCELLED] * 3 + [D.SENT] * 2
        [announced] = harness.bus.of_type(WorkflowCancelled, workflow_id)
        assert isinstance(announced.payload, WorkflowCancelled) and announced.payload.account_id == "user-1"

    async def test_a_send_under_way_at_the_cancel_still_counts_as_sent(self, harness: Harness) -> None:
        """A delivery cancelled while its send was in flight, then reported sent: it counts sent, not cancelled."""
        await answer_deliveries(harness, skip=lambda fan: True)
        workflow_id = await delivering(harness, campaign(3))
        assert (await cancel(harness, workflow_id)).outcome == "cancelled"
        late = harness.bus.of_type(DeliveryRequested, workflow_id)[0]
        await harness.bus.publish(sent(late))

        async def counted() -> bool:
            workflow = await harness.store.get(workflow_id)
            return workflow is not None and workflow.tally.counts() == DeliveryCounts(total=3, sent=1, cancelled=2)

        await eventually(counted, timeout=WAIT_S)
        workflow = await harness.store.get(workflow_id)
        assert workflow is not None and workflow.status is WorkflowStatus.CANCELLED

    async def test_a_cancelled_workflow_generates_nothing_more(self, harness: Harness) -> None:
        """Cancelled while generating: the generation result that arrives after it is ignored."""
        harness.workers.script(Provider.AZURE, ok(after_s=0.3))
        harness.workers.script(Provider.OPENAI, ok(after_s=0.3))
        accepted = await harness.request(campaign(2))
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        assert (await cancel(harness, workflow_id)).outcome == "cancelled"
        await asyncio.sleep(0.6)
        assert harness.bus.of_type(DeliveryRequested, workflow_id) == []
        workflow = await harness.store.get(workflow_id)
        assert workflow is not None and workflow.status is WorkflowStatus.CANCELLED and workflow.result is None

    async def test_who_may_cancel(self, harness: Harness) -> None:
        """Unknown: not_found; another user: forbidden; a user of the account and an admin may; ended: finished."""
        await answer_deliveries(harness, skip=lambda fan: True)
        assert (await cancel(harness, uuid.uuid4())).outcome == "not_found"
        accepted = await harness.request(campaign(1), account_id="creator-9")
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        assert (await cancel(harness, workflow_id, Requester(user_id="user-2"))).outcome == "forbidden"
        staff = Requester(user_id="user-2", accounts=["creator-9"])
        assert (await cancel(harness, workflow_id, staff)).outcome == "cancelled"
        again = await cancel(harness, workflow_id, Requester(user_id="root", is_admin=True))
        assert again.outcome == "finished" and again.workflow is not None

    async def test_the_account_is_the_one_deliveries_are_sent_from(self, harness: Harness) -> None:
        """With accountId the delivery requests name that account; without it, the requester's id."""
        await answer_deliveries(harness)
        chosen = await delivering(harness, campaign(1), account_id="creator-9")
        default = await delivering(harness, campaign(1, prefix="other"))
        [a] = harness.bus.of_type(DeliveryRequested, chosen)
        [b] = harness.bus.of_type(DeliveryRequested, default)
        assert isinstance(a.payload, DeliveryRequested) and isinstance(b.payload, DeliveryRequested)
        assert (a.payload.account_id, b.payload.account_id) == ("creator-9", "user-1")


class TestRetry:
    async def test_a_failed_workflow_is_retried_as_a_new_linked_one(self, harness: Harness) -> None:
        """The retry has a derived id, retry_of the failed one, the same intent; asking twice answers the same."""
        for provider in Provider:
            harness.workers.script(provider, fail(ErrorType.INVALID_REQUEST, retryable=False))
        accepted = await harness.request(Intent(type=IntentType.MESSAGE_GENERATION, data={"prompt": "hi"}))
        assert accepted.workflow is not None
        failed_id = accepted.workflow.workflow_id
        await harness.sink.wait(failed_id)
        for provider in Provider:
            harness.workers.script(provider, ok("second time"))
        first = await retry(harness, failed_id)
        assert first.outcome == "retried" and first.workflow is not None
        assert (first.workflow.workflow_id, first.workflow.retry_of) == (retry_id(failed_id), failed_id)
        await harness.sink.wait(retry_id(failed_id))
        second = await retry(harness, failed_id)
        assert second.workflow is not None and second.workflow.workflow_id == retry_id(failed_id)
        view = await harness.view(retry_id(failed_id))
        assert (view.status, view.result) == (WorkflowStatus.COMPLETED, "second time")

    async def test_a_failed_campaign_is_retried_for_its_unsent_fans(self, harness: Harness) -> None:
        """Every fan refused: the retry's deliveries are those fans again, with their vars."""
        await answer_deliveries(harness, refuse=lambda fan: fan.startswith("fan-"))
        fans = (Recipient(id="fan-0", vars={"name": "Ann"}), Recipient(id="fan-1"))
        intent = Intent(type=IntentType.CAMPAIGN_EXECUTION, data={"prompt": "hi"}, send_to_onlyfans=True)
        accepted = await harness.request(intent, recipients=fans)
        assert accepted.workflow is not None
        failed_id = accepted.workflow.workflow_id
        await harness.sink.wait(failed_id)
        reply = await retry(harness, failed_id)
        assert reply.outcome == "retried"
        rows = await harness.store.deliveries(retry_id(failed_id), after_seq=None, limit=10)
        assert [(r.recipient_id, dict(r.vars)) for r in rows] == [("fan-0", {"name": "Ann"}), ("fan-1", {})]

    async def test_only_a_failed_workflow_of_ones_own(self, harness: Harness) -> None:
        """Unknown: not_found; another user's: forbidden; a completed one: not_failed."""
        assert (await retry(harness, uuid.uuid4())).outcome == "not_found"
        view, _ = await harness.run(Intent(type=IntentType.MESSAGE_GENERATION, data={"prompt": "hi"}))
        assert (await retry(harness, view.workflow_id, Requester(user_id="user-2"))).outcome == "forbidden"
        assert (await retry(harness, view.workflow_id)).outcome == "not_failed"
