"""The workflow store on PostgreSQL (schema "router"): one statement per write, one per read.

A write is a single data-modifying statement (CTEs): the conditional INSERT or versioned UPDATE of the
workflow row, the INSERT of its history events and the INSERT of the handled message with its outbox —
atomic without BEGIN/COMMIT round trips, one transaction per handled message. A read returns the
workflow and, in the same round trip, whether the message was handled before (and its outbox).
asyncpg's errors leave this module as libs.storage.DatabaseError.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from contracts.enums import BudgetAction, CostPeriod, Provider, WorkflowStatus
from contracts.messages import DeliveryView, ErrorInfo, FallbackEntry, Intent, ProviderStates, RetryAttempts, Usage
from libs.storage.schema_store import SchemaStore
from services.router.constants import DB_SCHEMA, MIGRATIONS_DIR
from services.router.outbox import Outgoing
from services.router.state import Change, Event, Workflow
from services.router.store import BudgetRecord, Loaded, WorkflowStore

_COLUMNS = (
    "workflow_id, user_id, status, intent, trace_id, current_provider, provider_states, fallback_history,"
    " retry_attempts, recoveries, attempts, generation_id, result, model, usage, error, deliveries, version,"
    " created_at, updated_at, deadline_at, completed_at"
)

# $1 workflow, $2 message id, $3 events, $4 outbox — then the columns.
_EVENTS_AND_PROCESSED = """
, e AS (
    INSERT INTO workflow_events
        (workflow_id, version, seq, message_id, event, from_status, to_status, detail, occurred_at)
    SELECT w.workflow_id, w.version, ev.seq, $2, ev.event, ev.from_status, ev.to_status, ev.detail, ev.at
    FROM w CROSS JOIN jsonb_to_recordset($3::jsonb)
        AS ev(seq smallint, event text, from_status text, to_status text, detail jsonb, at timestamptz)
), p AS (
    INSERT INTO processed_messages (message_id, workflow_id, outbox) SELECT $2, w.workflow_id, $4::jsonb FROM w
)
SELECT count(*) FROM w
"""

_CREATE = (
    f"WITH w AS (INSERT INTO hybrid_workflows ({_COLUMNS})"
    " VALUES ($1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,"
    " $22, $23, $24, $25)"
    " ON CONFLICT (workflow_id) DO NOTHING RETURNING workflow_id, version)" + _EVENTS_AND_PROCESSED
)

_SAVE = (
    "WITH w AS (UPDATE hybrid_workflows SET status = $5, current_provider = $6, provider_states = $7,"
    " fallback_history = $8, retry_attempts = $9, recoveries = $10, attempts = $11, generation_id = $12,"
    " result = $13, model = $14, usage = $15, error = $16, deliveries = $17, version = $18,"
    " updated_at = $19, completed_at = $20, deadline_at = $21"
    " WHERE workflow_id = $1 AND version = $18 - 1 RETURNING workflow_id, version)" + _EVENTS_AND_PROCESSED
)

_LOAD = (
    f"SELECT {', '.join('w.' + c.strip() for c in _COLUMNS.split(','))}, p.outbox AS handled_outbox"
    " FROM (VALUES (1)) AS one (x)"
    " LEFT JOIN hybrid_workflows w ON w.workflow_id = $1"
    " LEFT JOIN processed_messages p ON p.message_id = $2"
)

_GET = f"SELECT {_COLUMNS} FROM hybrid_workflows WHERE workflow_id = $1"

# Served by the partial index hybrid_workflows_running (deadline_at WHERE not terminal).
_OVERDUE = (
    f"SELECT {_COLUMNS} FROM hybrid_workflows"
    " WHERE status NOT IN ('completed', 'failed') AND deadline_at <= $1 ORDER BY deadline_at LIMIT $2"
)

_HISTORY = (
    "SELECT event, from_status, to_status, occurred_at, detail FROM workflow_events"
    " WHERE workflow_id = $1 ORDER BY version, seq"
)

_PUT_BUDGET = """
INSERT INTO budget_states (scope, period, action, spent_usd, limit_usd, observed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (scope, period) DO UPDATE
SET action = EXCLUDED.action, spent_usd = EXCLUDED.spent_usd, limit_usd = EXCLUDED.limit_usd,
    observed_at = EXCLUDED.observed_at
WHERE budget_states.observed_at <= EXCLUDED.observed_at
"""

_ACTIVE_BUDGETS = (
    "SELECT scope, period, action, spent_usd, limit_usd, observed_at FROM budget_states WHERE action <> 'allow'"
)

_PURGE = """
DELETE FROM processed_messages WHERE message_id IN (
    SELECT message_id FROM processed_messages WHERE processed_at < $1 LIMIT $2
)
"""


def _dump(value: Any) -> Any:
    return None if value is None else value.model_dump(mode="json")


def _mutable_columns(workflow: Workflow) -> tuple[Any, ...]:
    """$5 … $21 of a save: what a transition may change (deliveries move the deadline)."""
    return (
        workflow.status.value,
        workflow.current_provider.value if workflow.current_provider else None,
        workflow.provider_states.model_dump(mode="json"),
        [entry.model_dump(mode="json") for entry in workflow.fallback_history],
        workflow.retry_attempts.model_dump(mode="json"),
        dict(workflow.recoveries),
        workflow.attempts,
        workflow.generation_id,
        workflow.result,
        workflow.model,
        _dump(workflow.usage),
        _dump(workflow.error),
        [delivery.model_dump(mode="json") for delivery in workflow.deliveries],
        workflow.version,
        workflow.updated_at,
        workflow.completed_at,
        workflow.deadline_at,
    )


def _all_columns(workflow: Workflow) -> tuple[Any, ...]:
    """$5 … $25 of a create, in _COLUMNS order after workflow_id."""
    (status, provider, states, history, retries, recoveries, attempts, generation, result, model, usage, error,
     deliveries, version, updated_at, completed_at, _deadline) = _mutable_columns(workflow)  # fmt: skip
    return (
        workflow.user_id,
        status,
        workflow.intent.model_dump(mode="json"),
        workflow.trace_id,
        provider,
        states,
        history,
        retries,
        recoveries,
        attempts,
        generation,
        result,
        model,
        usage,
        error,
        deliveries,
        version,
        workflow.created_at,
        updated_at,
        workflow.deadline_at,
        completed_at,
    )


def _events(change: Change) -> list[dict[str, Any]]:
    return [
        {
            "seq": seq,
            "event": event.name,
            "from_status": event.from_status.value if event.from_status else None,
            "to_status": event.to_status.value,
            "detail": dict(event.detail),
            "at": event.at,
        }
        for seq, event in enumerate(change.events)
    ]


def _workflow(row: asyncpg.Record) -> Workflow:
    provider = row["current_provider"]
    return Workflow(
        workflow_id=row["workflow_id"],
        user_id=row["user_id"],
        intent=Intent.model_validate(row["intent"]),
        status=WorkflowStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deadline_at=row["deadline_at"],
        version=row["version"],
        trace_id=row["trace_id"],
        current_provider=Provider(provider) if provider else None,
        provider_states=ProviderStates.model_validate(row["provider_states"]),
        fallback_history=tuple(FallbackEntry.model_validate(entry) for entry in row["fallback_history"]),
        retry_attempts=RetryAttempts.model_validate(row["retry_attempts"]),
        recoveries=row["recoveries"],
        attempts=row["attempts"],
        generation_id=row["generation_id"],
        result=row["result"],
        model=row["model"],
        usage=Usage.model_validate(row["usage"]) if row["usage"] is not None else None,
        error=ErrorInfo.model_validate(row["error"]) if row["error"] is not None else None,
        deliveries=tuple(DeliveryView.model_validate(delivery) for delivery in row["deliveries"]),
        completed_at=row["completed_at"],
    )


class PostgresStore(SchemaStore, WorkflowStore):
    SCHEMA = DB_SCHEMA
    MIGRATIONS = MIGRATIONS_DIR

    async def create(self, change: Change, message_id: uuid.UUID) -> bool:
        workflow = change.result()
        return await self._write("create workflow", _CREATE, change, message_id, _all_columns(workflow))

    async def save(self, change: Change, message_id: uuid.UUID) -> bool:
        workflow = change.result()
        return await self._write("save workflow", _SAVE, change, message_id, _mutable_columns(workflow))

    async def _write(
        self, action: str, sql: str, change: Change, message_id: uuid.UUID, columns: tuple[Any, ...]
    ) -> bool:
        outbox = [item.to_json() for item in change.outbox]
        async with self._connection(action) as conn:
            try:
                written = await conn.fetchval(
                    sql, change.workflow.workflow_id, message_id, _events(change), outbox, *columns
                )
            except asyncpg.UniqueViolationError:
                # A concurrent handler of the same message recorded its id first: nothing was written, and
                # the caller's reload finds the message handled.
                return False
        return bool(written)

    async def load(self, workflow_id: uuid.UUID, message_id: uuid.UUID) -> Loaded:
        async with self._connection("load workflow") as conn:
            row = await conn.fetchrow(_LOAD, workflow_id, message_id)
        assert row is not None  # the VALUES row is always there
        outbox = row["handled_outbox"]
        return Loaded(
            _workflow(row) if row["workflow_id"] is not None else None,
            None if outbox is None else tuple(Outgoing.from_json(item) for item in outbox),
        )

    async def get(self, workflow_id: uuid.UUID) -> Workflow | None:
        async with self._connection("get workflow") as conn:
            row = await conn.fetchrow(_GET, workflow_id)
        return None if row is None else _workflow(row)

    async def overdue(self, now: datetime, limit: int) -> list[Workflow]:
        async with self._connection("find overdue workflows") as conn:
            rows = await conn.fetch(_OVERDUE, now, limit)
        return [_workflow(row) for row in rows]

    async def history(self, workflow_id: uuid.UUID) -> list[Event]:
        async with self._connection("read history") as conn:
            rows = await conn.fetch(_HISTORY, workflow_id)
        return [
            Event(
                row["event"],
                WorkflowStatus(row["from_status"]) if row["from_status"] else None,
                WorkflowStatus(row["to_status"]),
                row["occurred_at"],
                row["detail"],
            )
            for row in rows
        ]

    async def put_budget(self, record: BudgetRecord) -> None:
        async with self._connection("store budget") as conn:
            await conn.execute(
                _PUT_BUDGET,
                record.scope,
                record.period.value,
                record.action.value,
                record.spent_usd,
                record.limit_usd,
                record.observed_at,
            )

    async def active_budgets(self) -> list[BudgetRecord]:
        async with self._connection("read budgets") as conn:
            rows = await conn.fetch(_ACTIVE_BUDGETS)
        return [
            BudgetRecord(
                scope=row["scope"],
                period=CostPeriod(row["period"]),
                action=BudgetAction(row["action"]),
                spent_usd=row["spent_usd"],
                limit_usd=row["limit_usd"],
                observed_at=row["observed_at"],
            )
            for row in rows
        ]

    async def purge_processed(self, before: datetime, limit: int) -> int:
        async with self._connection("purge processed messages") as conn:
            status = await conn.execute(_PURGE, before, limit)
        return int(status.rsplit(" ", 1)[-1])
