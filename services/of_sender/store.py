"""Where the of-sender keeps its deliveries (the original plan's onlyfans_messages) and its send attempts: the
repository interface and its in-memory implementation (embedded mode, unit tests). pg_store.py is the same
interface on PostgreSQL.

The attempts are the durable record of actual send times: one per request, written before the request
goes out, at the time its last check passed. The Redis send log is rebuilt from them (`recent_sends`).

A record names the one approval allowed to move it (`bus_message_id`): the first one, then each re-published
one. `queue` and `sending` are compare-and-set on what the handler read — the same approval named, the same
number of attempts, not finished — and raise RecordChanged when another handling got there first, so that
of two approvals handled at once (a stale one, or two copies of one) at most one re-queues or sends.
`sent` and `failed` are not conditional: they record what the platform answered, or a verdict on it.

The cancellation fence: `cancel` records a cancelled workflow, and `sending` — the claim every request
needs — refuses a delivery of a cancelled workflow with WorkflowCancelled, in the same statement, so a
cancel recorded before the claim is never followed by a request.
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from contracts import Envelope
from contracts.messages import DeliveryApproved, ErrorInfo
from libs.ratelimit import SentRecord
from libs.storage.store import Store


class MessageStatus(StrEnum):
    PENDING = "pending"  # approved, not tried yet
    QUEUED = "queued"  # waiting for a later slot (throttled, rate limited, a retry, limiter down)
    # The request is out, or was and its outcome is unknown (a timeout, a dropped connection, the sender
    # died): a delivery found in this state is looked up on the platform before anything is sent again.
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


FINAL = frozenset({MessageStatus.SENT, MessageStatus.FAILED})


class RecordChanged(Exception):
    """The delivery's record changed since the handler read it (another handling re-queued it, recorded an
    attempt or finished it): the compare-and-set was not applied; read the record again."""


class WorkflowCancelled(Exception):
    """The delivery's workflow is cancelled: no attempt was recorded, and none may be sent."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    delivery_id: uuid.UUID
    workflow_id: uuid.UUID | None
    account_id: str
    recipient_id: str
    status: MessageStatus
    max_retries: int
    bus_message_id: uuid.UUID  # the approval allowed to move the delivery
    attempts: int = 0
    rate_limited: int = 0
    scheduled_for: datetime | None = None
    held_since: datetime | None = None
    paused_since: datetime | None = None  # held by the kill switch or the account's pause (flags)
    attempted_at: datetime | None = None
    sent_at: datetime | None = None
    platform_message_id: str | None = None
    last_error: ErrorInfo | None = None
    # The approval whose handling re-queued the delivery to `bus_message_id`; it may re-publish the re-queue
    # (its publish may have been lost), nothing else. None before the first re-queue.
    requeued_from: uuid.UUID | None = None
    # A later slot the rate-limiter moved the delivery to (delivery.replanned): an approval due before it
    # waits for it. Read by `open` only.
    replanned_to: datetime | None = None

    @property
    def failures(self) -> int:
        """Attempts that failed with a retryable error other than a 429 (the OF_MAX_RETRIES budget)."""
        return self.attempts - self.rate_limited - (1 if self.status is MessageStatus.SENT else 0)


def new_record(envelope: Envelope, approval: DeliveryApproved, max_retries: int) -> MessageRecord:
    return MessageRecord(
        delivery_id=approval.delivery_id,
        workflow_id=envelope.workflow_id,
        account_id=approval.account_id,
        recipient_id=approval.recipient_id,
        status=MessageStatus.PENDING,
        max_retries=max_retries,
        bus_message_id=envelope.id,
        scheduled_for=approval.slot_at,
    )


class MessageStore(Store):
    @abstractmethod
    async def open(self, envelope: Envelope, approval: DeliveryApproved, max_retries: int) -> MessageRecord:
        """The delivery's record, created (pending) on its first approval."""

    @abstractmethod
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
        """Re-queued by approval `requeued_from` as approval `bus_message_id`, from now on the only one
        allowed to move the delivery — if the record is still as `record` was read (else RecordChanged).
        Waiting for `scheduled_for`: a 429 counts in `rate_limited`; `held` starts (or continues) the time
        held while the limiter is unreachable; `paused` starts (or continues) the time held by the flags
        (kill switch off, account paused); `error`, when given, becomes the last error; `unconfirmed`
        (the last request's outcome is unknown) keeps the status `sending` instead of `queued`, so that the
        next try looks the message up first."""

    @abstractmethod
    async def sending(self, record: MessageRecord, token: str, checked_at: datetime) -> MessageRecord:
        """The last check passed at `checked_at`: record the attempt (durably) before the request goes out —
        if the record is still as `record` was read (else RecordChanged, and no attempt is recorded) and
        its workflow is not cancelled (else WorkflowCancelled, and no attempt is recorded)."""

    @abstractmethod
    async def cancel(self, workflow_id: uuid.UUID, account_id: str, cancelled_at: datetime) -> bool:
        """Record the workflow as cancelled (durably); False when it already was."""

    @abstractmethod
    async def is_cancelled(self, workflow_id: uuid.UUID) -> bool: ...

    @abstractmethod
    async def sent(self, delivery_id: uuid.UUID, platform_message_id: str, sent_at: datetime) -> MessageRecord: ...

    @abstractmethod
    async def failed(self, delivery_id: uuid.UUID, error: ErrorInfo) -> MessageRecord: ...

    @abstractmethod
    async def recent_sends(self, account_id: str, horizon_s: float) -> list[SentRecord]:
        """The account's send attempts of the last `horizon_s` seconds (by the store's clock)."""

    @abstractmethod
    async def replan(self, delivery_id: uuid.UUID, slot_at: datetime) -> None:
        """The delivery was moved to `slot_at` (a later one than any recorded before wins)."""

    @abstractmethod
    async def purge_attempts(self, older_than_s: float, limit: int) -> int:
        """Forget up to `limit` attempts older than `older_than_s`, and replanned slots as old; how many
        attempts were forgotten."""


class MemoryMessageStore(MessageStore):
    """The store in this process's memory: same semantics, nothing survives the process."""

    def __init__(self) -> None:
        self._records: dict[uuid.UUID, MessageRecord] = {}
        self._attempts: dict[str, tuple[str, SentRecord]] = {}  # token -> (account, attempt)
        self._cancelled: set[uuid.UUID] = set()
        self._replanned: dict[uuid.UUID, datetime] = {}

    def get(self, delivery_id: uuid.UUID) -> MessageRecord | None:
        return self._records.get(delivery_id)

    def _update(self, delivery_id: uuid.UUID, **changes: object) -> MessageRecord:
        record = replace(self._records[delivery_id], **changes)  # type: ignore[arg-type]
        self._records[delivery_id] = record
        return record

    def _unchanged(self, read: MessageRecord) -> MessageRecord:
        """The stored record if it is still as `read` was (the compare of a compare-and-set)."""
        current = self._records[read.delivery_id]
        if (
            current.bus_message_id != read.bus_message_id
            or current.attempts != read.attempts
            or current.status in FINAL
        ):
            raise RecordChanged(f"delivery {read.delivery_id} changed since it was read")
        return current

    async def open(self, envelope: Envelope, approval: DeliveryApproved, max_retries: int) -> MessageRecord:
        record = self._records.setdefault(approval.delivery_id, new_record(envelope, approval, max_retries))
        return replace(record, replanned_to=self._replanned.get(approval.delivery_id))

    async def replan(self, delivery_id: uuid.UUID, slot_at: datetime) -> None:
        self._replanned[delivery_id] = max(slot_at, self._replanned.get(delivery_id, slot_at))

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
        current = self._unchanged(record)
        return self._update(
            record.delivery_id,
            status=MessageStatus.SENDING if unconfirmed else MessageStatus.QUEUED,
            scheduled_for=scheduled_for,
            bus_message_id=bus_message_id,
            requeued_from=requeued_from,
            last_error=error or current.last_error,
            rate_limited=current.rate_limited + int(rate_limited),
            held_since=(current.held_since or utcnow()) if held else None,
            paused_since=(current.paused_since or utcnow()) if paused else None,
        )

    async def sending(self, record: MessageRecord, token: str, checked_at: datetime) -> MessageRecord:
        current = self._unchanged(record)
        if current.workflow_id in self._cancelled:
            raise WorkflowCancelled(f"workflow {current.workflow_id} is cancelled")
        self._attempts[token] = (record.account_id, SentRecord(token, record.recipient_id, to_ms(checked_at)))
        return self._update(
            record.delivery_id,
            status=MessageStatus.SENDING,
            attempts=current.attempts + 1,
            attempted_at=checked_at,
            held_since=None,
            paused_since=None,
        )

    async def cancel(self, workflow_id: uuid.UUID, account_id: str, cancelled_at: datetime) -> bool:
        if workflow_id in self._cancelled:
            return False
        self._cancelled.add(workflow_id)
        return True

    async def is_cancelled(self, workflow_id: uuid.UUID) -> bool:
        return workflow_id in self._cancelled

    async def sent(self, delivery_id: uuid.UUID, platform_message_id: str, sent_at: datetime) -> MessageRecord:
        return self._update(
            delivery_id, status=MessageStatus.SENT, platform_message_id=platform_message_id, sent_at=sent_at
        )

    async def failed(self, delivery_id: uuid.UUID, error: ErrorInfo) -> MessageRecord:
        return self._update(delivery_id, status=MessageStatus.FAILED, last_error=error)

    async def recent_sends(self, account_id: str, horizon_s: float) -> list[SentRecord]:
        since = to_ms(utcnow() - timedelta(seconds=horizon_s))
        return [a for account, a in self._attempts.values() if account == account_id and a.at_ms > since]

    async def purge_attempts(self, older_than_s: float, limit: int) -> int:
        before = to_ms(utcnow() - timedelta(seconds=older_than_s))
        old = [token for token, (_, a) in self._attempts.items() if a.at_ms < before][:limit]
        for token in old:
            del self._attempts[token]
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        self._replanned = {d: at for d, at in self._replanned.items() if at >= cutoff}
        return len(old)
