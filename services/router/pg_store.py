"""The workflow store on PostgreSQL (schema "router"): one statement per write, one per read.

A write is a single data-modifying statement (CTEs): the conditional INSERT or versioned UPDATE of the
workflow row, the INSERT of its history events and the INSERT of the handled message with its outbox —
atomic without BEGIN/COMMIT round trips, one transaction per handled message. A read returns the
workflow and, in the same round trip, whether the message was handled before (and its outbox).
A delivery report is one call of the function delivery_report (migrations/002): its row and the counters;
reports arriving together are written in one statement and one commit (report_batch.py).
The statements live in pg_sql.py; this module binds their parameters and maps rows to the state's types.
asyncpg's errors leave this module as libs.storage.DatabaseError.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from contracts.costs import RoutingPolicy
from contracts.enums import BudgetAction, CostPeriod, DeliveryState, Provider, RateLimiterState, WorkflowStatus
from contracts.messages import ErrorInfo, FallbackEntry, Intent, Notify, ProviderStates, RetryAttempts, Usage
from libs.storage.schema_store import SchemaStore
from services.router import pg_sql as sql
from services.router.constants import DB_SCHEMA, MIGRATIONS_DIR, REPORT_BATCH_MAX
from services.router.delivery import Report, TextUpdate
from services.router.listing import WorkflowFilter
from services.router.outbox import Outgoing
from services.router.report_batch import Pending, ReportBatcher
from services.router.state import Change, DeliveryRow, Event, Tally, Workflow
from services.router.store import BudgetRecord, Counted, Loaded, WorkflowStore


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
    """$6 … $33 of a create, in sql.COLUMNS order after workflow_id."""
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
        workflow.account_id,
        workflow.retry_of,
        workflow.notify.model_dump(mode="json") if workflow.notify else None,
        workflow.experiment,
        workflow.routing_policy,
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
        account_id=row["account_id"],
        retry_of=row["retry_of"],
        notify=Notify.model_validate(row["notify"]) if row["notify"] is not None else None,
        experiment=row["experiment"],
        routing_policy=row["routing_policy"],
    )


class PostgresStore(SchemaStore, WorkflowStore):
    SCHEMA = DB_SCHEMA
    MIGRATIONS = MIGRATIONS_DIR

    def __init__(self, dsn: str, *, pool_size: int = 10, schema: str | None = None) -> None:
        super().__init__(dsn, pool_size=pool_size, schema=schema)
        self._reports: ReportBatcher | None = None  # made on first use: it needs the router's grace

    async def create(self, change: Change, message_id: uuid.UUID) -> bool:
        columns = (_new_rows(change), *_all_columns(change.result()))
        return await self._write("create workflow", sql.CREATE, change, message_id, columns)

    async def save(self, change: Change, message_id: uuid.UUID) -> bool:
        closing = "cancelled" if change.cancelling else "failed" if change.closing is not None else None
        columns = (closing, *_mutable_columns(change.result()), _dump(change.closing))
        return await self._write("save workflow", sql.SAVE, change, message_id, columns)

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
            row = await conn.fetchrow(sql.LOAD, workflow_id, message_id)
        assert row is not None  # the VALUES row is always there
        outbox = row["handled_outbox"]
        return Loaded(
            _workflow(row) if row["workflow_id"] is not None else None,
            None if outbox is None else tuple(Outgoing.from_json(item) for item in outbox),
        )

    async def get(self, workflow_id: uuid.UUID) -> Workflow | None:
        async with self._connection("get workflow") as conn:
            row = await conn.fetchrow(sql.GET, workflow_id)
        return None if row is None else _workflow(row)

    async def overdue(self, now: datetime, limit: int) -> list[Workflow]:
        async with self._connection("find overdue workflows") as conn:
            rows = await conn.fetch(sql.OVERDUE, now, limit)
        return [_workflow(row) for row in rows]

    async def history(self, workflow_id: uuid.UUID) -> list[Event]:
        async with self._connection("read history") as conn:
            rows = await conn.fetch(sql.HISTORY, workflow_id)
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

    async def list_workflows(self, where: WorkflowFilter, limit: int) -> list[Workflow]:
        statement, args = sql.list_workflows(where, limit)
        async with self._connection("list workflows") as conn:
            rows = await conn.fetch(statement, *args)
        return [_workflow(row) for row in rows]

    async def deliveries(
        self, workflow_id: uuid.UUID, *, after_seq: int | None, limit: int, status: DeliveryState | None = None
    ) -> list[DeliveryRow]:
        after = -1 if after_seq is None else after_seq
        async with self._connection("read deliveries") as conn:
            rows = await conn.fetch(sql.DELIVERIES, workflow_id, after, status.value if status else None, limit)
        return [_delivery(row) for row in rows]

    async def delivery_at(self, workflow_id: uuid.UUID, seq: int) -> DeliveryRow | None:
        return await self._one_delivery("read delivery", sql.DELIVERY_AT, workflow_id, seq)

    async def delivery_for(self, workflow_id: uuid.UUID, generation_id: uuid.UUID) -> DeliveryRow | None:
        return await self._one_delivery("read delivery", sql.DELIVERY_FOR, workflow_id, generation_id)

    async def next_open(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        return await self._one_delivery("read next delivery", sql.NEXT_OPEN, workflow_id)

    async def first_failed(self, workflow_id: uuid.UUID) -> DeliveryRow | None:
        return await self._one_delivery("read failed delivery", sql.FIRST_FAILED, workflow_id)

    async def _one_delivery(self, action: str, query: str, *args: Any) -> DeliveryRow | None:
        async with self._connection(action) as conn:
            row = await conn.fetchrow(query, *args)
        return None if row is None else _delivery(row)

    async def report(
        self, workflow_id: uuid.UUID, message_id: uuid.UUID, report: Report, grace_s: float, at: datetime
    ) -> Counted | None:
        """Written with the reports arriving meanwhile, in one commit (report_batch.py)."""
        if self._reports is None:
            grace = timedelta(seconds=grace_s)
            self._reports = ReportBatcher(
                functools.partial(self._write_reports, grace=grace),
                functools.partial(self._write_report, grace=grace),
                REPORT_BATCH_MAX,
            )
        return await self._reports.submit(Pending(workflow_id, message_id, report, at))

    async def _write_report(self, batch: Sequence[Pending], *, grace: timedelta) -> list[Counted | None]:
        [one] = batch
        report = one.report
        async with self._connection("apply delivery report") as conn:
            row = await conn.fetchrow(
                sql.REPORT,
                one.workflow_id,
                one.message_id,
                report.delivery_id,
                report.kind.value,
                report.slot_at,
                report.sent_at,
                report.platform_message_id,
                _dump(report.error),
                report.limiter.value if report.limiter else None,
                grace,
                one.at,
            )
        return [_counted(row, bool(row and row["applied"]))]

    async def _write_reports(self, batch: Sequence[Pending], *, grace: timedelta) -> list[Counted | None]:
        reports = [p.report for p in batch]
        async with self._connection("apply delivery reports") as conn:
            rows = await conn.fetch(
                sql.REPORTS,
                [p.workflow_id for p in batch],
                [p.message_id for p in batch],
                [r.delivery_id for r in reports],
                [r.kind.value for r in reports],
                [r.slot_at for r in reports],
                [r.sent_at for r in reports],
                [r.platform_message_id for r in reports],
                [_dump(r.error) for r in reports],
                [r.limiter.value if r.limiter else None for r in reports],
                grace,
                max(p.at for p in batch),
            )
        by_index = {row["i"]: row for row in rows}
        return [
            _counted(by_index.get(i), bool(by_index.get(i) and by_index[i]["applied"]))
            for i in range(1, len(batch) + 1)
        ]

    async def write_text(self, workflow_id: uuid.UUID, message_id: uuid.UUID, update: TextUpdate) -> Counted | None:
        row = update.row
        outbox = [item.to_json() for item in update.change.outbox]
        successor = update.successor
        async with self._connection("write personalized text") as conn:
            result = await conn.fetchrow(
                sql.WRITE_TEXT,
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
            status: str = await conn.execute(sql.RECORD, workflow_id, message_id, [item.to_json() for item in outbox])
        return status.endswith(" 1")

    async def put_budget(self, record: BudgetRecord) -> None:
        async with self._connection("store budget") as conn:
            await conn.execute(
                sql.PUT_BUDGET,
                record.scope,
                record.period.value,
                record.action.value,
                record.spent_usd,
                record.limit_usd,
                record.observed_at,
            )

    async def active_budgets(self) -> list[BudgetRecord]:
        async with self._connection("read budgets") as conn:
            rows = await conn.fetch(sql.ACTIVE_BUDGETS)
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

    async def put_policy(self, policy: RoutingPolicy, observed_at: datetime) -> bool:
        async with self._connection("store routing policy") as conn:
            status: str = await conn.execute(
                sql.PUT_POLICY, policy.version, policy.model_dump(mode="json"), observed_at
            )
        return status.endswith(" 1")

    async def routing_policy(self) -> RoutingPolicy | None:
        async with self._connection("read routing policy") as conn:
            stored = await conn.fetchval("SELECT policy FROM routing_policy")
        return None if stored is None else RoutingPolicy.model_validate(stored)

    async def purge_processed(self, before: datetime, limit: int) -> int:
        async with self._connection("purge processed messages") as conn:
            status = await conn.execute(sql.PURGE, before, limit)
        return int(status.rsplit(" ", 1)[-1])
