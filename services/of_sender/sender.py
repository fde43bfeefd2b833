"""The of-sender's handler: one delivery.approved → at most one message on the platform, within the limits.

    delivery.approved ─► record (pending) ─► last check on actual send times ─┬─ refused ─► re-queued at the
                                                                              │             time it fits
                                                                              └─ allowed ─► attempt recorded
    ─► POST with Idempotency-Key = delivery id ─┬─ 2xx ─────────► sent, delivery.completed
                                                ├─ 429 ─────────► re-queued (onlyfans_rate_limited row), then failed
                                                ├─ other 4xx ───► failed, delivery.failed
                                                └─ 5xx/timeout ─► re-queued with backoff, then failed + dead-lettered

"Re-queued" publishes the approval again, delayed (nothing waits unacknowledged), and tells the router the
new time with a delivery.scheduled. Every attempt counts as a send in the log, failed ones too (the platform
may have counted it): a retry also waits for the fan's spacing.

A redelivered approval of a finished delivery only repeats its report; one whose request may already be out
is sent again with the same Idempotency-Key (the platform answers with the first answer, the fan sees one
message). The router dedupes reports by delivery state.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from contracts import Envelope, Message
from contracts.enums import ErrorType
from contracts.messages import DeliveryApproved, DeliveryCompleted, DeliveryFailed, DeliveryScheduled, ErrorInfo
from libs.bus import Bus, Handler, Reject
from libs.ratelimit import Check, DownPolicy, LimiterUnavailable, SendLog
from libs.telemetry import get_logger, get_metrics
from services.of_sender.client import PlatformClient, Sent
from services.of_sender.config import OfSenderSettings
from services.of_sender.constants import RECHECK_SLACK_S
from services.of_sender.store import FINAL, MessageRecord, MessageStatus, MessageStore, from_ms, utcnow

log = get_logger(__name__)


class Sender:
    def __init__(
        self,
        bus: Bus,
        store: MessageStore,
        send_log: SendLog,
        client: PlatformClient,
        settings: OfSenderSettings,
        *,
        bypass_log: SendLog,
    ) -> None:
        self.bus = bus
        self.store = store
        self.send_log = send_log
        self.bypass_log = bypass_log
        self.client = client
        self.settings = settings
        # Accounts this replica sent to while bypassing Redis: their Redis log lacks those sends, so it is
        # reloaded from the durable record before it is trusted again.
        self._bypassed: set[str] = set()

    def handlers(self) -> dict[str, Handler]:
        return {DeliveryApproved.TYPE: self.on_approved}

    async def on_approved(self, envelope: Envelope) -> Message | None:
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        record = await self.store.open(envelope, approval, self.settings.of_max_retries)
        if record.status in FINAL:
            log.info("delivery.duplicate_approval", status=record.status.value)
            await self._report_final(envelope, record)
            return None
        token = f"{approval.delivery_id}:{uuid.uuid4().hex[:12]}"
        try:
            check: Check | None = await self._last_check(self.send_log, approval, token)
        except LimiterUnavailable as exc:
            check = await self._limiter_down(envelope, record, token, exc)
        if check is None:
            return None
        if not check.allowed:
            get_metrics().record_throttle(scope="last_check")
            await self._requeue(envelope, record, delay_s=check.wait_s + RECHECK_SLACK_S)
            return None
        record = await self.store.sending(record, token, from_ms(check.now_ms))
        result = await self.client.send(
            approval.account_id, approval.recipient_id, approval.text, idempotency_key=str(approval.delivery_id)
        )
        if isinstance(result, Sent):
            record = await self.store.sent(record.delivery_id, result.platform_message_id, from_ms(check.now_ms))
            log.info("delivery.sent", attempts=record.attempts, delivery_id=str(record.delivery_id))
            await self._report_final(envelope, record)
            return None
        await self._after_failure(envelope, record, result)
        return None

    # --- the last check ----------------------------------------------------------------------------------

    async def _last_check(self, send_log: SendLog, approval: DeliveryApproved, token: str) -> Check:
        """The check, after reloading the account's sends from the durable record if the log lost them."""
        account = approval.account_id
        if send_log is self.send_log and account in self._bypassed:
            await send_log.forget(account)
            self._bypassed.discard(account)
        check = await send_log.check(account, approval.recipient_id, token)
        if check.needs_history:
            records = await self.store.recent_sends(account, send_log.limits.horizon_ms / 1000)
            await send_log.load(account, records)
            log.info("send_log.loaded", account_id=account, sends=len(records))
            check = await send_log.check(account, approval.recipient_id, token)
            if check.needs_history:
                raise LimiterUnavailable("the send log lost the account's history again while it was loaded")
        return check

    async def _limiter_down(
        self, envelope: Envelope, record: MessageRecord, token: str, exc: LimiterUnavailable
    ) -> Check | None:
        """RATE_LIMITER_DOWN_POLICY: this replica's own conservative log, or hold (then fail) the delivery."""
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        settings = self.settings
        if settings.rate_limiter_down_policy is DownPolicy.BYPASS_WITH_WARNING:
            log.warning("send_log.bypassed", reason=str(exc), limit=self.bypass_log.limits.account_limit)
            self._bypassed.add(approval.account_id)
            return await self._last_check(self.bypass_log, approval, token)
        held_s = (utcnow() - record.held_since).total_seconds() if record.held_since else 0.0
        if held_s >= settings.rate_limiter_down_max_hold_s:
            message = f"the send log (Redis) was unreachable for {held_s:.0f}s, delivery given up: {exc}"
            error = ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message=message, retryable=False)
            await self._fail(envelope, record, error)
            return None
        log.warning("send_log.unavailable", policy="hold", reason=str(exc), held_s=round(held_s, 1))
        error = ErrorInfo(
            type=ErrorType.PROVIDER_UNAVAILABLE,
            message=f"held: the send log (Redis) is unreachable ({exc})",
            retryable=True,
            retry_after_s=settings.rate_limiter_down_retry_s,
        )
        # The router hears of the hold once, not at every re-check.
        await self._requeue(
            envelope,
            record,
            delay_s=settings.rate_limiter_down_retry_s,
            error=error,
            held=True,
            report=record.held_since is None,
        )
        return None

    # --- after the request -------------------------------------------------------------------------------

    async def _after_failure(self, envelope: Envelope, record: MessageRecord, error: ErrorInfo) -> None:
        settings = self.settings
        if error.type is ErrorType.RATE_LIMIT_EXCEEDED:
            # The onlyfans_rate_limited row of the fallback matrix: the first 429 always re-queues, up to
            # OF_RATE_LIMITED_MAX_RETRIES more do too, the next one fails the delivery.
            if record.rate_limited > settings.of_rate_limited_max_retries:
                message = f"{error.message}; already re-queued {record.rate_limited} times"
                await self._fail(envelope, record, error.model_copy(update={"retryable": False, "message": message}))
                return
            delay = max(settings.of_rate_limited_delay_s, error.retry_after_s or 0.0)
            log.warning("delivery.rate_limited", delay_s=delay, retry_after_s=error.retry_after_s)
            await self._requeue(envelope, record, delay_s=delay, error=error, rate_limited=True)
            return
        if not error.retryable:
            await self._fail(envelope, record, error)
            return
        if record.failures > record.max_retries:
            message = f"{error.message}; gave up after {record.attempts} attempts"
            await self._fail(envelope, record, error.model_copy(update={"retryable": False, "message": message}))
            raise Reject(f"delivery {record.delivery_id} failed after {record.attempts} attempts: {error.message}")
        delay = max(self._backoff(record.failures), error.retry_after_s or 0.0)
        log.warning("delivery.retry", attempt=record.attempts, delay_s=round(delay, 3), status=error.status_code)
        await self._requeue(envelope, record, delay_s=delay, error=error)

    def _backoff(self, failures: int) -> float:
        """Exponential, capped, with full jitter on the upper half (replicas do not retry in lockstep)."""
        ceiling: float = min(self.settings.of_retry_cap_s, self.settings.of_retry_base_s * 2.0 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    # --- publishing --------------------------------------------------------------------------------------

    async def _requeue(
        self,
        envelope: Envelope,
        record: MessageRecord,
        *,
        delay_s: float,
        error: ErrorInfo | None = None,
        rate_limited: bool = False,
        held: bool = False,
        report: bool = True,
    ) -> None:
        """Publish the approval again, `delay_s` from now, and (when `report`) tell the router the new time."""
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        slot = utcnow() + timedelta(seconds=delay_s)
        moved = envelope.child(approval.model_copy(update={"slot_at": slot}), attempt=envelope.attempt + 1)
        await self.store.queue(
            record.delivery_id,
            scheduled_for=slot,
            bus_message_id=moved.id,
            error=error,
            rate_limited=rate_limited,
            held=held,
        )
        await self.bus.publish(moved, delay=delay_s)
        if report:
            scheduled = DeliveryScheduled(
                delivery_id=approval.delivery_id, recipient_id=approval.recipient_id, slot_at=slot, error=error
            )
            await self.bus.publish(envelope.child(scheduled))

    async def _fail(self, envelope: Envelope, record: MessageRecord, error: ErrorInfo) -> None:
        record = await self.store.failed(record.delivery_id, error)
        log.warning("delivery.failed", error_type=error.type.value, status=error.status_code, attempts=record.attempts)
        await self._report_final(envelope, record)

    async def _report_final(self, envelope: Envelope, record: MessageRecord) -> None:
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
        await self.bus.publish(envelope.child(payload))
