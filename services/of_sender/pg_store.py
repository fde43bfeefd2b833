"""The of-sender's store on PostgreSQL (schema "of_sender"): one statement per operation.

asyncpg's errors leave this module as libs.storage.DatabaseError. The compare-and-set of `queue` and
`sending` is the WHERE clause of one UPDATE: under READ COMMITTED a second UPDATE of the row waits for the
first to commit and then re-checks its WHERE against the new row, so of two racing, one matches.

The cancellation fence is part of the claim's WHERE too: `sending` matches no row of a workflow listed in
cancelled_workflows. A cancel committed before the claim's statement began is seen by it; one committing
while it runs is not — that request goes out and is reported as sent, which is the truth.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from contracts import Envelope
from contracts.messages import DeliveryApproved, ErrorInfo
from libs.ratelimit import SentRecord
from libs.storage.schema_store import SchemaStore
from services.of_sender.constants import DB_SCHEMA, MIGRATIONS_DIR
from services.of_sender.store import (
    MessageRecord,
    MessageStatus,
    MessageStore,
    RecordChanged,
    WorkflowCancelled,
    to_ms,
)

_COLUMNS = (
    "delivery_id, workflow_id, account_id, recipient_id, status, attempts, max_retries, rate_limited,"
    " scheduled_for, held_since, attempted_at, sent_at, platform_message_id, last_error, bus_message_id,"
    " requeued_from, paused_since"
)

# The compare of the compare-and-sets: still naming the approval the handler read, with as many attempts,
# and not finished.
_UNCHANGED = "delivery_id = $1 AND bus_message_id = $2 AND attempts = $3 AND status NOT IN ('sent', 'failed')"

# Insert on the first approval; either way return the row (the CTE's RETURNING, else the existing one), with
# the later slot the delivery was replanned to, if any.
_OPEN = f"""
WITH ins AS (
    INSERT INTO onlyfans_messages
        (delivery_id, workflow_id, account_id, recipient_id, status, max_retries, scheduled_for, bus_message_id)
    VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING {_COLUMNS}
)
SELECT m.*, (SELECT slot_at FROM replanned_deliveries WHERE delivery_id = $1) AS replanned_to FROM (
    SELECT {_COLUMNS} FROM ins
    UNION ALL
    SELECT {_COLUMNS} FROM onlyfans_messages WHERE delivery_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)
) m
"""

_REPLAN = """
INSERT INTO replanned_deliveries (delivery_id, slot_at) VALUES ($1, $2)
ON CONFLICT (delivery_id) DO UPDATE SET slot_at = GREATEST(replanned_deliveries.slot_at, EXCLUDED.slot_at)
"""

_PURGE_REPLANNED = "DELETE FROM replanned_deliveries WHERE slot_at < now() - make_interval(secs => $1)"

_QUEUE = f"""
UPDATE onlyfans_messages SET status = CASE WHEN $10 THEN 'sending' ELSE 'queued' END,
    bus_message_id = $4, requeued_from = $5, scheduled_for = $6,
    last_error = COALESCE($7::jsonb, last_error), rate_limited = rate_limited + $8,
    held_since = CASE WHEN $9 THEN COALESCE(held_since, now()) END,
    paused_since = CASE WHEN $11 THEN COALESCE(paused_since, now()) END, updated_at = now()
WHERE {_UNCHANGED}
RETURNING {_COLUMNS}
"""

# The attempt row is written only when the UPDATE matched (a CTE's INSERT would run either way).
_SENDING = f"""
WITH moved AS (
    UPDATE onlyfans_messages SET status = 'sending', attempts = attempts + 1, attempted_at = $5,
        held_since = NULL, paused_since = NULL, updated_at = now()
    WHERE {_UNCHANGED}
        AND NOT EXISTS (SELECT 1 FROM cancelled_workflows c WHERE c.workflow_id = onlyfans_messages.workflow_id)
    RETURNING {_COLUMNS}
), a AS (
    INSERT INTO onlyfans_send_attempts (token, delivery_id, account_id, recipient_id, checked_at)
    SELECT $4, delivery_id, account_id, recipient_id, $5 FROM moved
)
SELECT {_COLUMNS} FROM moved
"""

_SENT = f"""
UPDATE onlyfans_messages SET status = 'sent', platform_message_id = $2, sent_at = $3, updated_at = now()
WHERE delivery_id = $1
RETURNING {_COLUMNS}
"""

_FAILED = f"""
UPDATE onlyfans_messages SET status = 'failed', last_error = $2::jsonb, updated_at = now()
WHERE delivery_id = $1
RETURNING {_COLUMNS}
"""

_IS_CANCELLED = "SELECT EXISTS (SELECT 1 FROM cancelled_workflows WHERE workflow_id = $1)"

_CANCEL = """
INSERT INTO cancelled_workflows (workflow_id, account_id, cancelled_at) VALUES ($1, $2, $3)
ON CONFLICT (workflow_id) DO NOTHING
"""

_RECENT = """
SELECT token, recipient_id, checked_at FROM onlyfans_send_attempts
WHERE account_id = $1 AND checked_at > now() - make_interval(secs => $2)
"""

_PURGE = """
DELETE FROM onlyfans_send_attempts WHERE token IN (
    SELECT token FROM onlyfans_send_attempts WHERE checked_at < now() - make_interval(secs => $1) LIMIT $2
)
"""


def _record(row: asyncpg.Record) -> MessageRecord:
    error = row["last_error"]
    return MessageRecord(
        delivery_id=row["delivery_id"],
        workflow_id=row["workflow_id"],
        account_id=row["account_id"],
        recipient_id=row["recipient_id"],
        status=MessageStatus(row["status"]),
        max_retries=row["max_retries"],
        bus_message_id=row["bus_message_id"],
        attempts=row["attempts"],
        rate_limited=row["rate_limited"],
        scheduled_for=row["scheduled_for"],
        held_since=row["held_since"],
        attempted_at=row["attempted_at"],
        sent_at=row["sent_at"],
        platform_message_id=row["platform_message_id"],
        last_error=ErrorInfo.model_validate(error) if error is not None else None,
        requeued_from=row["requeued_from"],
        paused_since=row["paused_since"],
        replanned_to=row.get("replanned_to"),
    )


class PostgresMessageStore(SchemaStore, MessageStore):
    SCHEMA = DB_SCHEMA
    MIGRATIONS = MIGRATIONS_DIR

    async def _one(self, action: str, sql: str, *args: Any) -> MessageRecord:
        async with self._connection(action) as conn:
            row = await conn.fetchrow(sql, *args)
        if row is None:
            raise LookupError(f"{action}: delivery {args[0]} is not stored")
        return _record(row)

    async def _compare_and_set(self, action: str, sql: str, record: MessageRecord, *args: Any) -> MessageRecord:
        async with self._connection(action) as conn:
            row = await conn.fetchrow(sql, record.delivery_id, record.bus_message_id, record.attempts, *args)
        if row is None:
            raise RecordChanged(f"{action}: delivery {record.delivery_id} changed since it was read")
        return _record(row)

    async def open(self, envelope: Envelope, approval: DeliveryApproved, max_retries: int) -> MessageRecord:
        return await self._one(
            "open delivery",
            _OPEN,
            approval.delivery_id,
            envelope.workflow_id,
            approval.account_id,
            approval.recipient_id,
            max_retries,
            approval.slot_at,
            envelope.id,
        )

    async def queue(
        self,
        record: MessageRecord,
        *,
        bus_message_id: uuid.UUID,
        requeued_from: uuid.UUID,
        scheduled_for: datetime,
        error: ErrorInfo | None = None,
        rate_limited: bool = False,
        held: bool = False,
        paused: bool = False,
        unconfirmed: bool = False,
    ) -> MessageRecord:
        dumped = error.model_dump(mode="json") if error is not None else None
        return await self._compare_and_set(
            "queue delivery",
            _QUEUE,
            record,
            bus_message_id,
            requeued_from,
            scheduled_for,
            dumped,
            int(rate_limited),
            held,
            unconfirmed,
            paused,
        )

    async def sending(self, record: MessageRecord, token: str, checked_at: datetime) -> MessageRecord:
        try:
            return await self._compare_and_set("record send attempt", _SENDING, record, token, checked_at)
        except RecordChanged:
            # No row matched: the record moved, or the fence stopped it. A cancel is never undone, so if the
            # workflow is cancelled now, that is the answer either way (nothing may be sent).
            if record.workflow_id is not None and await self.is_cancelled(record.workflow_id):
                raise WorkflowCancelled(f"workflow {record.workflow_id} is cancelled") from None
            raise

    async def cancel(self, workflow_id: uuid.UUID, account_id: str, cancelled_at: datetime) -> bool:
        async with self._connection("record cancelled workflow") as conn:
            status: str = await conn.execute(_CANCEL, workflow_id, account_id, cancelled_at)
        return status.endswith(" 1")

    async def is_cancelled(self, workflow_id: uuid.UUID) -> bool:
        async with self._connection("read cancelled workflow") as conn:
            return bool(await conn.fetchval(_IS_CANCELLED, workflow_id))

    async def sent(self, delivery_id: uuid.UUID, platform_message_id: str, sent_at: datetime) -> MessageRecord:
        return await self._one("mark sent", _SENT, delivery_id, platform_message_id, sent_at)

    async def failed(self, delivery_id: uuid.UUID, error: ErrorInfo) -> MessageRecord:
        return await self._one("mark failed", _FAILED, delivery_id, error.model_dump(mode="json"))

    async def recent_sends(self, account_id: str, horizon_s: float) -> list[SentRecord]:
        async with self._connection("read recent sends") as conn:
            rows = await conn.fetch(_RECENT, account_id, horizon_s)
        return [SentRecord(row["token"], row["recipient_id"], to_ms(row["checked_at"])) for row in rows]

    async def replan(self, delivery_id: uuid.UUID, slot_at: datetime) -> None:
        async with self._connection("record a replanned slot") as conn:
            await conn.execute(_REPLAN, delivery_id, slot_at)

    async def purge_attempts(self, older_than_s: float, limit: int) -> int:
        async with self._connection("purge send attempts") as conn:
            status = await conn.execute(_PURGE, older_than_s, limit)
            await conn.execute(_PURGE_REPLANNED, older_than_s)
        return int(status.rsplit(" ", 1)[-1])
