"""The cost store on PostgreSQL (schema "cost_tracker"): every conditional write is one statement.

A usage entry and its four running totals are one statement (the totals are added to only when the entry
was new); an alert and its deliveries are one statement guarded by UNIQUE (threshold_id, period_start); a
delivery lease and a budget change are conditional UPDATEs. asyncpg's errors leave this module as
libs.storage.DatabaseError.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg

from contracts.enums import Provider
from services.cost_tracker import pg_sql
from services.cost_tracker.constants import DB_SCHEMA, MIGRATIONS_DIR
from services.cost_tracker.experiment_store import PostgresExperiments
from services.cost_tracker.model import (
    Alert,
    AlertDestination,
    AlertFilter,
    BudgetState,
    CostEntry,
    Delivery,
    DeliveryStatus,
    Dim,
    EntryFilter,
    Group,
    PolicyChange,
    PolicyRecord,
    Severity,
    SpendKey,
    Threshold,
    WorkflowOutcome,
    WorkflowSpend,
    spend_keys,
)
from services.cost_tracker.store import AlertCounts, CostStore


class PostgresStore(PostgresExperiments, CostStore):
    SCHEMA = DB_SCHEMA
    MIGRATIONS = MIGRATIONS_DIR

    # --- accounting ----------------------------------------------------------------------------------------

    async def record_usage(self, entry: CostEntry) -> dict[SpendKey, Decimal] | None:
        keys = spend_keys(entry.user_id, entry.occurred_at, entry.provider)
        async with self._connection("record usage") as conn:
            rows = await conn.fetch(
                pg_sql.RECORD_USAGE,
                entry.message_id,
                entry.user_id,
                entry.workflow_id,
                entry.generation_id,
                entry.workflow_type.value,
                entry.provider.value,
                entry.model,
                entry.prompt_tokens,
                entry.completion_tokens,
                entry.tokens_estimated,
                entry.price_estimated,
                entry.price_entry,
                entry.prompt_price_per_1k,
                entry.completion_price_per_1k,
                entry.cost_usd,
                entry.occurred_at,
                entry.cached_prompt_tokens,
                entry.prompt_price_per_1k if entry.cached_price_per_1k is None else entry.cached_price_per_1k,
                *pg_sql.key_arrays(keys),
            )
        return {pg_sql.spend_key(row): row["spent_usd"] for row in rows} if rows else None

    async def totals(self, keys: Sequence[SpendKey]) -> dict[SpendKey, Decimal]:
        async with self._connection("read totals") as conn:
            rows = await conn.fetch(pg_sql.TOTALS, *pg_sql.key_arrays(keys))
        return {pg_sql.spend_key(row): row["spent_usd"] for row in rows}

    async def record_outcome(self, outcome: WorkflowOutcome) -> WorkflowSpend | None:
        async with self._connection("record outcome") as conn:
            row = await conn.fetchrow(
                pg_sql.RECORD_OUTCOME,
                outcome.workflow_id,
                outcome.user_id,
                outcome.status,
                outcome.provider.value if outcome.provider else None,
                outcome.prompt_tokens,
                outcome.completion_tokens,
                outcome.duration_ms,
                outcome.finished_at,
                outcome.experiment_id,
                outcome.arm,
                outcome.error_type,
            )
        if row is None:
            return None
        provider = row["last_provider"]
        return WorkflowSpend(row["calls"], row["cost_usd"], Provider(provider) if provider else None)

    async def outcomes(self, workflow_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WorkflowOutcome]:
        async with self._connection("read outcomes") as conn:
            rows = await conn.fetch("SELECT * FROM workflow_outcomes WHERE workflow_id = ANY($1::uuid[])", workflow_ids)
        return {row["workflow_id"]: pg_sql.outcome(row) for row in rows}

    async def entries(self, workflow_id: uuid.UUID) -> list[CostEntry]:
        sql = f"SELECT {pg_sql.ENTRY_COLUMNS} FROM cost_entries WHERE workflow_id = $1 ORDER BY occurred_at, message_id"
        async with self._connection("read entries") as conn:
            rows = await conn.fetch(sql, workflow_id)
        return [pg_sql.entry(row) for row in rows]

    async def aggregate(
        self, where: EntryFilter, dims: Sequence[Dim], *, latest_first: bool = False, limit: int | None = None
    ) -> list[Group]:
        conditions, args = pg_sql.entry_conditions(where)
        keys = [f"{pg_sql.DIMS[dim]} AS k{i}" for i, dim in enumerate(dims)]
        positions = ", ".join(str(i + 1) for i in range(len(dims)))
        sql = (
            f"SELECT {''.join(k + ', ' for k in keys)}sum(cost_usd) AS cost_usd, count(*) AS calls,"
            " sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens,"
            " count(DISTINCT workflow_id) AS workflows,"
            " coalesce(sum(cost_usd) FILTER (WHERE price_estimated), 0) AS estimated_cost_usd,"
            " min(occurred_at) AS first_at, max(occurred_at) AS last_at"
            f" FROM cost_entries{' WHERE ' + ' AND '.join(conditions) if conditions else ''}"
            f"{' GROUP BY ' + positions if dims else ''} HAVING count(*) > 0"
        )
        if latest_first:
            sql += f" ORDER BY last_at DESC{''.join(f', k{i} DESC' for i in range(len(dims)))}"
        elif dims:
            sql += f" ORDER BY {positions}"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        async with self._connection("aggregate costs") as conn:
            rows = await conn.fetch(sql, *args)
        return [
            Group(
                keys=tuple(row[f"k{i}"] for i in range(len(dims))),
                cost_usd=row["cost_usd"],
                calls=row["calls"],
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                workflows=row["workflows"],
                estimated_cost_usd=row["estimated_cost_usd"],
                first_at=row["first_at"],
                last_at=row["last_at"],
            )
            for row in rows
        ]

    # --- thresholds ----------------------------------------------------------------------------------------

    async def thresholds(self) -> list[Threshold]:
        async with self._connection("read thresholds") as conn:
            rows = await conn.fetch(f"SELECT {pg_sql.THRESHOLD_COLUMNS} FROM thresholds ORDER BY created_at, id")
        return [pg_sql.threshold(row) for row in rows]

    async def create_threshold(self, threshold: Threshold) -> Threshold:
        sql = (
            f"WITH i AS (INSERT INTO thresholds ({pg_sql.THRESHOLD_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING"
            f" RETURNING {pg_sql.THRESHOLD_COLUMNS})"
            f" SELECT * FROM i UNION ALL SELECT {pg_sql.THRESHOLD_COLUMNS} FROM thresholds WHERE id = $1"
            " AND NOT EXISTS (SELECT 1 FROM i)"
        )
        async with self._connection("create threshold") as conn:
            row = await conn.fetchrow(sql, *pg_sql.threshold_values(threshold))
            if row is None:  # a concurrent create of the same id committed after this statement's snapshot
                row = await conn.fetchrow(
                    f"SELECT {pg_sql.THRESHOLD_COLUMNS} FROM thresholds WHERE id = $1", threshold.id
                )
        assert row is not None  # inserted, or there already
        return pg_sql.threshold(row)

    async def update_threshold(self, threshold: Threshold) -> Threshold | None:
        sql = (
            "UPDATE thresholds SET scope_user_id = $2, period = $3, limit_usd = $4, severity = $5, action = $6,"
            " channels = $7, enabled = $8, name = $9, updated_at = $10, provider = $11"
            f" WHERE id = $1 RETURNING {pg_sql.THRESHOLD_COLUMNS}"
        )
        values = pg_sql.threshold_values(threshold)
        async with self._connection("update threshold") as conn:
            row = await conn.fetchrow(sql, *values[:9], *values[11:])
        return None if row is None else pg_sql.threshold(row)

    # --- a user's alert destinations ------------------------------------------------------------------------

    async def destination(self, user_id: str) -> AlertDestination | None:
        sql = f"SELECT {pg_sql.DESTINATION_COLUMNS} FROM alert_destinations WHERE user_id = $1"
        async with self._connection("read alert destination") as conn:
            row = await conn.fetchrow(sql, user_id)
        return None if row is None else pg_sql.destination(row)

    async def put_destination(self, destination: AlertDestination) -> AlertDestination:
        d = destination
        async with self._connection("store alert destination") as conn:
            row = await conn.fetchrow(pg_sql.PUT_DESTINATION, d.user_id, d.email, d.webhook_url, d.updated_at)
        assert row is not None  # an upsert returns its row
        return pg_sql.destination(row)

    # --- routing policies ----------------------------------------------------------------------------------

    async def apply_policy(self, policy: PolicyRecord) -> PolicyChange:
        async with self._connection("apply policy") as conn, conn.transaction():
            await conn.execute(pg_sql.LOCK_POLICIES)
            row = await conn.fetchrow(f"SELECT {pg_sql.POLICY_COLUMNS} FROM routing_policies WHERE id = $1", policy.id)
            if row is not None:  # a redelivered apply
                return PolicyChange(pg_sql.policy(row), await conn.fetchval(pg_sql.POLICY_VERSION), changed=False)
            await conn.execute(
                pg_sql.SUPERSEDE_POLICY, policy.workflow_type.value, policy.applied_by, policy.applied_at
            )
            await conn.execute(pg_sql.INSERT_POLICY, *pg_sql.policy_values(policy))
            return PolicyChange(policy, await conn.fetchval(pg_sql.BUMP_POLICY_VERSION), changed=True)

    async def revert_policy(self, policy_id: uuid.UUID, by: str, at: datetime) -> PolicyChange:
        async with self._connection("revert policy") as conn, conn.transaction():
            await conn.execute(pg_sql.LOCK_POLICIES)
            row = await conn.fetchrow(pg_sql.REVERT_POLICY, policy_id, by, at)
            if row is not None:
                return PolicyChange(pg_sql.policy(row), await conn.fetchval(pg_sql.BUMP_POLICY_VERSION), changed=True)
            row = await conn.fetchrow(f"SELECT {pg_sql.POLICY_COLUMNS} FROM routing_policies WHERE id = $1", policy_id)
            stored = None if row is None else pg_sql.policy(row)
            return PolicyChange(stored, await conn.fetchval(pg_sql.POLICY_VERSION), changed=False)

    async def policies(self) -> tuple[int, list[PolicyRecord]]:
        sql = f"SELECT {pg_sql.POLICY_COLUMNS} FROM routing_policies ORDER BY applied_at DESC, id DESC"
        async with self._connection("read policies") as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(sql)
            version = await conn.fetchval(pg_sql.POLICY_VERSION)
        return version, [pg_sql.policy(row) for row in rows]

    # --- alerts --------------------------------------------------------------------------------------------

    async def raise_alert(self, alert: Alert) -> bool:
        async with self._connection("raise alert") as conn:
            inserted = await conn.fetchval(
                pg_sql.RAISE_ALERT,
                alert.id,
                alert.kind,
                alert.threshold_id,
                alert.scope_user_id,
                alert.period.value,
                alert.period_start,
                alert.spent_usd,
                alert.limit_usd,
                alert.severity.value,
                alert.message,
                alert.raised_at,
                alert.created_by,
                [d.channel for d in alert.deliveries],
                [d.status.value for d in alert.deliveries],
                [d.last_error for d in alert.deliveries],
            )
        return bool(inserted)

    async def get_alert(self, alert_id: uuid.UUID) -> Alert | None:
        async with self._connection("read alert") as conn:
            row = await conn.fetchrow(f"SELECT {pg_sql.ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id)
            return None if row is None else (await self._with_deliveries(conn, [row]))[0]

    async def alerts(self, where: AlertFilter) -> tuple[list[Alert], AlertCounts]:
        conditions, args = pg_sql.alert_conditions(where)
        condition = " WHERE " + " AND ".join(conditions) if conditions else ""
        page = (
            f"SELECT {pg_sql.ALERT_COLUMNS} FROM alerts{condition}"
            f" ORDER BY raised_at DESC, id DESC LIMIT {where.limit:d}"
        )
        counts = (
            "SELECT count(*) AS total, count(*) FILTER (WHERE NOT acknowledged) AS unacknowledged,"
            f" count(*) FILTER (WHERE severity = 'info') AS info, count(*) FILTER (WHERE severity = 'warning')"
            f" AS warning, count(*) FILTER (WHERE severity = 'critical') AS critical FROM alerts{condition}"
        )
        async with self._connection("read alerts") as conn:
            rows = await conn.fetch(page, *args)
            summary = await conn.fetchrow(counts, *args)
            alerts = await self._with_deliveries(conn, rows)
        assert summary is not None
        by_severity = {severity: summary[severity.value] for severity in Severity if summary[severity.value]}
        return alerts, AlertCounts(summary["total"], summary["unacknowledged"], by_severity)

    async def acknowledge(self, alert_id: uuid.UUID, acknowledged: bool, by: str, at: datetime) -> Alert | None:
        sql = (
            "UPDATE alerts SET acknowledged = $2, acknowledged_by = CASE WHEN $2 THEN $3 END,"
            f" acknowledged_at = CASE WHEN $2 THEN $4::timestamptz END WHERE id = $1 RETURNING {pg_sql.ALERT_COLUMNS}"
        )
        async with self._connection("acknowledge alert") as conn:
            row = await conn.fetchrow(sql, alert_id, acknowledged, by, at)
            return None if row is None else (await self._with_deliveries(conn, [row]))[0]

    async def mark_published(self, alert_id: uuid.UUID, at: datetime) -> None:
        async with self._connection("mark alert published") as conn:
            await conn.execute(
                "UPDATE alerts SET published_at = $2 WHERE id = $1 AND published_at IS NULL", alert_id, at
            )

    async def unpublished_alerts(self, raised_before: datetime) -> list[Alert]:
        sql = (
            f"SELECT {pg_sql.ALERT_COLUMNS} FROM alerts"
            " WHERE published_at IS NULL AND raised_at < $1 ORDER BY raised_at"
        )
        async with self._connection("read unpublished alerts") as conn:
            rows = await conn.fetch(sql, raised_before)
            return await self._with_deliveries(conn, rows)

    async def claim_delivery(self, alert_id: uuid.UUID, channel: str, now: datetime, until: datetime) -> bool:
        async with self._connection("claim delivery") as conn:
            return await conn.fetchval(pg_sql.CLAIM_DELIVERY, alert_id, channel, now, until) is not None

    async def finish_delivery(
        self, alert_id: uuid.UUID, channel: str, status: DeliveryStatus, error: str | None, at: datetime
    ) -> None:
        async with self._connection("finish delivery") as conn:
            await conn.execute(pg_sql.FINISH_DELIVERY, alert_id, channel, status.value, error, at)

    @staticmethod
    async def _with_deliveries(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> list[Alert]:
        if not rows:
            return []
        found = await conn.fetch(
            "SELECT alert_id, channel, status, attempts, last_error, sent_at, claimed_until FROM alert_deliveries"
            " WHERE alert_id = ANY($1::uuid[]) ORDER BY channel",
            [row["id"] for row in rows],
        )
        deliveries: dict[uuid.UUID, list[Delivery]] = {}
        for d in found:
            deliveries.setdefault(d["alert_id"], []).append(
                Delivery(
                    d["channel"],
                    DeliveryStatus(d["status"]),
                    d["attempts"],
                    d["last_error"],
                    d["sent_at"],
                    d["claimed_until"],
                )
            )
        return [pg_sql.alert(row, deliveries.get(row["id"], [])) for row in rows]

    # --- budgets -------------------------------------------------------------------------------------------

    async def budget_states(self) -> list[BudgetState]:
        async with self._connection("read budget states") as conn:
            rows = await conn.fetch(f"SELECT {pg_sql.BUDGET_COLUMNS} FROM budget_states")
        return [pg_sql.budget(row) for row in rows]

    async def change_budget_state(self, state: BudgetState) -> BudgetState | None:
        async with self._connection("change budget state") as conn:
            row = await conn.fetchrow(
                pg_sql.CHANGE_BUDGET,
                state.scope,
                state.period.value,
                state.action.value,
                state.period_start,
                state.spent_usd,
                state.limit_usd,
            )
        return None if row is None else pg_sql.budget(row)

    async def mark_budget_published(self, state: BudgetState, at: datetime) -> None:
        sql = "UPDATE budget_states SET published_at = $4 WHERE scope = $1 AND period = $2 AND changed_at = $3"
        async with self._connection("mark budget published") as conn:
            await conn.execute(sql, state.scope, state.period.value, state.changed_at, at)

    async def claim_budget_republish(
        self, now: datetime, unpublished_before: datetime, published_before: datetime
    ) -> list[BudgetState]:
        async with self._connection("claim budget republish") as conn:
            rows = await conn.fetch(pg_sql.CLAIM_REPUBLISH, now, unpublished_before, published_before)
        return [pg_sql.budget(row) for row in rows]
