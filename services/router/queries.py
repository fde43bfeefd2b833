"""The router's read side: status queries (answered at once, or — `wait_s`, the gateway's ?wait=true — when
the workflow is terminal: `finished` is told by the write side, and a re-read every STATUS_WAIT_RECHECK_S
finds what another replica finished), pages of a workflow's deliveries, and pages of the workflow list
(listing.py says who sees which). A user sees only their own workflows; someone else's is reported as not
found.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from contracts import Envelope, Message
from contracts.messages import (
    DeliveryListQuery,
    DeliveryListReply,
    WorkflowListQuery,
    WorkflowListReply,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowView,
)
from libs.bus import Bus, ReplyAddress, reply_address
from libs.telemetry import get_logger
from services.router.constants import STATUS_DELIVERIES_LISTED, STATUS_WAIT_MAX_S, STATUS_WAIT_RECHECK_S
from services.router.listing import InvalidCursor, Keyset, WorkflowFilter, list_item
from services.router.state import DeliveryRow, Workflow
from services.router.store import WorkflowStore

log = get_logger(__name__)


def _visible(workflow: Workflow | None, requester: str, is_admin: bool) -> bool:
    """Someone else's workflow is reported as not found: its existence is not for them to learn."""
    return workflow is not None and (workflow.user_id == requester or is_admin)


class Queries:
    def __init__(self, bus: Bus, store: WorkflowStore, clock: Callable[[], datetime]) -> None:
        self.bus = bus
        self.store = store
        self.clock = clock
        self._waiting: dict[uuid.UUID, list[asyncio.Future[Workflow]]] = defaultdict(list)
        self._answering: set[asyncio.Task[None]] = set()

    def finished(self, workflow: Workflow) -> None:
        """`workflow` reached a terminal state on this replica: answer the status queries waiting for it."""
        for waiting in self._waiting.pop(workflow.workflow_id, ()):
            if not waiting.done():
                waiting.set_result(workflow)

    async def on_delivery_list(self, envelope: Envelope) -> Message | None:
        query = envelope.payload
        assert isinstance(query, DeliveryListQuery)
        workflow = await self.store.get(query.workflow_id)
        if not _visible(workflow, query.requester_user_id, query.requester_is_admin):
            return DeliveryListReply(found=False)
        rows = await self.store.deliveries(
            query.workflow_id, after_seq=query.after_seq, limit=query.limit + 1, status=query.status
        )
        page = rows[: query.limit]
        cursor = page[-1].seq if len(rows) > query.limit else None
        return DeliveryListReply(found=True, deliveries=[row.to_view() for row in page], next_cursor=cursor)

    async def on_list(self, envelope: Envelope) -> Message | None:
        query = envelope.payload
        assert isinstance(query, WorkflowListQuery)
        try:
            where = WorkflowFilter.of(query)
        except InvalidCursor as exc:
            return WorkflowListReply(ok=False, error=str(exc))
        rows = await self.store.list_workflows(where, query.limit + 1)  # one more: is there a next page?
        page = rows[: query.limit]
        cursor = Keyset.of(page[-1]).encode() if len(rows) > query.limit else None
        return WorkflowListReply(ok=True, workflows=[list_item(w) for w in page], next_cursor=cursor)

    async def view(self, workflow: Workflow) -> WorkflowView:
        """The status view: a small workflow's deliveries listed, a delivering one's next slot."""
        listed: tuple[DeliveryRow, ...] = ()
        if 0 < workflow.tally.total <= STATUS_DELIVERIES_LISTED:
            listed = tuple(
                await self.store.deliveries(workflow.workflow_id, after_seq=None, limit=STATUS_DELIVERIES_LISTED)
            )
        next_open = None
        if workflow.tally.total and not workflow.is_terminal:
            next_open = await self.store.next_open(workflow.workflow_id)
        return workflow.to_view(listed, next_open.scheduled_for if next_open else None, now=self.clock())

    async def on_status_query(self, envelope: Envelope) -> Message | None:
        query = envelope.payload
        assert isinstance(query, WorkflowStatusQuery)
        address = reply_address() if query.wait_s else None
        finished: asyncio.Future[Workflow] | None = None
        if address is not None:  # registered before the read: a terminal write after it resolves this
            finished = asyncio.get_running_loop().create_future()
            self._waiting[query.workflow_id].append(finished)
        workflow = await self.store.get(query.workflow_id)
        if workflow is None or not _visible(workflow, query.requester_user_id, query.requester_is_admin):
            self._stop_waiting(query.workflow_id, finished)
            return WorkflowStatusReply(found=False)
        if finished is None or address is None or workflow.is_terminal:
            self._stop_waiting(query.workflow_id, finished)
            return WorkflowStatusReply(found=True, workflow=await self.view(workflow))
        task = asyncio.create_task(self._answer_when_finished(query, address, finished))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)
        return None

    async def _answer_when_finished(
        self, query: WorkflowStatusQuery, address: ReplyAddress, finished: asyncio.Future[Workflow]
    ) -> None:
        """Reply to a waiting status query when this replica finishes the workflow, or when a re-read finds
        another replica did (every STATUS_WAIT_RECHECK_S), or with the state then after the wait."""
        loop = asyncio.get_running_loop()
        until = loop.time() + min(query.wait_s or 0.0, STATUS_WAIT_MAX_S)
        workflow: Workflow | None = None
        try:
            while workflow is None or not workflow.is_terminal:
                left = until - loop.time()
                if left <= 0:
                    break
                try:
                    workflow = await asyncio.wait_for(asyncio.shield(finished), min(left, STATUS_WAIT_RECHECK_S))
                except TimeoutError:
                    workflow = await self.store.get(query.workflow_id)
        except Exception as exc:  # the requester times out and asks again
            log.warning("status.wait_failed", error=f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._stop_waiting(query.workflow_id, finished)
        if workflow is None:
            workflow = await self.store.get(query.workflow_id)
        reply = WorkflowStatusReply(
            found=workflow is not None, workflow=await self.view(workflow) if workflow else None
        )
        await self.bus.reply_later(address, reply)

    def _stop_waiting(self, workflow_id: uuid.UUID, finished: asyncio.Future[Workflow] | None) -> None:
        if finished is None:
            return
        waiting = self._waiting.get(workflow_id)
        if waiting is not None and finished in waiting:
            waiting.remove(finished)
            if not waiting:
                del self._waiting[workflow_id]

    async def close(self) -> None:
        """Stop answering waiting status queries (their requesters time out and ask another replica)."""
        for task in list(self._answering):
            task.cancel()
        await asyncio.gather(*self._answering, return_exceptions=True)
