"""A ?wait=true requester told of the end (contracts.messages.Notify) instead of asking: the terminal view at
its reply queue, the address on the workflow's end for the cost-tracker — on each store."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts import Envelope
from contracts.enums import ErrorType, IntentType, Provider, WorkflowStatus
from contracts.messages import GenerationRequested, Notify, WorkflowCompleted, WorkflowStatusReply
from tests.router.harness import WAIT_S, Harness, fail, intent, ok


class TestNotify:
    async def test_the_end_is_told_to_the_requester_and_the_cost_at_the_texts_usage(self, harness: Harness) -> None:
        """A workflow requested with `notify` is accepted with notifies, hands the address to its generation
        request (the worker's usage of it tells the cost), tells its completed view to the end correlation id
        and stores the address; its workflow.completed carries none: the cost-tracker told the cost already."""
        workflow_id = uuid.uuid4()
        harness.workers.script(Provider.OPENAI, ok("told text", after_s=0.05))
        async with harness.bus.expecting("end", "cost") as (reply_to, (end, _)):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            accepted = await harness.request(intent(), workflow_id=workflow_id, notify=notify)
            told = (await asyncio.wait_for(end, WAIT_S)).payload
        assert accepted.notifies
        assert isinstance(told, WorkflowStatusReply) and told.workflow is not None
        assert (told.workflow.workflow_id, told.workflow.status) == (workflow_id, WorkflowStatus.COMPLETED)
        assert told.workflow.result == "told text" and told.workflow.usage is not None
        [call] = harness.workers.calls[Provider.OPENAI]
        assert isinstance(call.request.payload, GenerationRequested) and call.request.payload.notify == notify
        completed = await harness.sink.wait(workflow_id)
        assert isinstance(completed.payload, WorkflowCompleted) and completed.payload.notify is None
        stored = await harness.store.get(workflow_id)
        assert stored is not None and stored.notify == notify

    async def test_the_end_carries_notify_when_the_usage_did_not_tell(self, harness: Harness) -> None:
        """A generation whose usage did not tell the cost (cost_notified false: a refused draft was billed
        before it, or an older worker): workflow.completed carries `notify`, so the cost-tracker tells it."""
        workflow_id = uuid.uuid4()
        harness.workers.script(Provider.OPENAI, ok(notifies=False))
        async with harness.bus.expecting("end", "cost") as (reply_to, (end, _)):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            await harness.request(intent(), workflow_id=workflow_id, notify=notify)
            await asyncio.wait_for(end, WAIT_S)
        completed = await harness.sink.wait(workflow_id)
        assert isinstance(completed.payload, WorkflowCompleted) and completed.payload.notify == notify

    async def test_a_workflow_with_deliveries_asks_for_the_cost_at_its_end(self, harness: Harness) -> None:
        """A workflow that goes on to deliver after its text: its generation request carries no `notify` (the
        cost is told when it ends, after the deliveries)."""
        harness.workers.script(Provider.OPENAI, ok(after_s=0.05))
        campaign = intent(IntentType.CAMPAIGN_EXECUTION, send_to_onlyfans=True, recipient_ids=["fan-1", "fan-2"])
        async with harness.bus.expecting("end", "cost") as (reply_to, _):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            await harness.request(campaign, notify=notify)
        [call] = harness.workers.calls[Provider.OPENAI]
        assert isinstance(call.request.payload, GenerationRequested) and call.request.payload.notify is None

    async def test_the_end_is_told_while_the_outbox_is_still_being_published(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The requester hears the completed view while the publish of workflow.completed is held (not after it
        returns); once the publish goes on, workflow.completed reaches the cost-tracker."""
        workflow_id = uuid.uuid4()
        publish, publishing, release = harness.bus.publish, asyncio.Event(), asyncio.Event()

        async def held(envelope: Envelope, *, delay: float = 0.0) -> None:
            if isinstance(envelope.payload, WorkflowCompleted):
                publishing.set()
                await release.wait()
            await publish(envelope, delay=delay)

        monkeypatch.setattr(harness.bus, "publish", held)
        async with harness.bus.expecting("end", "cost") as (reply_to, (end, _)):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            try:
                await harness.request(intent(), workflow_id=workflow_id, notify=notify)
                await asyncio.wait({end}, timeout=WAIT_S)
                assert end.done(), "the end was not told while workflow.completed was being published"
                assert publishing.is_set() and not harness.sink.finished[workflow_id]
            finally:
                release.set()
        told = end.result().payload
        assert isinstance(told, WorkflowStatusReply) and told.workflow is not None
        assert (told.workflow.workflow_id, told.workflow.status) == (workflow_id, WorkflowStatus.COMPLETED)
        completed = await harness.sink.wait(workflow_id)
        assert isinstance(completed.payload, WorkflowCompleted) and completed.payload.notify is None

    async def test_a_failed_workflow_is_told_too(self, harness: Harness) -> None:
        """A workflow that fails on every provider tells its failed view, and workflow.failed carries `notify`."""
        workflow_id = uuid.uuid4()
        down = fail(ErrorType.PROVIDER_UNAVAILABLE, retryable=False)
        harness.workers.script(Provider.OPENAI, down)
        harness.workers.script(Provider.AZURE, down)
        async with harness.bus.expecting("end", "cost") as (reply_to, (end, _)):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            await harness.request(intent(), workflow_id=workflow_id, notify=notify)
            told = (await asyncio.wait_for(end, WAIT_S)).payload
        assert isinstance(told, WorkflowStatusReply) and told.workflow is not None
        assert told.workflow.status is WorkflowStatus.FAILED and told.workflow.error is not None
        failed = await harness.sink.wait(workflow_id)
        assert failed.payload.notify == notify  # type: ignore[union-attr]

    async def test_a_replayed_request_does_not_notify(self, harness: Harness) -> None:
        """A second request for an existing workflow is answered notifies=False (the first requester's address
        is the one told), and a request without `notify` is answered notifies=False."""
        workflow_id = uuid.uuid4()
        harness.workers.script(Provider.OPENAI, ok(after_s=0.2))
        async with harness.bus.expecting("end", "cost") as (reply_to, _):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            first = await harness.request(intent(), workflow_id=workflow_id, notify=notify)
            again = await harness.request(intent(), workflow_id=workflow_id, notify=notify)
        plain = await harness.request(intent())
        assert (first.notifies, again.notifies, plain.notifies) == (True, False, False)
