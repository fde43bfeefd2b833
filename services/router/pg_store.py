"""The workflow store on PostgreSQL (schema "router"): one statement per write, one per read.

A write is a single data-modifying statement (CTEs): the conditional INSERT or versioned UPDATE of the
workflow row, the INSERT of its history events and the INSERT of the handled message with its outbox —
atomic without BEGIN/COMMIT round trips, one transaction per handled message. A read returns the
workflow and, in the same round trip, whether the message was handled before (and its outbox).
A delivery report is one call of the function delivery_report (migrations/002): its row and the counters.
Every write that touches a workflow's row and delivery rows locks the workflow row first, so they never
deadlock. asyncpg's errors leave this module as libs.storage.DatabaseError.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from contracts.enums import BudgetAction, CostPeriod, DeliveryState, Provider, RateLimiterState, WorkflowStatus
from contracts.messages import ErrorInfo, FallbackEntry, Intent, ProviderStates, RetryAttempts, Usage
from libs.storage.schema_store import SchemaStore
from services.router.constants import DB_SCHEMA, MIGRATIONS_DIR
from services.router.delivery import Report, TextUpdate
from services.router.outbox import Outgoing
from services.router.state import Change, DeliveryRow, Event, Tally, Workflow
from services.router.store import BudgetRecord, Counted, Loaded, WorkflowStore

# Written by a create; the counters after them only by per-delivery writes (and a closing save's `failed`).
_COLUMNS = (
    "workflow_id, user_id, status, intent, trace_id, current_provider, provider_states, fallback_history,"
    " retry_attempts, recoveries, attempts, generation_id, result, model, usage, error, version,"
    " created_at, updated_at, deadline_at, completed_at, callback_url, personalized, deliveries_total"
)
_TALLY = "generated, ungenerated, scheduled, sent, failed, cancelled, delivery_retries, last_slot_at, rate_limiter"
_READ = f"{_COLUMNS}, {_TALLY}"

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

# $5 the delivery rows, then the columns from $6.
_CREATE = (
    f"WITH w AS (INSERT INTO hybrid_workflows ({_COLUMNS})"
    " VALUES ($1, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,"
    " $22, $23, $24, $25, $26, $27, $28)"
    " ON CONFLICT (workflow_id) DO NOTHING RETURNING workflow_id, version, updated_at)"
    ", d AS (INSERT INTO deliveries"
    " (workflow_id, seq, delivery_id, recipient_id, vars, generation_id, attempts, updated_at)"
    " SELECT w.workflow_id, r.seq, r.delivery_id, r.recipient_id, r.vars, r.generation_id, r.attempts, w.updated_at"
    " FROM w CROSS JOIN jsonb_to_recordset($5::jsonb) AS r"
    " (seq integer, delivery_id uuid, recipient_id text, vars jsonb, generation_id uuid, attempts smallint))"
    + _EVENTS_AND_PROCESSED
)

# $5 the error the open deliveries fail with (Change.closing; null: none), then the columns from $6.
_SAVE = (
    "WITH w AS (UPDATE hybrid_workflows SET status = $6, current_provider = $7, provider_states = $8,"
    " fallback_history = $9, retry_attempts = $10, recoveries = $11, attempts = $12, generation_id = $13,"
    " result = $14, model = $15, usage = $16, error = $17, version = $18,"
    " updated_at = $19, completed_at = $20, deadline_at = $21,"
    " failed = CASE WHEN $5::jsonb IS NULL THEN failed ELSE deliveries_total - sent - cancelled END"
    " WHERE workflow_id = $1 AND version = $18 - 1 RETURNING workflow_id, version)"
    ", c AS (UPDATE deliveries SET status = 'failed', error = $5::jsonb, updated_at = $19"
    " WHERE $5::jsonb IS NOT NULL AND workflow_id = (SELECT workflow_id FROM w) AND status NOT IN ('sent', 'failed'))"
    + _EVENTS_AND_PROCESSED
)

_LOAD = (
    f"SELECT {', '.join('w.' + c.strip() for c in _READ.split(','))}, p.outbox AS handled_outbox"
    " FROM (VALUES (1)) AS one (x)"
    " LEFT JOIN hybrid_workflows w ON w.workflow_id = $1"
    " LEFT JOIN processed_messages p ON p.message_id = $2"
)

_GET = f"SELECT {_READ} FROM hybrid_workflows WHERE workflow_id = $1"

_DELIVERY_COLUMNS = (
    "seq, delivery_id, recipient_id, vars, status, text, generation_id, attempts, scheduled_for, sent_at,"
    " platform_message_id, error"
)
# Keyset pages: the primary key (workflow_id, seq) serves them, deliveries_by_status the filtered ones.
_DELIVERIES = (
    f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE workflow_id = $1 AND seq > $2"
    " AND ($3::text IS NULL OR status = $3) ORDER BY seq LIMIT $4"
)
_DELIVERY_AT = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE workflow_id = $1 AND seq = $2"
_DELIVERY_FOR = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE generation_id = $2 AND workflow_id = $1"
_OPEN = "workflow_id = $1 AND status NOT IN ('sent', 'failed')"
_NEXT_OPEN = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE {_OPEN} ORDER BY scheduled_for NULLS LAST, seq LIMIT 1"
_FAILED = "workflow_id = $1 AND status = 'failed'"
_FIRST_FAILED = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE {_FAILED} ORDER BY seq LIMIT 1"
_REPORT = (
    f"SELECT applied, status, deliveries_total, {_TALLY}"
    " FROM delivery_report($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)

# A personalized text's outcome, if its row still waits for the request it answers ($3): the row ($4 …),
# the successor's first request ($11 seq, $12 request id), the counters, the deadline and the handled
# message with its outbox ($14). The workflow row is locked first (`lk`), as everywhere.
_WRITE_TEXT = f"""
WITH lk AS (SELECT workflow_id FROM hybrid_workflows WHERE workflow_id = $1 FOR UPDATE),
x AS (
    UPDATE deliveries SET text = $4, status = $5, error = $6::jsonb, generation_id = $7, attempts = $8,
        updated_at = $9
    WHERE workflow_id = (SELECT workflow_id FROM lk) AND seq = $10 AND generation_id = $3 AND text IS NULL
        AND status NOT IN ('sent', 'failed')
    RETURNING seq
), s AS (
    UPDATE deliveries SET generation_id = $12, attempts = 1, updated_at = $9
    WHERE workflow_id = $1 AND seq = $11 AND generation_id IS NULL AND EXISTS (SELECT 1 FROM x)
), p AS (
    INSERT INTO processed_messages (message_id, workflow_id, outbox) SELECT $2, $1, $14::jsonb FROM x
), w AS (
    UPDATE hybrid_workflows SET generated = generated + $15, ungenerated = ungenerated + $16,
        failed = failed + $16, deadline_at = GREATEST(deadline_at, $13)
    WHERE workflow_id = $1 AND EXISTS (SELECT 1 FROM x)
    RETURNING status, deliveries_total, {_TALLY}
)
SELECT * FROM w
"""

_RECORD = (
    "INSERT INTO processed_messages (message_id, workflow_id, outbox) VALUES ($2, $1, $3::jsonb)"
    " ON CONFLICT (message_id) DO NOTHING"
)

# Served by the partial index hybrid_workflows_running (deadline_at WHERE not terminal).
_OVERDUE = (
    f"SELECT {_READ} FROM hybrid_workflows"
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
    """$6 … $21 of a save: what a transition may change."""
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
        workflow.version,
        workflow.updated_at,
        workflow.completed_at,
        workflow.deadline_at,
    )


def _all_columns(workflow: Workflow) -> tuple[Any, ...]:
    """$6 … $28 of a create, in _COLUMNS order after workflow_id."""
    (status, provider, states, history, retries, recoveries, attempts, generation, result, model, usage, error,
     version, updated_at, completed_at, _deadline) = _mutable_columns(workflow)  # fmt: skip
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
        version,
        workflow.created_at,
        updated_at,
        workflow.deadline_at,
        completed_at,
        workflow.callback_url,
        workflow.personalized,
        workflow.tally.total,
    )


def _new_rows(change: Change) -> list[dict[str, Any]]:
    return [
        {
            "seq": row.seq,
            "delivery_id": str(row.delivery_id),
            "recipient_id": row.recipient_id,
            "vars": dict(row.vars),
            "generation_id": str(row.generation_id) if row.generation_id else None,
            "attempts": row.attempts,
        }
        for row in change.new_deliveries
    ]


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


def _tally(row: asyncpg.Record) -> Tally:
    return Tally(
        total=row["deliveries_total"],
        generated=row["generated"],
        ungenerated=row["ungenerated"],
        scheduled=row["scheduled"],
        sent=row["sent"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        retries=row["delivery_retries"],
        last_slot_at=row["last_slot_at"],
        limiter=RateLimiterState(row["rate_limiter"]) if row["rate_limiter"] else None,
    )


def _delivery(row: asyncpg.Record) -> DeliveryRow:
    return DeliveryRow(
        seq=row["seq"],
        delivery_id=row["delivery_id"],
        recipient_id=row["recipient_id"],
        vars=row["vars"],
        status=DeliveryState(row["status"]),
        text=row["text"],
        generation_id=row["generation_id"],
        attempts=row["attempts"],
        scheduled_for=row["scheduled_for"],
        sent_at=row["sent_at"],
        platform_message_id=row["platform_message_id"],
        error=ErrorInfo.model_validate(row["error"]) if row["error"] is not None else None,
    )


def _counted(row: asyncpg.Record | None, applied: bool) -> Counted | None:
    return None if row is None else Counted(applied, WorkflowStatus(row["status"]), _tally(row))


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
        completed_at=row["completed_at"],
        callback_url=row["callback_url"],
        personalized=row["personalized"],
        tally=_tally(row),
    )


class PostgresStore(SchemaStore, WorkflowStore):
    SCHEMA = DB_SCHEMA
    MIGRATIONS = MIGRATIONS_DIR

    async def create(self, change: Change, message_id: uuid.UUID) -> bool:
        columns = (_new_rows(change), *_all_columns(change.result()))
        return await self._write("create workflow", _CREATE, change, message_id, columns)

    async def save(self, change: Change, message_id: uuid.UUID) -> bool:
        columns = (_dump(change.closing), *_mutable_columns(change.result()))
        return await self._write("save workflow", _SAVE, change, message_id, columns)

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

    async def deliveries(
        self, workflow_id: uuid.UUID, *, after_seq: int | None, limit: int, status: DeliveryState | None = None
    ) -> list[DeliveryRow]:
        after = -1 if after_seq is None else after_seq
        async with self._connection("read deliveries") as conn:
            rows = await conn.fetch(_DELIVERIES, workflow_id, after, status.value if status else None, limit)
        return [_delivery(row) for row in rows]

    async def delivery_at(self, workflow_id: uuid.UUID, seq: int) -> DeliveryRow | None:
        async with self._connection("read delivery") as conn:
            row = await conn.fetchrow(_DELIVERY_AT, workflow_id, seq)
        return None if row is None else _delivery(row)

    async def delivery_for(self, workflow_id: uuid.UUID, generation_id: uuid.UUID) -> DeliveryRow | None:
        async with self._connection("read delivery") as conn:
            row = await conn.fetchrow(_DELIVERY_FOR, workflow_id, generation_id)
        return None if row is None else _delivery(row)

    async def next_open(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        async with self._connection("read next delivery") as conn:
            row = await conn.fetchrow(_NEXT_OPEN, workflow_id)
        return None if row is None else _delivery(row)

    async def first_failed(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        async with self._connection("read failed delivery") as conn:
            row = await conn.fetchrow(_FIRST_FAILED, workflow_id)
        return None if row is None else _delivery(row)

    async def report(
        self, workflow_id: uuid.UUID, message_id: uuid.UUID, report: Report, grace_s: float, at: datetime
    ) -> Counted | None:
        async with self._connection("apply delivery report") as conn:
            row = await conn.fetchrow(
                _REPORT,
                workflow_id,
                message_id,
                report.delivery_id,
                report.kind.value,
                report.slot_at,
                report.sent_at,
                report.platform_message_id,
                _dump(report.error),
                report.limiter.value if report.limiter else None,
                timedelta(seconds=grace_s),
                at,
            )
        return _counted(row, bool(row and row["applied"]))

    async def write_text(self, workflow_id: uuid.UUID, message_id: uuid.UUID, update: TextUpdate) -> Counted | None:
        row = update.row
        outbox = [item.to_json() for item in update.change.outbox]
        successor = update.successor
        async with self._connection("write personalized text") as conn:
            result = await conn.fetchrow(
                _WRITE_TEXT,
                workflow_id,
                message_id,
                update.answered,
                row.text,
                row.status.value,
                _dump(row.error),
                row.generation_id,
                row.attempts,
                update.change.at,
                row.seq,
                successor.seq if successor else None,
                successor.generation_id if successor else None,
                update.deadline_at,
                outbox,
                update.generated,
                update.ungenerated,
            )
        return _counted(result, True)

    async def record(self, workflow_id: uuid.UUID, message_id: uuid.UUID, outbox: tuple[Outgoing, ...]) -> bool:
        async with self._connection("record handled message") as conn:
            status: str = await conn.execute(_RECORD, workflow_id, message_id, [item.to_json() for item in outbox])
        return status.endswith(" 1")

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
