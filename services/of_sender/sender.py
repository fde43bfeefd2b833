"""The of-sender's handler: one delivery.approved → at most one message on the platform, within the limits.

    delivery.approved ─► record (pending) ─► found `sending`? look it up first (below) ─► last check on
    actual send times ─┬─ refused ─► re-queued at the time it fits
                       └─ allowed ─► attempt recorded
    ─► POST with Idempotency-Key = delivery id ─┬─ 2xx ─────────────► sent, delivery.completed
                                                ├─ 429 ─────────────► re-queued (onlyfans_rate_limited row),
                                                │                     then failed
                                                ├─ other 4xx ───────► failed, delivery.failed
                                                ├─ 5xx, unreachable ► re-queued with backoff, then failed +
                                                │                     dead-lettered
                                                └─ timeout, dropped ► outcome unknown: re-queued with backoff,
                                                                      still `sending`

"Re-queued" publishes the approval again, delayed (nothing waits unacknowledged), and tells the router the
new time with a delivery.scheduled. Every attempt counts as a send in the log, failed ones too (the platform
may have counted it): a retry also waits for the fan's spacing.

An unknown outcome is reconciled, never resent blindly. A delivery found `sending` — re-queued after a
timeout or a dropped connection, or redelivered because the sender died mid-request — is looked up on the
platform by its key, no sooner than OF_LOOKUP_DELAY_S after its request went out:

    look-up ─┬─ found ─────► sent, with the platform's message id; delivery.completed; nothing is sent again
             ├─ not found ─► that attempt failed: sent again through the last check (or failed, when the
             │               OF_MAX_RETRIES budget is spent)
             └─ failed ────► re-queued with backoff, still `sending`, looked up again; failing for
                             OF_LOOKUP_MAX_S after the send, the delivery fails and is dead-lettered (the
                             message may have arrived: an operator decides)

So exactly-once rests on the platform's look-up (platform.py says what it must offer), not on the platform
honouring Idempotency-Key — still sent on every attempt, as a second line of defence. It also rests on one
request in flight per delivery, which the record enforces rather than the bus (the bus hands a message to
one handler at a time, but a publisher that dies before its ack leaves two copies, and a handler whose
connection or SQS visibility lapsed may still be running while its message is redelivered):

- one approval owns a delivery: the record names it (`bus_message_id`: the first approval, then each
  re-published one). Any other approval is stale — superseded by a re-queue — and is acknowledged and
  dropped (`delivery.stale_approval`), never sent; the one exception is the approval that made the
  re-queue (`requeued_from`), which may only re-publish it (see publish.Publisher.requeue for why);
- the record's moves are compare-and-set on what the handler read (store.py): of two handlings racing —
  two copies of the owning approval, or an owner and a re-publishing predecessor — one records the attempt
  or the re-queue, and the other reads the record again and goes on from what it says now (usually: the
  request is out, so it re-queues itself to be looked up, or it is stale).

A redelivered approval of a finished delivery only repeats its report. The router dedupes reports by
delivery state.

Stopping (the feature flags, libs.flags): while the kill switch is off — stored, or HYBRID_ORCHESTRATOR_ENABLED
=false in this process's environment — or the delivery's account is paused, an approval is not sent: it is
re-queued HOLD_RECHECK_S later, spending no attempt and no retry, until the flags let it go (the router
hears of the hold once). It is asked twice, no I/O either time: before the last check, and again right
before the attempt is claimed, so a switch flipped during the check stops the send too. A resumed approval
goes through the last check on actual send times like any other, however late its slot.

Replanning: when an urgent delivery took a bulk delivery's slot, the rate-limiter sends its new, later slot
(delivery.replanned). It is recorded (store.replan) and returned with the record; an approval due before it
— the one delayed in the bus for the old slot — is re-queued to it, without a report (the rate-limiter told
the router). An approval handled before the new slot was recorded goes at its old slot; the last check
keeps the limits either way.

Cancelling: a workflow.cancelled is recorded (store.cancel); from then on the claim of an attempt refuses
its deliveries (store.sending raises WorkflowCancelled) and the approval is dropped without a report (the
router marked the deliveries cancelled). A request that went out before the cancel was recorded is
reported as usual.
"""

from __future__ import annotations

import random
import uuid

from contracts import Envelope, Message
from contracts.enums import ErrorType
from contracts.messages import (
    DeliveryApproved,
    DeliveryReplanned,
    ErrorInfo,
    WorkflowCancelled,
)
from libs.bus import Bus, Handler, Reject
from libs.flags import FlagClient
from libs.ratelimit import Check, DownAction, LimiterUnavailable, SendLog, when_down
from libs.ratelimit.metrics import get_ratelimit_metrics
from libs.telemetry import get_logger
from services.of_sender.config import OfSenderSettings
from services.of_sender.constants import HOLD_JITTER_S, HOLD_RECHECK_S, MAX_RECORD_CONFLICTS, RECHECK_SLACK_S
from services.of_sender.metrics import SEND_FAILED, SEND_HELD, SEND_RATE_LIMITED, SEND_SENT, get_sender_metrics
from services.of_sender.platform import NotSent, Platform, SendOutcome, Sent, Unknown
from services.of_sender.publish import Publisher
from services.of_sender.store import (
    FINAL,
    MessageRecord,
    MessageStatus,
    MessageStore,
    RecordChanged,
    from_ms,
    utcnow,
)
from services.of_sender.store import WorkflowCancelled as Fenced

log = get_logger(__name__)

SEND_LOG = "the send log (Redis)"  # what is unreachable, in the reasons the router hears


class Sender:
    def __init__(
        self,
        bus: Bus,
        store: MessageStore,
        send_log: SendLog,
        platform: Platform,
        settings: OfSenderSettings,
        *,
        bypass_log: SendLog,
        flags: FlagClient,
    ) -> None:
        self.bus = bus
        self.out = Publisher(bus, store)
        self.flags = flags
        self.store = store
        self.send_log = send_log
        self.bypass_log = bypass_log
        self.platform = platform
        self.settings = settings
        # Accounts this replica sent to while bypassing Redis: their Redis log lacks those sends, so it is
        # reloaded from the durable record before it is trusted again.
        self._bypassed: set[str] = set()

    def handlers(self) -> dict[str, Handler]:
        return {
            DeliveryApproved.TYPE: self.on_approved,
            DeliveryReplanned.TYPE: self.on_replanned,
            WorkflowCancelled.TYPE: self.on_cancelled,
        }

    async def on_cancelled(self, envelope: Envelope) -> Message | None:
        cancelled = envelope.payload
        assert isinstance(cancelled, WorkflowCancelled)
        new = await self.store.cancel(cancelled.workflow_id, cancelled.account_id, cancelled.cancelled_at)
        log.info("workflow.cancel_recorded", workflow_id=str(cancelled.workflow_id), new=new)
        return None

    async def on_replanned(self, envelope: Envelope) -> Message | None:
        replanned = envelope.payload
        assert isinstance(replanned, DeliveryReplanned)
        await self.store.replan(replanned.delivery_id, replanned.slot_at)
        log.info(
            "delivery.replan_recorded", delivery_id=str(replanned.delivery_id), slot_at=replanned.slot_at.isoformat()
        )
        return None

    async def on_approved(self, envelope: Envelope) -> Message | None:
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        for _ in range(MAX_RECORD_CONFLICTS):
            record = await self.store.open(envelope, approval, self.settings.of_max_retries)
            try:
                await self._handle(envelope, record)
            except RecordChanged as exc:
                # Another handling moved the record first, and the write that lost was not acted on
                # (each move is recorded before it is published or sent): go on from the record as it is.
                log.info("delivery.record_changed", delivery_id=str(record.delivery_id), reason=str(exc))
                continue
            return None
        raise RecordChanged(f"delivery {approval.delivery_id} kept changing; redelivered to read it later")

    async def _handle(self, envelope: Envelope, record: MessageRecord) -> None:
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        if record.bus_message_id != envelope.id:
            if record.requeued_from == envelope.id and record.status not in FINAL:
                await self.out.reissue(envelope, record)
                return
            log.warning(
                "delivery.stale_approval",
                delivery_id=str(record.delivery_id),
                approval_id=str(envelope.id),
                current_id=str(record.bus_message_id),
                status=record.status.value,
            )
            return
        if record.status in FINAL:
            log.info("delivery.duplicate_approval", status=record.status.value)
            await self.out.report_final(envelope, record)
            return
        if await self._replanned(envelope, record) or await self._held(envelope, record):
            return
        if record.status is MessageStatus.SENDING and not await self._reconcile(envelope, record):
            return
        # Random on purpose: every attempt is its own entry in the send log, a retry of the same delivery too.
        token = f"{approval.delivery_id}:{uuid.uuid4().hex[:12]}"
        try:
            check: Check | None = await self._last_check(self.send_log, approval, token)
        except LimiterUnavailable as exc:
            check = await self._limiter_down(envelope, record, token, exc)
        if check is None:
            return
        if not check.allowed:
            get_ratelimit_metrics().record_throttle(scope="last_check")
            await self.out.requeue(envelope, record, delay_s=check.wait_s + RECHECK_SLACK_S)
            return
        await self._send(envelope, record, token, check)

    async def _send(self, envelope: Envelope, record: MessageRecord, token: str, check: Check) -> None:
        """The last check passed: claim the attempt, make the request, act on its outcome."""
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        # Asked again after the check (no I/O): a switch flipped while it ran still stops this send. The
        # check's entry stays in the send log, counted as a send that never happened — on the safe side.
        if await self._held(envelope, record):
            return
        try:
            record = await self.store.sending(record, token, from_ms(check.now_ms))
        except Fenced:
            log.info("delivery.cancelled", delivery_id=str(record.delivery_id), workflow_id=str(record.workflow_id))
            return
        outcome = await self.platform.send(
            approval.account_id, approval.recipient_id, approval.text, idempotency_key=str(approval.delivery_id)
        )
        get_sender_metrics().record_send(account=approval.account_id, outcome=_send_outcome(outcome))
        if isinstance(outcome, Sent):
            record = await self.store.sent(record.delivery_id, outcome.platform_message_id, from_ms(check.now_ms))
            log.info("delivery.sent", attempts=record.attempts, delivery_id=str(record.delivery_id))
            await self.out.report_final(envelope, record)
        elif isinstance(outcome, Unknown):
            await self._outcome_unknown(envelope, record, outcome.error)
        else:
            await self._after_failure(envelope, record, outcome.error)

    async def _replanned(self, envelope: Envelope, record: MessageRecord) -> bool:
        """True when the rate-limiter moved the delivery to a slot still ahead: re-queued to it. Not while a
        request may be out (`sending`): that one is looked up first, whatever the plan says now."""
        if record.replanned_to is None or record.status is MessageStatus.SENDING:
            return False
        wait_s = (record.replanned_to - utcnow()).total_seconds()
        if wait_s <= 0:
            return False
        log.info("delivery.replanned_wait", delivery_id=str(record.delivery_id), wait_s=round(wait_s, 3))
        await self.out.requeue(envelope, record, delay_s=wait_s, report=False)
        return True

    # --- the flags ----------------------------------------------------------------------------------------

    async def _held(self, envelope: Envelope, record: MessageRecord) -> bool:
        """True when the flags hold the delivery (kill switch off, account paused): re-queued to ask again
        soon, its state, attempts and retries as they were; the router hears of it when the hold begins."""
        reason = self.flags.held(record.account_id)
        if reason is None:
            return False
        if record.workflow_id is not None and await self.store.is_cancelled(record.workflow_id):
            # Dropped now rather than re-queued every second for as long as the hold lasts.
            log.info("delivery.cancelled", delivery_id=str(record.delivery_id), workflow_id=str(record.workflow_id))
            return True
        first = record.paused_since is None
        if first:  # not at every round: a held campaign would log each delivery every second
            log.info("delivery.held", reason=reason, delivery_id=str(record.delivery_id))
            get_sender_metrics().record_send(account=record.account_id, outcome=SEND_HELD)
        await self.out.requeue(
            envelope,
            record,
            delay_s=HOLD_RECHECK_S + random.uniform(0, HOLD_JITTER_S),
            paused=True,
            unconfirmed=record.status is MessageStatus.SENDING,
            report=first,
        )
        return True

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
        decision = when_down(self.settings, record.held_since, utcnow())
        if decision.action is DownAction.BYPASS:
            log.warning("send_log.bypassed", reason=str(exc), limit=self.bypass_log.limits.account_limit)
            self._bypassed.add(approval.account_id)
            return await self._last_check(self.bypass_log, approval, token)
        error = decision.error(SEND_LOG, exc)
        if decision.action is DownAction.GIVE_UP:
            await self.out.fail(envelope, record, error)
            return None
        log.warning("send_log.unavailable", policy="hold", reason=str(exc), held_s=round(decision.held_s, 1))
        await self.out.requeue(
            envelope, record, delay_s=decision.retry_s, error=error, held=True, report=decision.begins
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
                await self.out.fail(envelope, record, error.model_copy(update={"retryable": False, "message": message}))
                return
            delay = max(settings.of_rate_limited_delay_s, error.retry_after_s or 0.0)
            log.warning("delivery.rate_limited", delay_s=delay, retry_after_s=error.retry_after_s)
            await self.out.requeue(envelope, record, delay_s=delay, error=error, rate_limited=True)
            return
        if not error.retryable:
            await self.out.fail(envelope, record, error)
            return
        await self._fail_if_spent(envelope, record, error)
        delay = max(self._backoff(record.failures), error.retry_after_s or 0.0)
        log.warning("delivery.retry", attempt=record.attempts, delay_s=round(delay, 3), status=error.status_code)
        await self.out.requeue(envelope, record, delay_s=delay, error=error)

    async def _fail_if_spent(self, envelope: Envelope, record: MessageRecord, error: ErrorInfo) -> None:
        """Past OF_MAX_RETRIES failed attempts: fail the delivery and dead-letter its approval (raises Reject)."""
        if record.failures <= record.max_retries:
            return
        message = f"{error.message}; gave up after {record.attempts} attempts"
        await self.out.fail(envelope, record, error.model_copy(update={"retryable": False, "message": message}))
        raise Reject(f"delivery {record.delivery_id} failed after {record.attempts} attempts: {error.message}")

    def _backoff(self, failures: int) -> float:
        """Exponential, capped, with full jitter on the upper half (replicas do not retry in lockstep)."""
        ceiling: float = min(self.settings.of_retry_cap_s, self.settings.of_retry_base_s * 2.0 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    # --- an unknown outcome --------------------------------------------------------------------------------

    async def _outcome_unknown(self, envelope: Envelope, record: MessageRecord, error: ErrorInfo) -> None:
        """The platform may have taken the message: re-queued as `sending`, to be looked up, not resent."""
        delay = max(self._backoff(record.failures), self._lookup_wait_s(record))
        log.warning("delivery.outcome_unknown", attempt=record.attempts, delay_s=round(delay, 3), reason=error.message)
        await self.out.requeue(envelope, record, delay_s=delay, error=error, unconfirmed=True)

    async def _reconcile(self, envelope: Envelope, record: MessageRecord) -> bool:
        """Look a delivery found `sending` up on the platform. True when its message is not there and may be
        sent again; False when this handling is over (found and reported, re-queued, or failed)."""
        approval = envelope.payload
        assert isinstance(approval, DeliveryApproved)
        early_s = self._lookup_wait_s(record)
        if early_s > 0:  # the request may still be on its way: a look-up now could miss it
            await self.out.requeue(envelope, record, delay_s=early_s, unconfirmed=True, report=False)
            return False
        found = await self.platform.lookup(approval.account_id, str(approval.delivery_id))
        if isinstance(found, Unknown):
            await self._lookup_failed(envelope, record, found.error)
            return False
        delivery_id = str(record.delivery_id)
        if isinstance(found, Sent):
            record = await self.store.sent(
                record.delivery_id, found.platform_message_id, record.attempted_at or utcnow()
            )
            log.info("delivery.reconciled", found=True, attempts=record.attempts, delivery_id=delivery_id)
            await self.out.report_final(envelope, record)
            return False
        log.info("delivery.reconciled", found=False, attempts=record.attempts, delivery_id=delivery_id)
        lost = ErrorInfo(
            type=ErrorType.ONLYFANS_API_ERROR,
            message="the request's outcome was lost; not on the platform",
            retryable=True,
        )
        await self._fail_if_spent(envelope, record, record.last_error or lost)
        return True

    async def _lookup_failed(self, envelope: Envelope, record: MessageRecord, error: ErrorInfo) -> None:
        """The look-up could not tell: ask again later, never send blindly; after OF_LOOKUP_MAX_S, give up."""
        unknown_s = (utcnow() - record.attempted_at).total_seconds() if record.attempted_at else 0.0
        if unknown_s >= self.settings.of_lookup_max_s:
            message = f"outcome unknown for {unknown_s:.0f}s (it may have arrived), look-up failing: {error.message}"
            await self.out.fail(envelope, record, error.model_copy(update={"retryable": False, "message": message}))
            raise Reject(f"delivery {record.delivery_id}: {message}")
        delay = self._backoff(max(record.failures, 1))
        log.warning("delivery.lookup_failed", delay_s=round(delay, 3), status=error.status_code, reason=error.message)
        await self.out.requeue(envelope, record, delay_s=delay, error=error, unconfirmed=True)

    def _lookup_wait_s(self, record: MessageRecord) -> float:
        """How long until the last request is OF_LOOKUP_DELAY_S old (assumption 3 in platform.py)."""
        if record.attempted_at is None:
            return 0.0
        age_s = (utcnow() - record.attempted_at).total_seconds()
        return max(0.0, self.settings.of_lookup_delay_s - age_s)


def _send_outcome(outcome: SendOutcome) -> str:
    if isinstance(outcome, Sent):
        return SEND_SENT
    if isinstance(outcome, NotSent) and outcome.error.type is ErrorType.RATE_LIMIT_EXCEEDED:
        return SEND_RATE_LIMITED
    return SEND_FAILED
