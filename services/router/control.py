"""The operator's writes on a workflow: cancel it, or retry a failed one.

    workflow.cancel ─► not found / not theirs / already ended ─► WorkflowCancelReply(outcome) (nothing written)
                    └► cancelled: every open delivery cancelled in the same write, workflow.cancelled
                       announced (the of-sender sends none of its approvals from then on) ─► the reply
                       with the deliveries sent before the cancel
    workflow.retry  ─► not found / not theirs / not failed ─► WorkflowRetryReply(outcome)
                    └► a NEW workflow (its own id, `retry_of` the failed one) with the same intent and,
                       for a campaign, the fans not sent — started exactly like a workflow.requested

Who may: the workflow's owner, a user whose token names its account (`accounts`), or an admin. The answer
says which of "not found" and "not yours" it is (the API maps them to 404 and 403).

A retry's id is derived from the failed workflow's, so asking twice answers the same new workflow; to try
again after the retry failed too, retry the retry. Deliveries of the new workflow have new ids (they belong to
it): a delivery of the failed one whose outcome stayed unknown (the of-sender could not look it up) is sent
again — the dead letters of the of-sender name such deliveries.

A send already under way when the cancel is written may still happen; its report then counts it sent
(migration 003), so the status never says "cancelled" for a fan who got the message.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from contracts import Envelope, Message
from contracts.enums import DeliveryState, WorkflowStatus
from contracts.messages import (
    Recipient,
    Requester,
    WorkflowAccepted,
    WorkflowCancelled,
    WorkflowCancelReply,
    WorkflowCancelRequest,
    WorkflowRequested,
    WorkflowRetryReply,
    WorkflowRetryRequest,
)
from libs.telemetry import get_logger
from services.router.constants import RETRY_NAMESPACE, RETRY_PAGE
from services.router.state import Change, Workflow
from services.router.store import WorkflowStore

log = get_logger(__name__)

Apply = Callable[[Envelope, Callable[[Workflow, datetime], Change | None]], Awaitable[Workflow | None]]
"""Router._apply: decide on the stored workflow and save the change (retrying write conflicts)."""
Start = Callable[[Envelope], Awaitable[Message | None]]
"""Router.on_requested: start a workflow from a workflow.requested envelope."""


def may_act(workflow: Workflow, requester: Requester) -> bool:
    """Whether `requester` may cancel or retry `workflow`: its owner, a user of its account, or an admin."""
    return requester.is_admin or workflow.user_id == requester.user_id or workflow.sends_as in requester.accounts


def retry_id(workflow_id: uuid.UUID) -> uuid.UUID:
    """The id of the workflow that retries `workflow_id` (the same however often the retry is asked)."""
    return uuid.uuid5(RETRY_NAMESPACE, str(workflow_id))


class Control:
    def __init__(self, store: WorkflowStore, apply: Apply, start: Start) -> None:
        self.store = store
        self._apply = apply
        self._start = start

    async def on_cancel(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        assert isinstance(request, WorkflowCancelRequest)
        workflow = await self.store.get(request.workflow_id)
        if workflow is None:
            return WorkflowCancelReply(outcome="not_found")
        if not may_act(workflow, request.requester):
            return WorkflowCancelReply(outcome="forbidden")
        if workflow.is_terminal:
            return WorkflowCancelReply(outcome="finished", workflow=workflow.to_view(), sent_before=workflow.tally.sent)
        # The decision runs against the stored workflow (the envelope names no workflow: derive one that does).
        cause = envelope.model_copy(update={"workflow_id": workflow.workflow_id, "user_id": workflow.user_id})
        by = request.requester.user_id

        def cancel(current: Workflow, now: datetime) -> Change | None:
            if current.is_terminal:
                return None
            change = Change(current, cause, now)
            change.cancel_open()
            change.move(WorkflowStatus.CANCELLED, "cancelled", {"by": by}, completed_at=now)
            tally = change.workflow.tally
            change.emit(
                WorkflowCancelled(
                    workflow_id=current.workflow_id,
                    account_id=current.sends_as,
                    cancelled_at=now,
                    duration_ms=current.duration_ms(now),
                    deliveries=tally.counts() if tally.total else None,
                )
            )
            return change

        after = await self._apply(cause, cancel)
        assert after is not None  # it exists: _apply raises for an unknown workflow
        if after.status is not WorkflowStatus.CANCELLED:  # it ended otherwise while the cancel was on its way
            return WorkflowCancelReply(outcome="finished", workflow=after.to_view(), sent_before=after.tally.sent)
        log.info("workflow.cancel", by=by, sent_before=after.tally.sent, cancelled=after.tally.cancelled)
        return WorkflowCancelReply(outcome="cancelled", workflow=after.to_view(), sent_before=after.tally.sent)

    async def on_retry(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        assert isinstance(request, WorkflowRetryRequest)
        failed = await self.store.get(request.workflow_id)
        if failed is None:
            return WorkflowRetryReply(outcome="not_found")
        if not may_act(failed, request.requester):
            return WorkflowRetryReply(outcome="forbidden")
        if failed.status is not WorkflowStatus.FAILED:
            return WorkflowRetryReply(outcome="not_failed", workflow=failed.to_view())
        again = WorkflowRequested(
            intent=failed.intent.model_copy(update={"recipient_id": None, "recipient_ids": []}),
            trace_id=failed.trace_id,
            recipients=await self._unsent(failed),
            callback_url=failed.callback_url,
            account_id=failed.account_id,
            retry_of=failed.workflow_id,
        )
        new_id = retry_id(failed.workflow_id)
        # The owner's workflow, whoever asked; its own derived message id, so a redelivered retry request is
        # the same workflow.requested (de-duplicated by the router like any other).
        started = Envelope.new(again, workflow_id=new_id, user_id=failed.user_id, id=uuid.uuid5(new_id, "requested"))
        started = started.model_copy(update={"causation_id": envelope.id})
        reply = await self._start(started)
        assert isinstance(reply, WorkflowAccepted)  # on_requested answers every request with one
        if not reply.accepted or reply.workflow is None:  # e.g. the owner's budget blocks new workflows
            return WorkflowRetryReply(outcome="refused", error=reply.error)
        log.info("workflow.retry", retry_of=str(failed.workflow_id), new_workflow_id=str(new_id))
        return WorkflowRetryReply(outcome="retried", workflow=reply.workflow)

    async def _unsent(self, workflow: Workflow) -> list[Recipient]:
        """The fans of `workflow` not sent, with their vars, in campaign order."""
        unsent: list[Recipient] = []
        after: int | None = None
        while True:
            rows = await self.store.deliveries(workflow.workflow_id, after_seq=after, limit=RETRY_PAGE)
            unsent += [
                Recipient(id=r.recipient_id, vars=dict(r.vars)) for r in rows if r.status is not DeliveryState.SENT
            ]
            if len(rows) < RETRY_PAGE:
                return unsent
            after = rows[-1].seq
