"""Where the router keeps workflows: the repository interface, and its in-memory implementation (the
embedded mode and unit tests). pg_store.PostgresStore is the same interface on PostgreSQL.

Every write is atomic and conditional: `create` only when the workflow does not exist, `save` only when
the stored version is still the one the change was computed from (optimistic concurrency, so replicas
need no lock across the handler's computation). Each write records the handled message's id with the
outbox of the change in the same atomic step; `load` returns that outbox when asked about a message that
was already handled (de-duplication and re-publish after a crash).
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from contracts.enums import BudgetAction, CostPeriod
from libs.storage.store import Store
from services.router.outbox import Outgoing
from services.router.state import Change, Event, Workflow

GLOBAL_SCOPE = "*"  # BudgetRecord.scope of a budget that applies to every user


@dataclass(frozen=True, slots=True)
class Loaded:
    workflow: Workflow | None
    outbox: tuple[Outgoing, ...] | None  # not None: the message was handled before, and this it published


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
    async def put_budget(self, record: BudgetRecord) -> None:
        """Keep `record` unless a newer one (by observed_at) of its scope and period is stored."""

    @abstractmethod
    async def active_budgets(self) -> list[BudgetRecord]:
        """Every stored budget whose action is not `allow`."""

    @abstractmethod
    async def purge_processed(self, before: datetime, limit: int) -> int:
        """Forget up to `limit` handled message ids recorded before `before`; how many were forgotten."""


class MemoryStore(WorkflowStore):
    """The store in this process's memory: same semantics, nothing survives the process."""

    def __init__(self) -> None:
        self._workflows: dict[uuid.UUID, Workflow] = {}
        self._events: dict[uuid.UUID, list[Event]] = {}
        self._processed: dict[uuid.UUID, tuple[datetime, tuple[Outgoing, ...]]] = {}
        self._budgets: dict[tuple[str, CostPeriod], BudgetRecord] = {}

    async def create(self, change: Change, message_id: uuid.UUID) -> bool:
        workflow = change.result()
        if workflow.workflow_id in self._workflows or message_id in self._processed:
            return False
        self._workflows[workflow.workflow_id] = workflow
        self._events[workflow.workflow_id] = list(change.events)
        self._processed[message_id] = (datetime.now(UTC), tuple(change.outbox))
        return True

    async def save(self, change: Change, message_id: uuid.UUID) -> bool:
        workflow = change.result()
        stored = self._workflows.get(workflow.workflow_id)
        if stored is None or stored.version != change.expected_version or message_id in self._processed:
            return False
        self._workflows[workflow.workflow_id] = workflow
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

    async def put_budget(self, record: BudgetRecord) -> None:
        key = (record.scope, record.period)
        stored = self._budgets.get(key)
        if stored is None or stored.observed_at <= record.observed_at:
            self._budgets[key] = record

    async def active_budgets(self) -> list[BudgetRecord]:
        return [record for record in self._budgets.values() if record.action is not BudgetAction.ALLOW]

    async def purge_processed(self, before: datetime, limit: int) -> int:
        old = [key for key, (at, _) in self._processed.items() if at < before][:limit]
        for key in old:
            del self._processed[key]
        return len(old)
