"""The of-sender's store on PostgreSQL (schema "of_sender"): one statement per operation.

asyncpg's errors leave this module as libs.storage.DatabaseError.
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
from services.of_sender.store import MessageRecord, MessageStatus, MessageStore, to_ms

_COLUMNS = (
    "delivery_id, workflow_id, account_id, recipient_id, status, attempts, max_retries, rate_limited,"
    " scheduled_for, held_since, attempted_at, sent_at, platform_message_id, last_error, bus_message_id"
)

# Insert on the first approval; either way return the row (the CTE's RETURNING, else the existing one).
_OPEN = f"""
WITH ins AS (
    INSERT INTO onlyfans_messages
        (delivery_id, workflow_id, account_id, recipient_id, status, max_retries, scheduled_for, bus_message_id)
    VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING {_COLUMNS}
)
SELECT {_COLUMNS} FROM ins
UNION ALL
SELECT {_COLUMNS} FROM onlyfans_messages WHERE delivery_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)
"""

_QUEUE = f"""
UPDATE onlyfans_messages SET status = CASE WHEN $7 THEN 'sending' ELSE 'queued' END,
    scheduled_for = $2, bus_message_id = $3,
    last_error = COALESCE($4::jsonb, last_error), rate_limited = rate_limited + $5,
    held_since = CASE WHEN $6 THEN COALESCE(held_since, now()) END, updated_at = now()
WHERE delivery_id = $1
RETURNING {_COLUMNS}
"""

_SENDING = f"""
WITH a AS (
    INSERT INTO onlyfans_send_attempts (token, delivery_id, account_id, recipient_id, checked_at)
    VALUES ($2, $1, $3, $4, $5)
)
UPDATE onlyfans_messages SET status = 'sending', attempts = attempts + 1, attempted_at = $5, held_since = NULL,
    updated_at = now()
WHERE delivery_id = $1
RETURNING {_COLUMNS}
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
        delivery_id: uuid.UUID,
        *,
        scheduled_for: datetime,
        bus_message_id: uuid.UUID,
        error: ErrorInfo | None = None,
        rate_limited: bool = False,
        held: bool = False,
        unconfirmed: bool = False,
    ) -> MessageRecord:
        dumped = error.model_dump(mode="json") if error is not None else None
        return await self._one(
            "queue delivery",
            _QUEUE,
            delivery_id,
            scheduled_for,
            bus_message_id,
            dumped,
            int(rate_limited),
            held,
            unconfirmed,
        )

    async def sending(self, record: MessageRecord, token: str, checked_at: datetime) -> MessageRecord:
        return await self._one(
            "record send attempt",
            _SENDING,
            record.delivery_id,
            token,
            record.account_id,
            record.recipient_id,
            checked_at,
        )

    async def sent(self, delivery_id: uuid.UUID, platform_message_id: str, sent_at: datetime) -> MessageRecord:
        return await self._one("mark sent", _SENT, delivery_id, platform_message_id, sent_at)

    async def failed(self, delivery_id: uuid.UUID, error: ErrorInfo) -> MessageRecord:
        return await self._one("mark failed", _FAILED, delivery_id, error.model_dump(mode="json"))

    async def recent_sends(self, account_id: str, horizon_s: float) -> list[SentRecord]:
        async with self._connection("read recent sends") as conn:
            rows = await conn.fetch(_RECENT, account_id, horizon_s)
        return [SentRecord(row["token"], row["recipient_id"], to_ms(row["checked_at"])) for row in rows]

    async def purge_attempts(self, older_than_s: float, limit: int) -> int:
        async with self._connection("purge send attempts") as conn:
            status = await conn.execute(_PURGE, older_than_s, limit)
        return int(status.rsplit(" ", 1)[-1])
