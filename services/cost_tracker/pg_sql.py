"""The cost store's SQL on PostgreSQL: statements, dimension expressions, filters, and row mapping.

Statements interpolate only names from this module (column lists, the DIMS whitelist); every value is a
bind parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from contracts.enums import BudgetAction, CostPeriod, IntentType, Provider
from services.cost_tracker.constants import ALL_PROVIDERS
from services.cost_tracker.model import (
    Alert,
    AlertDestination,
    AlertFilter,
    BudgetState,
    CostEntry,
    Delivery,
    EntryFilter,
    PolicyRecord,
    Severity,
    SpendKey,
    Threshold,
    ThresholdAction,
    WorkflowOutcome,
)

ENTRY_COLUMNS = (
    "message_id, user_id, workflow_id, generation_id, workflow_type, provider, model, prompt_tokens,"
    " completion_tokens, tokens_estimated, price_estimated, price_entry, prompt_price_per_1k,"
    " completion_price_per_1k, cost_usd, occurred_at, cached_prompt_tokens, cached_price_per_1k"
)

# The totals are added to only when the entry is new (e is empty for a duplicate), in spend_keys order.
RECORD_USAGE = f"""
WITH e AS (
    INSERT INTO cost_entries ({ENTRY_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
    ON CONFLICT (message_id) DO NOTHING
    RETURNING cost_usd
)
INSERT INTO spend_totals AS s (scope, period, period_start, provider, spent_usd)
SELECT k.scope, k.period, k.period_start, k.provider, e.cost_usd
FROM e CROSS JOIN unnest($19::text[], $20::text[], $21::timestamptz[], $22::text[])
    WITH ORDINALITY AS k(scope, period, period_start, provider, n)
ORDER BY k.n
ON CONFLICT (scope, period, period_start, provider) DO UPDATE SET spent_usd = s.spent_usd + EXCLUDED.spent_usd
RETURNING scope, period, period_start, provider, spent_usd
"""

TOTALS = """
SELECT k.scope, k.period, k.period_start, k.provider, coalesce(s.spent_usd, 0) AS spent_usd
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS k(scope, period, period_start, provider)
LEFT JOIN spend_totals s USING (scope, period, period_start, provider)
"""

# One row (the workflow's spend) when the outcome is new; no row when it was stored already (o is empty).
RECORD_OUTCOME = """
WITH o AS (
    INSERT INTO workflow_outcomes
        (workflow_id, user_id, status, provider, prompt_tokens, completion_tokens, duration_ms, finished_at,
         experiment_id, arm, error_type)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING workflow_id
)
SELECT count(e.message_id) AS calls, coalesce(sum(e.cost_usd), 0) AS cost_usd,
       (array_agg(e.provider ORDER BY e.occurred_at DESC, e.message_id DESC))[1] AS last_provider
FROM o LEFT JOIN cost_entries e ON e.workflow_id = o.workflow_id
GROUP BY o.workflow_id
"""

# A dimension's SQL expression; the whitelist is also what keeps user input out of the statement text.
DIMS: dict[str, str] = {
    "provider": "provider",
    "model": "model",
    "day": "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "type": "workflow_type",
    "workflow": "coalesce(workflow_id::text, '')",
    "user": "user_id",
}

THRESHOLD_COLUMNS = (
    "id, scope_user_id, period, limit_usd, severity, action, channels, enabled, name, created_by, created_at,"
    " updated_at, provider"
)

ALERT_COLUMNS = (
    "id, kind, threshold_id, scope_user_id, period, period_start, spent_usd, limit_usd, severity, message,"
    " raised_at, created_by, acknowledged, acknowledged_by, acknowledged_at, published_at"
)

RAISE_ALERT = """
WITH a AS (
    INSERT INTO alerts (id, kind, threshold_id, scope_user_id, period, period_start, spent_usd, limit_usd,
                        severity, message, raised_at, created_by)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT DO NOTHING
    RETURNING id
), d AS (
    INSERT INTO alert_deliveries (alert_id, channel, status, last_error)
    SELECT a.id, ch.channel, ch.status, ch.error
    FROM a CROSS JOIN unnest($13::text[], $14::text[], $15::text[]) AS ch(channel, status, error)
)
SELECT count(*) FROM a
"""

CLAIM_DELIVERY = """
UPDATE alert_deliveries SET status = 'sending', claimed_until = $4
WHERE alert_id = $1 AND channel = $2
  AND (status IN ('pending', 'retrying') OR (status = 'sending' AND claimed_until <= $3))
RETURNING 1
"""

FINISH_DELIVERY = """
UPDATE alert_deliveries
SET status = $3, attempts = attempts + 1, last_error = $4, claimed_until = NULL,
    sent_at = CASE WHEN $3 = 'sent' THEN $5 ELSE sent_at END
WHERE alert_id = $1 AND channel = $2
"""

BUDGET_COLUMNS = "scope, period, action, period_start, spent_usd, limit_usd, changed_at"

# changed_at always moves forward (the routers keep the newest state by it), even on a skewed clock.
CHANGE_BUDGET = f"""
INSERT INTO budget_states AS b ({BUDGET_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())
ON CONFLICT (scope, period) DO UPDATE
SET action = EXCLUDED.action, period_start = EXCLUDED.period_start, spent_usd = EXCLUDED.spent_usd,
    limit_usd = EXCLUDED.limit_usd, published_at = NULL,
    changed_at = greatest(EXCLUDED.changed_at, b.changed_at + interval '1 microsecond')
WHERE b.action <> EXCLUDED.action AND b.period_start <= EXCLUDED.period_start
RETURNING {BUDGET_COLUMNS}
"""

CLAIM_REPUBLISH = f"""
UPDATE budget_states SET published_at = $1
WHERE (published_at IS NULL AND changed_at < $2) OR published_at < $3
RETURNING {BUDGET_COLUMNS}
"""


# --- rows and filters ------------------------------------------------------------------------------------------------


def key_arrays(keys: Sequence[SpendKey]) -> tuple[list[str], list[str], list[datetime], list[str]]:
    providers = [ALL_PROVIDERS if k.provider is None else k.provider.value for k in keys]
    return [k.scope for k in keys], [k.period.value for k in keys], [k.start for k in keys], providers


def spend_key(row: asyncpg.Record) -> SpendKey:
    provider = None if row["provider"] == ALL_PROVIDERS else Provider(row["provider"])
    return SpendKey(row["scope"], CostPeriod(row["period"]), row["period_start"], provider)


def entry_conditions(where: EntryFilter) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("user_id", "=", where.user_id),
        ("occurred_at", ">=", where.start),
        ("occurred_at", "<", where.end),
        ("workflow_id", "=", where.workflow_id),
    ):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} {op} ${len(args)}")
    return conditions, args


def alert_conditions(where: AlertFilter) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    if where.only_scope:
        if where.scope_user_id is None:
            conditions.append("scope_user_id IS NULL")
        else:
            args.append(where.scope_user_id)
            conditions.append(f"scope_user_id = ${len(args)}")
    for column, op, value in (
        ("severity", "=", where.severity.value if where.severity else None),
        ("acknowledged", "=", where.acknowledged),
        ("raised_at", ">=", where.start),
        ("raised_at", "<", where.end),
    ):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} {op} ${len(args)}")
    return conditions, args


def entry(row: asyncpg.Record) -> CostEntry:
    return CostEntry(
        message_id=row["message_id"],
        user_id=row["user_id"],
        workflow_id=row["workflow_id"],
        generation_id=row["generation_id"],
        workflow_type=IntentType(row["workflow_type"]),
        provider=Provider(row["provider"]),
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        tokens_estimated=row["tokens_estimated"],
        price_estimated=row["price_estimated"],
        price_entry=row["price_entry"],
        prompt_price_per_1k=row["prompt_price_per_1k"],
        completion_price_per_1k=row["completion_price_per_1k"],
        cost_usd=row["cost_usd"],
        occurred_at=row["occurred_at"],
        cached_prompt_tokens=row["cached_prompt_tokens"],
        cached_price_per_1k=row["cached_price_per_1k"],
    )


def outcome(row: asyncpg.Record) -> WorkflowOutcome:
    return WorkflowOutcome(
        workflow_id=row["workflow_id"],
        user_id=row["user_id"],
        status=row["status"],
        provider=Provider(row["provider"]) if row["provider"] else None,
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        duration_ms=row["duration_ms"],
        finished_at=row["finished_at"],
    )


def threshold_values(t: Threshold) -> tuple[Any, ...]:
    return (
        t.id, t.scope_user_id, t.period.value, t.limit_usd, t.severity.value, t.action.value, list(t.channels),
        t.enabled, t.name, t.created_by, t.created_at, t.updated_at, t.provider.value if t.provider else None,
    )  # fmt: skip


def threshold(row: asyncpg.Record) -> Threshold:
    return Threshold(
        id=row["id"],
        scope_user_id=row["scope_user_id"],
        period=CostPeriod(row["period"]),
        limit_usd=row["limit_usd"],
        severity=Severity(row["severity"]),
        action=ThresholdAction(row["action"]),
        channels=tuple(row["channels"]),
        enabled=row["enabled"],
        name=row["name"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        provider=Provider(row["provider"]) if row["provider"] else None,
    )


def alert(row: asyncpg.Record, deliveries: Sequence[Delivery]) -> Alert:
    return Alert(
        id=row["id"],
        kind=row["kind"],
        threshold_id=row["threshold_id"],
        scope_user_id=row["scope_user_id"],
        period=CostPeriod(row["period"]),
        period_start=row["period_start"],
        spent_usd=row["spent_usd"],
        limit_usd=row["limit_usd"],
        severity=Severity(row["severity"]),
        message=row["message"],
        raised_at=row["raised_at"],
        created_by=row["created_by"],
        acknowledged=row["acknowledged"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"],
        published_at=row["published_at"],
        deliveries=tuple(deliveries),
    )


def budget(row: asyncpg.Record) -> BudgetState:
    return BudgetState(
        scope=row["scope"],
        period=CostPeriod(row["period"]),
        action=BudgetAction(row["action"]),
        period_start=row["period_start"],
        spent_usd=row["spent_usd"],
        limit_usd=row["limit_usd"],
        changed_at=row["changed_at"],
    )


POLICY_COLUMNS = (
    "id, workflow_type, provider, model, recommendation_id, estimated_saving_usd, applied_by, applied_at,"
    " reverted_by, reverted_at, automatic"
)

# Policy changes take the version row first: one at a time, so two applies of one type never both insert.
LOCK_POLICIES = "SELECT version FROM routing_policy_version FOR UPDATE"
# The in-force policy of the type is reverted before the new one is inserted (the partial unique index).
SUPERSEDE_POLICY = """
UPDATE routing_policies SET reverted_by = $2, reverted_at = $3 WHERE workflow_type = $1 AND reverted_at IS NULL
"""
INSERT_POLICY = (
    f"INSERT INTO routing_policies ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9)"
)
BUMP_POLICY_VERSION = "UPDATE routing_policy_version SET version = version + 1 RETURNING version"
POLICY_VERSION = "SELECT version FROM routing_policy_version"
REVERT_POLICY = f"""
UPDATE routing_policies SET reverted_by = $2, reverted_at = $3 WHERE id = $1 AND reverted_at IS NULL
RETURNING {POLICY_COLUMNS}
"""


def policy_values(p: PolicyRecord) -> tuple[Any, ...]:
    return (
        p.id, p.workflow_type.value, p.provider.value, p.model, p.recommendation_id, p.estimated_saving_usd,
        p.applied_by, p.applied_at, p.automatic,
    )  # fmt: skip


def policy(row: asyncpg.Record) -> PolicyRecord:
    return PolicyRecord(
        id=row["id"],
        workflow_type=IntentType(row["workflow_type"]),
        provider=Provider(row["provider"]),
        model=row["model"],
        recommendation_id=row["recommendation_id"],
        estimated_saving_usd=row["estimated_saving_usd"],
        applied_by=row["applied_by"],
        applied_at=row["applied_at"],
        reverted_by=row["reverted_by"],
        reverted_at=row["reverted_at"],
        automatic=row["automatic"],
    )


DESTINATION_COLUMNS = "user_id, email, webhook_url, updated_at"

PUT_DESTINATION = f"""
INSERT INTO alert_destinations ({DESTINATION_COLUMNS}) VALUES ($1, $2, $3, $4)
ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, webhook_url = EXCLUDED.webhook_url,
    updated_at = EXCLUDED.updated_at
RETURNING {DESTINATION_COLUMNS}
"""


def destination(row: asyncpg.Record) -> AlertDestination:
    return AlertDestination(row["user_id"], row["email"], row["webhook_url"], row["updated_at"])
