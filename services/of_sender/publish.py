"""What the of-sender publishes: re-queued approvals — recorded before they are published, so that one
approval owns a delivery at a time (see `requeue`) — and its reports to the router."""

from __future__ import annotations

from datetime import timedelta

from contracts import Envelope, Message
from contracts.enums import ErrorType
from contracts.messages import DeliveryApproved, DeliveryCompleted, DeliveryFailed, DeliveryScheduled, ErrorInfo
from libs.bus import Bus
from libs.telemetry import get_logger
from services.of_sender.store import MessageRecord, MessageStatus, MessageStore, utcnow

log = get_logger(__name__)


class Publisher:
    def __init__(self, bus: Bus, store: MessageStore) -> None:
        self.bus = bus
        self.store = store

    async def requeue(
        self,
        envelope: Envelope,
        record: MessageRecord,
        *,
        delay_s: float,
        error: ErrorInfo | None = None,
        rate_limited: bool = False,
        held: bool = False,
        paused: bool = False,
        unconfirmed: bool = False,
        report: bool = True,
    ) -> None:
        """Publish the approval again, `delay_s` from now, and (when `report`) tell the router the new time.
        `unconfirmed`: the last request's outcome is unknown, so the delivery stays `sending`.

        Recorded first, then published. The record's compare-and-set is the decision: only the handling
        whose write lands re-queues (a racing one gets RecordChanged before it publishes anything), and from
        then on only the new approval owns the delivery. The other order cannot work: a re-published
        approval due at once could be handled before its record says it owns the delivery — dropped as
        stale, and the delivery stranded when this approval is then acknowledged.

        A crash between the write and the publish leaves the record naming an approval that was never
        published, and this one unacknowledged: the bus redelivers it, and `reissue` (it is the record's
        `requeued_from`) publishes the re-queue again. A crash after the publish, before the ack, makes the
        same redelivery while the new approval is also on its way: `reissue` then replaces it if it has not
        moved the delivery yet (it arrives stale), and is stale itself otherwise. Never two owners, never
        none."""
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        slot = utcnow() + timedelta(seconds=delay_s)
        # A random id, on purpose: the record names the one approval that owns the delivery by it, and a
        # reissued copy (`reissue`) must be told apart from the one it replaces.
        moved = envelope.child(approval.model_copy(update={"slot_at": slot}), attempt=envelope.attempt + 1)
        await self.store.queue(
            record,
            bus_message_id=moved.id,
            requeued_from=envelope.id,
            scheduled_for=slot,
            error=error,
            rate_limited=rate_limited,
            held=held,
            paused=paused,
            unconfirmed=unconfirmed,
        )
        await self.bus.publish(moved, delay=delay_s)
        if report:
            scheduled = DeliveryScheduled(
                delivery_id=approval.delivery_id, recipient_id=approval.recipient_id, slot_at=slot, error=error
            )
            await self.bus.publish(envelope.derived_child(scheduled))

    async def reissue(self, envelope: Envelope, record: MessageRecord) -> None:
        """This approval re-queued the delivery but was redelivered (its handler died before the ack), so
        the re-published approval may never have left: publish a new one for the same slot, owning the
        delivery in its place — unless the record moved since (RecordChanged: this one is then stale)."""
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        slot = record.scheduled_for or utcnow()
        # A random id: this copy replaces the one `requeue` published (see there), so it must differ from it.
        moved = envelope.child(approval.model_copy(update={"slot_at": slot}), attempt=envelope.attempt + 1)
        await self.store.queue(
            record,
            bus_message_id=moved.id,
            requeued_from=envelope.id,
            scheduled_for=slot,
            held=record.held_since is not None,
            paused=record.paused_since is not None,
            unconfirmed=record.status is MessageStatus.SENDING,
        )
        log.info("delivery.requeue_reissued", delivery_id=str(record.delivery_id), replaced=str(record.bus_message_id))
        await self.bus.publish(moved, delay=max(0.0, (slot - utcnow()).total_seconds()))

    async def fail(self, envelope: Envelope, record: MessageRecord, error: ErrorInfo) -> None:
        record = await self.store.failed(record.delivery_id, error)
        log.warning("delivery.failed", error_type=error.type.value, status=error.status_code, attempts=record.attempts)
        await self.report_final(envelope, record)

    async def report_final(self, envelope: Envelope, record: MessageRecord) -> None:
        payload: Message
        if record.status is MessageStatus.SENT:
            assert record.sent_at is not None
            payload = DeliveryCompleted(
                delivery_id=record.delivery_id,
                recipient_id=record.recipient_id,
                platform_message_id=record.platform_message_id or "",
                sent_at=record.sent_at,
            )
        else:
            error = record.last_error or ErrorInfo(
                type=ErrorType.ONLYFANS_API_ERROR, message="delivery failed", retryable=False
            )
            payload = DeliveryFailed(delivery_id=record.delivery_id, recipient_id=record.recipient_id, error=error)
        # Derived: a redelivered approval of a finished delivery repeats the very same report.
        await self.bus.publish(envelope.derived_child(payload))
