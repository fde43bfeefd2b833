"""Where the router keeps workflows: the repository interface, and its in-memory implementation (the
embedded mode and unit tests). pg_store.PostgresStore is the same interface on PostgreSQL.

Every write is atomic and conditional: `create` only when the workflow does not exist, `save` only when
the stored version is still the one the change was computed from (optimistic concurrency, so replicas
need no lock across the handler's computation). Each write records the handled message's id with the
outbox of the change in the same atomic step; `load` returns that outbox when asked about a message that
was already handled (de-duplication and re-publish after a crash).

Deliveries are rows of their own, created with the workflow. What happens to one of them (a report, a
personalized text) is written by `report` / `write_text` to its row and the workflow's counters (`Tally`)
at once, without the version check: those writes commute, so they never conflict with each other or with
a transition (a save never writes the counters, except `Change.closing`'s failing of the open deliveries).
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts.costs import RoutingPolicy
from contracts.enums import BudgetAction, CostPeriod, DeliveryState, WorkflowStatus
from libs.storage.store import Store
from services.router.delivery import Report, TextUpdate
from services.router.listing import WorkflowFilter, sort_key
from services.router.outbox import Outgoing
from services.router.state import TERMINAL, Change, DeliveryRow, Event, Tally, Workflow

GLOBAL_SCOPE = "*"  # BudgetRecord.scope of a budget that applies to every user


@dataclass(frozen=True, slots=True)
class Loaded:
    workflow: Workflow | None
    outbox: tuple[Outgoing, ...] | None  # not None: the message was handled before, and this it published


@dataclass(frozen=True, slots=True)
class Counted:
    """What a per-delivery write left: whether it applied (False: handled before, or stale), the
    workflow's status and its counters."""

    applied: bool
    status: WorkflowStatus
    tally: Tally


@dataclass(frozen=True, slots=True)
class BudgetRecord:
    """The latest budget.status of one scope (a user id, or GLOBAL_SCOPE) and period."""

    scope: str
    period: CostPeriod
    action: BudgetAction
    spent_usd: Decimal
    limit_usd: Decimal | None
    observed_at: datetime


class WorkflowStore(Store):
    @abstractmethod
    async def create(self, change: Change, message_id: uuid.UUID) -> bool:
        """Store a new workflow with its events, `message_id` and the outbox; False (nothing written)
        when a workflow with that id exists already."""

    @abstractmethod
    async def save(self, change: Change, message_id: uuid.UUID) -> bool:
        """Store `change.result()` with its events, `message_id` and the outbox, if the stored version
        is still `change.expected_version` and `message_id` is new; False (nothing written) otherwise."""

    @abstractmethod
    async def load(self, workflow_id: uuid.UUID, message_id: uuid.UUID) -> Loaded:
        """The workflow (None if unknown) and, when `message_id` was handled already, its outbox."""

    @abstractmethod
    async def get(self, workflow_id: uuid.UUID) -> Workflow | None: ...

    @abstractmethod
    async def overdue(self, now: datetime, limit: int) -> list[Workflow]:
        """Up to `limit` workflows not yet terminal whose deadline is `now` or earlier, earliest first."""

    @abstractmethod
    async def history(self, workflow_id: uuid.UUID) -> list[Event]:
        """The workflow's events, oldest first."""

    @abstractmethod
    async def list_workflows(self, where: WorkflowFilter, limit: int) -> list[Workflow]:
        """Up to `limit` workflows `where` selects (listing.py: visible to its requester, filtered, after its
        cursor), newest first: by created_at, then workflow_id, descending."""

    # --- deliveries ----------------------------------------------------------------------------------------

    @abstractmethod
    async def deliveries(
        self, workflow_id: uuid.UUID, *, after_seq: int | None, limit: int, status: DeliveryState | None = None
    ) -> list[DeliveryRow]:
        """Up to `limit` of the workflow's deliveries after `after_seq` (None: from the first), in `seq` order,
        only those in `status` if given."""

    @abstractmethod
    async def delivery_at(self, workflow_id: uuid.UUID, seq: int) -> DeliveryRow | None: ...

    @abstractmethod
    async def delivery_for(self, workflow_id: uuid.UUID, generation_id: uuid.UUID) -> DeliveryRow | None:
        """The delivery whose text waits for the generation request `generation_id`."""

    @abstractmethod
    async def next_open(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        """The unfinished delivery with the earliest slot (one without a slot if none has one)."""

    @abstractmethod
    async def first_failed(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        """The first failed delivery (the reason of a workflow none of whose deliveries was sent)."""

    @abstractmethod
    async def report(
        self, workflow_id: uuid.UUID, message_id: uuid.UUID, report: Report, grace_s: float, at: datetime
    ) -> Counted | None:
        """Apply a delivery report to its row and the counters, once per `message_id` (a scheduled slot also
        extends the deadline to slot + `grace_s` while the workflow runs); None: no such workflow."""

    @abstractmethod
    async def write_text(self, workflow_id: uuid.UUID, message_id: uuid.UUID, update: TextUpdate) -> Counted | None:
        """Apply a personalized text's outcome (its row, the successor's claim, the counters, the deadline)
        with the outbox of `update.change`, if the row still waits for `update.answered`; None when it
        does not (stale, or handled before: `load` tells which)."""

    @abstractmethod
    async def record(self, workflow_id: uuid.UUID, message_id: uuid.UUID, outbox: tuple[Outgoing, ...]) -> bool:
        """Record a handled message with its outbox and nothing else (a fan-out chunk); False when it was
        handled before."""

    # --- budgets and housekeeping ------------------------------------------------------------------------

    @abstractmethod
    async def put_budget(self, record: BudgetRecord) -> None:
        """Keep `record` unless a newer one (by observed_at) of its scope and period is stored."""

    @abstractmethod
    async def active_budgets(self) -> list[BudgetRecord]:
        """Every stored budget whose action is not `allow`."""

    @abstractmethod
    async def put_policy(self, policy: RoutingPolicy, observed_at: datetime) -> bool:
        """Keep `policy` if its version is higher than the stored one's; whether it was kept."""

    @abstractmethod
    async def routing_policy(self) -> RoutingPolicy | None:
        """The stored routing policy (None: none received yet)."""

    @abstractmethod
    async def purge_processed(self, before: datetime, limit: int) -> int:
        """Forget up to `limit` handled message ids recorded before `before`; how many were forgotten."""


class MemoryStore(WorkflowStore):
    """The store in this process's memory: same semantics, nothing survives the process."""

    def __init__(self) -> None:
        self._workflows: dict[uuid.UUID, Workflow] = {}
        self._deliveries: dict[uuid.UUID, list[DeliveryRow]] = {}  # by workflow, in seq order
        self._events: dict[uuid.UUID, list[Event]] = {}
        self._processed: dict[uuid.UUID, tuple[datetime, tuple[Outgoing, ...]]] = {}
        self._budgets: dict[tuple[str, CostPeriod], BudgetRecord] = {}
        self._policy: RoutingPolicy | None = None

    async def create(self, change: Change, message_id: uuid.UUID) -> bool:
        workflow = change.result()
        if workflow.workflow_id in self._workflows or message_id in self._processed:
            return False
        self._workflows[workflow.workflow_id] = workflow
        self._deliveries[workflow.workflow_id] = list(change.new_deliveries)
        self._events[workflow.workflow_id] = list(change.events)
        self._processed[message_id] = (datetime.now(UTC), tuple(change.outbox))
        return True

    async def save(self, change: Change, message_id: uuid.UUID) -> bool:
        workflow = change.result()
        stored = self._workflows.get(workflow.workflow_id)
        if stored is None or stored.version != change.expected_version or message_id in self._processed:
            return False
        tally = stored.tally  # the counters are the per-delivery writes', not the change's
        if change.closing is not None or change.cancelling:
            status = DeliveryState.CANCELLED if change.cancelling else DeliveryState.FAILED
            rows = self._deliveries[workflow.workflow_id]
            for i, row in enumerate(rows):
                if not row.is_final:
                    rows[i] = replace(row, status=status, error=change.closing)
            if change.cancelling:
                tally = replace(tally, cancelled=tally.total - tally.sent - tally.failed)
            else:
                tally = replace(tally, failed=tally.total - tally.sent - tally.cancelled)
        self._workflows[workflow.workflow_id] = replace(workflow, tally=tally)
        self._events[workflow.workflow_id].extend(change.events)
        self._processed[message_id] = (datetime.now(UTC), tuple(change.outbox))
        return True

    async def load(self, workflow_id: uuid.UUID, message_id: uuid.UUID) -> Loaded:
        processed = self._processed.get(message_id)
        return Loaded(self._workflows.get(workflow_id), processed[1] if processed else None)

    async def get(self, workflow_id: uuid.UUID) -> Workflow | None:
        return self._workflows.get(workflow_id)

    async def overdue(self, now: datetime, limit: int) -> list[Workflow]:
        running = (w for w in self._workflows.values() if not w.is_terminal and w.deadline_at <= now)
        return sorted(running, key=lambda w: w.deadline_at)[:limit]

    async def history(self, workflow_id: uuid.UUID) -> list[Event]:
        return list(self._events.get(workflow_id, ()))

    async def list_workflows(self, where: WorkflowFilter, limit: int) -> list[Workflow]:
        selected = (w for w in self._workflows.values() if where.matches(w))
        return sorted(selected, key=sort_key, reverse=True)[:limit]

    async def deliveries(
        self, workflow_id: uuid.UUID, *, after_seq: int | None, limit: int, status: DeliveryState | None = None
    ) -> list[DeliveryRow]:
        start = 0 if after_seq is None else after_seq + 1
        rows = self._deliveries.get(workflow_id, [])[start:]
        return [row for row in rows if status is None or row.status is status][:limit]

    async def delivery_at(self, workflow_id: uuid.UUID, seq: int) -> DeliveryRow | None:
        rows = self._deliveries.get(workflow_id, [])
        return rows[seq] if 0 <= seq < len(rows) else None

    async def delivery_for(self, workflow_id: uuid.UUID, generation_id: uuid.UUID) -> DeliveryRow | None:
        return next((r for r in self._deliveries.get(workflow_id, ()) if r.generation_id == generation_id), None)

    async def next_open(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        open_ = [r for r in self._deliveries.get(workflow_id, ()) if not r.is_final]
        return min(open_, key=lambda r: (r.scheduled_for is None, r.scheduled_for or 0, r.seq), default=None)

    async def first_failed(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        return next((r for r in self._deliveries.get(workflow_id, ()) if r.status is DeliveryState.FAILED), None)

    async def report(
        self, workflow_id: uuid.UUID, message_id: uuid.UUID, report: Report, grace_s: float, at: datetime
    ) -> Counted | None:
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            return None
        if message_id in self._processed:
            return Counted(False, workflow.status, workflow.tally)
        self._processed[message_id] = (datetime.now(UTC), ())
        rows = self._deliveries[workflow_id]
        index = next((i for i, r in enumerate(rows) if r.delivery_id == report.delivery_id), None)
        if index is None:
            return Counted(True, workflow.status, workflow.tally)
        row, tally, deadline = rows[index], workflow.tally, workflow.deadline_at
        if report.kind is DeliveryState.SENT:
            if row.status is not DeliveryState.SENT:
                failed = tally.failed - (row.status is DeliveryState.FAILED)
                cancelled = tally.cancelled - (row.status is DeliveryState.CANCELLED)
                tally = replace(tally, sent=tally.sent + 1, failed=failed, cancelled=cancelled)
                row = replace(row, status=DeliveryState.SENT, sent_at=report.sent_at,
                              platform_message_id=report.platform_message_id, error=None)  # fmt: skip
        elif report.kind is DeliveryState.FAILED:
            if not row.is_final:
                tally = replace(tally, failed=tally.failed + 1)
                row = replace(row, status=DeliveryState.FAILED, error=report.error)
        else:
            assert report.slot_at is not None
            if row.scheduled_for is None:
                tally = replace(tally, scheduled=tally.scheduled + 1)
            if row.is_final:
                row = replace(row, scheduled_for=row.scheduled_for or report.slot_at)
            else:
                slot = max(report.slot_at, row.scheduled_for) if row.scheduled_for else report.slot_at
                row = replace(row, status=report.kind, scheduled_for=slot, error=report.error)
                last = max(slot, tally.last_slot_at) if tally.last_slot_at else slot
                tally = replace(tally, retries=tally.retries + (report.error is not None), last_slot_at=last)
                if workflow.status not in TERMINAL:
                    deadline = max(deadline, slot + timedelta(seconds=grace_s))
        rows[index] = row
        tally = replace(tally, limiter=report.limiter or tally.limiter)
        self._workflows[workflow_id] = replace(workflow, tally=tally, deadline_at=deadline)
        return Counted(True, workflow.status, tally)

    async def write_text(self, workflow_id: uuid.UUID, message_id: uuid.UUID, update: TextUpdate) -> Counted | None:
        workflow = self._workflows.get(workflow_id)
        rows = self._deliveries.get(workflow_id, [])
        seq = update.row.seq
        if workflow is None or message_id in self._processed or not 0 <= seq < len(rows):
            return None
        current = rows[seq]
        if current.generation_id != update.answered or current.text is not None or current.is_final:
            return None
        rows[seq] = update.row
        if update.successor is not None and rows[update.successor.seq].generation_id is None:
            rows[update.successor.seq] = update.successor
        tally = workflow.tally
        tally = replace(
            tally,
            generated=tally.generated + update.generated,
            ungenerated=tally.ungenerated + update.ungenerated,
            failed=tally.failed + update.ungenerated,
        )
        deadline = max(workflow.deadline_at, update.deadline_at) if update.deadline_at else workflow.deadline_at
        self._workflows[workflow_id] = replace(workflow, tally=tally, deadline_at=deadline)
        outbox = tuple(update.change.outbox)
        self._processed[message_id] = (datetime.now(UTC), outbox)
        return Counted(True, workflow.status, tally)

    async def record(self, workflow_id: uuid.UUID, message_id: uuid.UUID, outbox: tuple[Outgoing, ...]) -> bool:
        if message_id in self._processed:
            return False
        self._processed[message_id] = (datetime.now(UTC), outbox)
        return True

    async def put_budget(self, record: BudgetRecord) -> None:
        key = (record.scope, record.period)
        stored = self._budgets.get(key)
        if stored is None or stored.observed_at <= record.observed_at:
            self._budgets[key] = record

    async def active_budgets(self) -> list[BudgetRecord]:
        return [record for record in self._budgets.values() if record.action is not BudgetAction.ALLOW]

    async def put_policy(self, policy: RoutingPolicy, observed_at: datetime) -> bool:
        if self._policy is not None and self._policy.version >= policy.version:
            return False
        self._policy = policy
        return True

    async def routing_policy(self) -> RoutingPolicy | None:
        return self._policy

    async def purge_processed(self, before: datetime, limit: int) -> int:
        old = [key for key, (at, _) in self._processed.items() if at < before][:limit]
        for key in old:
            del self._processed[key]
        return len(old)
