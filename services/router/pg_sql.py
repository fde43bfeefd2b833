"""The router's SQL (schema "router"), one statement per store operation: pg_store.PostgresStore runs them.

Writes are single data-modifying statements (CTEs) or one call of a plpgsql function (migrations/002:
delivery_report), so each is atomic without BEGIN/COMMIT round trips; every write that touches a
workflow's row and its delivery rows locks the workflow row first, so they never deadlock.
"""

from __future__ import annotations

from typing import Any

from services.router.listing import WorkflowFilter

# Written by a create; the counters after them only by per-delivery writes (and a closing save's `failed`
# or a cancelling save's `cancelled`).
COLUMNS = (
    "workflow_id, user_id, status, intent, trace_id, current_provider, provider_states, fallback_history,"
    " retry_attempts, recoveries, attempts, generation_id, result, model, usage, error, version,"
    " created_at, updated_at, deadline_at, completed_at, callback_url, personalized, deliveries_total,"
    " account_id, retry_of, notify, experiment, routing_policy"
)
TALLY = "generated, ungenerated, scheduled, sent, failed, cancelled, delivery_retries, last_slot_at, rate_limiter"
READ = f"{COLUMNS}, {TALLY}"

# $1 workflow, $2 message id, $3 events, $4 outbox — then the columns.
EVENTS_AND_PROCESSED = """
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
CREATE = (
    f"WITH w AS (INSERT INTO hybrid_workflows ({COLUMNS})"
    " VALUES ($1, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,"
    " $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)"
    " ON CONFLICT (workflow_id) DO NOTHING RETURNING workflow_id, version, updated_at)"
    ", d AS (INSERT INTO deliveries"
    " (workflow_id, seq, delivery_id, recipient_id, vars, generation_id, attempts, updated_at)"
    " SELECT w.workflow_id, r.seq, r.delivery_id, r.recipient_id, r.vars, r.generation_id, r.attempts, w.updated_at"
    " FROM w CROSS JOIN jsonb_to_recordset($5::jsonb) AS r"
    " (seq integer, delivery_id uuid, recipient_id text, vars jsonb, generation_id uuid, attempts smallint))"
    + EVENTS_AND_PROCESSED
)

# $5 what the open deliveries become ('failed' by Change.closing, 'cancelled' by Change.cancelling; null:
# nothing), the columns from $6, and $22 the error they fail with.
SAVE = (
    "WITH w AS (UPDATE hybrid_workflows SET status = $6, current_provider = $7, provider_states = $8,"
    " fallback_history = $9, retry_attempts = $10, recoveries = $11, attempts = $12, generation_id = $13,"
    " result = $14, model = $15, usage = $16, error = $17, version = $18,"
    " updated_at = $19, completed_at = $20, deadline_at = $21,"
    " failed = CASE WHEN $5::text = 'failed' THEN deliveries_total - sent - cancelled ELSE failed END,"
    " cancelled = CASE WHEN $5::text = 'cancelled' THEN deliveries_total - sent - failed ELSE cancelled END"
    " WHERE workflow_id = $1 AND version = $18 - 1 RETURNING workflow_id, version)"
    ", c AS (UPDATE deliveries SET status = $5::text, error = $22::jsonb, updated_at = $19"
    " WHERE $5::text IS NOT NULL AND workflow_id = (SELECT workflow_id FROM w)"
    " AND status NOT IN ('sent', 'failed', 'cancelled'))" + EVENTS_AND_PROCESSED
)

LOAD = (
    f"SELECT {', '.join('w.' + c.strip() for c in READ.split(','))}, p.outbox AS handled_outbox"
    " FROM (VALUES (1)) AS one (x)"
    " LEFT JOIN hybrid_workflows w ON w.workflow_id = $1"
    " LEFT JOIN processed_messages p ON p.message_id = $2"
)

GET = f"SELECT {READ} FROM hybrid_workflows WHERE workflow_id = $1"

DELIVERY_COLUMNS = (
    "seq, delivery_id, recipient_id, vars, status, text, generation_id, attempts, scheduled_for, sent_at,"
    " platform_message_id, error"
)
# Keyset pages: the primary key (workflow_id, seq) serves them, deliveries_by_status the filtered ones.
DELIVERIES = (
    f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE workflow_id = $1 AND seq > $2"
    " AND ($3::text IS NULL OR status = $3) ORDER BY seq LIMIT $4"
)
DELIVERY_AT = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE workflow_id = $1 AND seq = $2"
DELIVERY_FOR = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE generation_id = $2 AND workflow_id = $1"
OPEN = "workflow_id = $1 AND status NOT IN ('sent', 'failed', 'cancelled')"
NEXT_OPEN = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {OPEN} ORDER BY scheduled_for NULLS LAST, seq LIMIT 1"
FAILED = "workflow_id = $1 AND status = 'failed'"
FIRST_FAILED = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {FAILED} ORDER BY seq LIMIT 1"
REPORT = (
    f"SELECT applied, status, deliveries_total, {TALLY}"
    " FROM delivery_report($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)

# Several reports in one statement — one transaction, one commit — each one call of delivery_report, in the
# order given (the caller sorts them by workflow, so concurrent batches lock workflow rows in one order and
# never deadlock). $1 … $9 are arrays, one element per report; `i` says which report a row answers (a report
# for an unknown workflow answers none).
REPORTS = (
    f"SELECT r.i, d.applied, d.status, d.deliveries_total, {', '.join('d.' + c.strip() for c in TALLY.split(','))}"
    " FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::timestamptz[],"
    " $7::text[], $8::jsonb[], $9::text[]) WITH ORDINALITY"
    " AS r(workflow_id, message_id, delivery_id, kind, slot, sent_at, platform_message_id, error, limiter, i)"
    " CROSS JOIN LATERAL delivery_report(r.workflow_id, r.message_id, r.delivery_id, r.kind, r.slot, r.sent_at,"
    " r.platform_message_id, r.error, r.limiter, $10, $11) AS d"
)

# A personalized text's outcome, if its row still waits for the request it answers ($3): the row ($4 …),
# the successor's first request ($11 seq, $12 request id), the counters, the deadline and the handled
# message with its outbox ($14). The workflow row is locked first (`lk`), as everywhere.
WRITE_TEXT = f"""
WITH lk AS (SELECT workflow_id FROM hybrid_workflows WHERE workflow_id = $1 FOR UPDATE),
x AS (
    UPDATE deliveries SET text = $4, status = $5, error = $6::jsonb, generation_id = $7, attempts = $8,
        updated_at = $9
    WHERE workflow_id = (SELECT workflow_id FROM lk) AND seq = $10 AND generation_id = $3 AND text IS NULL
        AND status NOT IN ('sent', 'failed', 'cancelled')
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
    RETURNING status, deliveries_total, {TALLY}
)
SELECT * FROM w
"""

RECORD = (
    "INSERT INTO processed_messages (message_id, workflow_id, outbox) VALUES ($2, $1, $3::jsonb)"
    " ON CONFLICT (message_id) DO NOTHING"
)

# Served by the partial index hybrid_workflows_running (deadline_at WHERE not terminal).
OVERDUE = (
    f"SELECT {READ} FROM hybrid_workflows"
    " WHERE status NOT IN ('completed', 'failed', 'cancelled') AND deadline_at <= $1 ORDER BY deadline_at LIMIT $2"
)

HISTORY = (
    "SELECT event, from_status, to_status, occurred_at, detail FROM workflow_events"
    " WHERE workflow_id = $1 ORDER BY version, seq"
)

PUT_BUDGET = """
INSERT INTO budget_states (scope, period, action, spent_usd, limit_usd, observed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (scope, period) DO UPDATE
SET action = EXCLUDED.action, spent_usd = EXCLUDED.spent_usd, limit_usd = EXCLUDED.limit_usd,
    observed_at = EXCLUDED.observed_at
WHERE budget_states.observed_at <= EXCLUDED.observed_at
"""

ACTIVE_BUDGETS = (
    "SELECT scope, period, action, spent_usd, limit_usd, observed_at FROM budget_states WHERE action <> 'allow'"
)

PUT_POLICY = """
INSERT INTO routing_policy (version, policy, observed_at) VALUES ($1, $2, $3)
ON CONFLICT (singleton) DO UPDATE
SET version = EXCLUDED.version, policy = EXCLUDED.policy, observed_at = EXCLUDED.observed_at
WHERE routing_policy.version < EXCLUDED.version
"""

PURGE = """
DELETE FROM processed_messages WHERE message_id IN (
    SELECT message_id FROM processed_messages WHERE processed_at < $1 LIMIT $2
)
"""

# --- the workflow list (listing.py) ---------------------------------------------------------------------
# Composed per request from the fragments below, each naming only the parameters it uses, so the planner
# sees which filters are there and picks the index that serves them. Each part ("branch") of the visibility
# rule is an ordered, keyset-bounded scan of one index, LIMITed on its own:
#   everyone's (an admin)                 hybrid_workflows_created         (created_at DESC, workflow_id DESC)
#   the requester's own                   hybrid_workflows_user_created    (user_id, created_at DESC, …)
#   per account of their token: sent      hybrid_workflows_account_created (account_id, created_at DESC, …)
#   from it, and by its own user without  hybrid_workflows_user_created
#   an account (LATERAL over the accounts: one ordered scan each, not `= ANY`, whose rows come unordered
#   and which the planner answered with a walk of the whole created index, filtering)
# The branches are disjoint (UNION ALL, no de-duplication); the outer ORDER BY … LIMIT takes the page from
# at most `limit` rows of each scan. The `account_id` filter is on sends_as = COALESCE(account_id, user_id),
# written as its two index-friendly halves (account_id = x; account_id IS NULL AND user_id = x): no index
# serves the COALESCE. The page's start is a row comparison on (created_at, workflow_id), an index condition:
# page 1000 costs what page 1 does (no OFFSET).
LIST_ORDER = "ORDER BY created_at DESC, workflow_id DESC"
LIST_BRANCH = f"(SELECT {READ} FROM hybrid_workflows WHERE {{where}} {LIST_ORDER} LIMIT {{limit}})"
LIST_PER_ACCOUNT = "(SELECT page.* FROM unnest({accounts}) AS a (id) CROSS JOIN LATERAL {branch} AS page)"
LIST_UNION = f"SELECT * FROM ({{branches}}) AS page {LIST_ORDER} LIMIT {{limit}}"


class _Args:
    """The parameters of a composed statement: each value bound once, referenced as $n::type."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


def list_workflows(where: WorkflowFilter, limit: int) -> tuple[str, list[Any]]:
    """The statement and parameters of one page of the workflow list."""
    args = _Args()
    common: list[str] = []
    if where.status is not None:
        common.append(f"status = {args(where.status.value, 'text')}")
    if where.intent_type is not None:
        common.append(f"intent->>'type' = {args(where.intent_type.value, 'text')}")
    if where.created_from is not None:
        common.append(f"created_at >= {args(where.created_from, 'timestamptz')}")
    if where.created_to is not None:
        common.append(f"created_at < {args(where.created_to, 'timestamptz')}")
    if where.after is not None:
        after_at, after_id = args(where.after.created_at, "timestamptz"), args(where.after.workflow_id, "uuid")
        common.append(f"(created_at, workflow_id) < ({after_at}, {after_id})")
    branches, accounts = _visible_branches(where, args)
    page = args(limit, "integer")
    parts = []
    for branch, per_account in branches:
        part = LIST_BRANCH.format(where=" AND ".join([*branch, *common]) or "TRUE", limit=page)
        parts.append(LIST_PER_ACCOUNT.format(accounts=accounts, branch=part) if per_account else part)
    if len(parts) == 1:
        return parts[0][1:-1], args.values
    return LIST_UNION.format(branches=" UNION ALL ".join(parts), limit=page), args.values


def _visible_branches(where: WorkflowFilter, args: _Args) -> tuple[list[tuple[list[str], bool]], str]:
    """The disjoint parts of "visible to the requester (and sent from where.account_id)", each a conjunction
    one index serves (True: once per account of the requester's, `a.id`); and the accounts' parameter."""
    if where.account_id is not None:
        account = args(where.account_id, "text")
        branches = [[f"account_id = {account}"], ["account_id IS NULL", f"user_id = {account}"]]
        if not where.is_admin and where.account_id not in where.accounts:
            me = args(where.user_id, "text")  # not their account: only what they started themselves
            branches = [[*branch, f"user_id = {me}"] for branch in branches]
        return [(branch, False) for branch in branches], ""
    if where.is_admin:
        return [([], False)], ""
    me = args(where.user_id, "text")
    if not where.accounts:
        return [([f"user_id = {me}"], False)], ""
    accounts = args(list(where.accounts), "text[]")
    return [
        ([f"user_id = {me}"], False),
        (["account_id = a.id", f"user_id <> {me}"], True),
        (["account_id IS NULL", "user_id = a.id", f"user_id <> {me}"], True),
    ], accounts
