"""What delivery does to a workflow (docs/architecture.md#campaigns), as decisions on in-memory state: no I/O here.

A workflow with `send_to_onlyfans` has one delivery per recipient, each its own row (`DeliveryRow`, in
campaign order: `seq`), created with the workflow. Two ways to a text:

- **one text for everyone** (the default): the workflow's generation writes it; the workflow goes
  generated → delivering and requests the deliveries in chunks of FANOUT_CHUNK — each from a
  `workflow.fanout` message (the first emitted with the transition, each next by the previous chunk, and
  requested only while few enough earlier deliveries are unfinished: `fanout_wait_s`) (its id derived
  from the workflow and the chunk, so a router killed mid-fan-out resumes where it was, without a
  duplicate: the handled chunk's outbox is recorded and re-published, never recomputed).
- **a text per recipient** (`data.personalize` and several recipients): each delivery's text is generated
  from that recipient's `vars`, at most CAMPAIGN_GENERATION_CONCURRENCY at a time (the text for `seq`
  is requested when the one for `seq - concurrency` finished); each finished text is requested for
  delivery at once; a text that cannot be generated (the fallback matrix gave up) fails that delivery
  only. The workflow stays generating until every text is written or given up on, then delivering.

Reports (delivery.scheduled / completed / failed) update their delivery's row and the workflow's counters
(`Tally`) in one store statement — no read-modify-write of the workflow. Completion is decided from the
counters (`settle`): once every delivery is sent or failed the workflow is completed when at least one was
sent, failed when none was, and its terminal messages carry the counts. The deadline follows the
deliveries: each slot extends it to slot + ROUTER_DELIVERY_GRACE_S; each personalized text to now + the
workflow's deadline length (at most ROUTER_WORKFLOW_DEADLINE_S). At the deadline the unfinished deliveries are
failed and the workflow settles the same way: it never says failed when messages were sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from contracts import Envelope, Message
from contracts.enums import DeliveryState, ErrorType, RateLimiterState, WorkflowStatus
from contracts.messages import (
    DeliveryCompleted,
    DeliveryFailed,
    DeliveryRequested,
    DeliveryScheduled,
    ErrorInfo,
    Intent,
    Recipient,
    WorkflowCompleted,
    WorkflowFanout,
)
from services.router.constants import (
    FANOUT_AHEAD,
    FANOUT_CHUNK,
    FANOUT_NAMESPACE,
    FANOUT_RECHECK_GROWTH,
    FANOUT_RECHECK_MAX_S,
    FANOUT_RECHECK_S,
    SETTLE_NAMESPACE,
)
from services.router.state import Change, DeliveryRow, Workflow

S = WorkflowStatus
D = DeliveryState

Fail = Callable[..., None]
"""Engine._fail(change, error_type, message, **changes)."""


def recipients_of(intent: Intent, recipients: Sequence[Recipient] = ()) -> tuple[Recipient, ...]:
    """Every recipient, once, in the order given: `recipient_id`, `recipient_ids`, then `recipients` (whose
    vars win for an id given twice)."""
    given: dict[str, Recipient] = {}
    for rid in ([intent.recipient_id] if intent.recipient_id else []) + list(intent.recipient_ids):
        given.setdefault(rid, Recipient(id=rid))
    for recipient in recipients:
        given[recipient.id] = recipient
    return tuple(given.values())


def is_personalized(intent: Intent, recipients: int) -> bool:
    return intent.data.get("personalize") is True and recipients > 1


def delivery_id_for(workflow_id: uuid.UUID, recipient_id: str) -> uuid.UUID:
    """Stable: the same workflow and recipient always give the same id (the platform's Idempotency-Key)."""
    return uuid.uuid5(workflow_id, f"delivery:{recipient_id}")


def fanout_id(workflow_id: uuid.UUID, from_seq: int) -> uuid.UUID:
    return uuid.uuid5(FANOUT_NAMESPACE, f"{workflow_id}/{from_seq}")


def settle_id(workflow_id: uuid.UUID, status: WorkflowStatus) -> uuid.UUID:
    """The id under which a workflow in `status` settles: once, whichever report or sweep notices first."""
    return uuid.uuid5(SETTLE_NAMESPACE, f"{workflow_id}/{status.value}")


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report as the store applies it to the delivery's row and the workflow's counters."""

    delivery_id: uuid.UUID
    kind: DeliveryState  # SENT, FAILED, or PENDING / RATE_LIMITED for a (re)scheduled slot
    slot_at: datetime | None = None
    sent_at: datetime | None = None
    platform_message_id: str | None = None
    error: ErrorInfo | None = None

    @property
    def limiter(self) -> RateLimiterState | None:
        """What the report says of the rate limiter: a slot approved or held, a delivery refused for its
        unavailability; None: nothing (a send's outcome)."""
        limiter_down = self.error is not None and self.error.limiter_down
        if self.kind is D.FAILED:
            return RateLimiterState.REJECTED if limiter_down else None
        if self.kind is D.SENT:
            return None
        return RateLimiterState.THROTTLED if limiter_down else RateLimiterState.APPROVED

    @classmethod
    def of(cls, report: Message) -> Report:
        if isinstance(report, DeliveryCompleted):
            return cls(
                report.delivery_id, D.SENT, sent_at=report.sent_at, platform_message_id=report.platform_message_id
            )
        if isinstance(report, DeliveryFailed):
            return cls(report.delivery_id, D.FAILED, error=report.error)
        assert isinstance(report, DeliveryScheduled)
        limited = report.error is not None and report.error.type is ErrorType.RATE_LIMIT_EXCEEDED
        kind = D.RATE_LIMITED if limited else D.PENDING
        return cls(report.delivery_id, kind, slot_at=report.slot_at, error=report.error)


@dataclass(frozen=True, slots=True)
class TextUpdate:
    """What one personalized generation result does: to its delivery's row (`row`, matched by the generation
    request it answers, `answered`), to the successor's row (`successor`: claimed for its first request),
    and to the counters."""

    answered: uuid.UUID
    row: DeliveryRow
    change: Change = field(compare=False)  # its outbox: what to publish once written
    successor: DeliveryRow | None = None
    generated: int = 0
    ungenerated: int = 0
    deadline_at: datetime | None = None


@dataclass
class DeliveryDecisions:
    grace_s: float  # ROUTER_DELIVERY_GRACE_S
    concurrency: int  # CAMPAIGN_GENERATION_CONCURRENCY
    fail: Fail
    workflow_deadline_s: float  # ROUTER_WORKFLOW_DEADLINE_S

    # --- creation ----------------------------------------------------------------------------------------

    @staticmethod
    def rows_for(workflow_id: uuid.UUID, recipients: Sequence[Recipient]) -> tuple[DeliveryRow, ...]:
        return tuple(
            DeliveryRow(seq=seq, delivery_id=delivery_id_for(workflow_id, r.id), recipient_id=r.id, vars=r.vars)
            for seq, r in enumerate(recipients)
        )

    # --- one text for everyone -----------------------------------------------------------------------------

    def on_generated(self, change: Change, detail: dict[str, Any], **generated: Any) -> None:
        """The shared text exists: deliver it, chunk by chunk (the first chunk's fan-out is emitted now)."""
        change.move(S.GENERATED, "generation_completed", detail, **generated)
        workflow = change.workflow
        change.move(
            S.DELIVERING,
            "delivery_requested",
            {"deliveries": workflow.tally.total},
            provider_states=workflow.provider_states.model_copy(update={"rate_limiter": RateLimiterState.CHECKING}),
            deadline_at=max(workflow.deadline_at, change.at + timedelta(seconds=self.grace_s)),
        )
        change.emit(WorkflowFanout(from_seq=0), id=fanout_id(workflow.workflow_id, 0))

    @staticmethod
    def fanout_wait_s(workflow: Workflow, from_seq: int, waited: int) -> float | None:
        """None when the chunk from `from_seq` may be requested now; else how long its fan-out waits (it has
        waited `waited` times). A chunk waits while the campaign's earlier deliveries not finished (sent,
        failed or cancelled) are FANOUT_CHUNK + those finished or more (FANOUT_AHEAD at most): one chunk at
        first, more once it shows they drain. So it keeps that many in the rate-limiter's lane and the
        of-sender's delayed slots, never all of them ahead of other accounts' messages. Counters only grow
        and the deadline finishes a campaign, so a waiting chunk never waits for ever."""
        finished = workflow.tally.finished
        if workflow.status is not S.DELIVERING or from_seq - finished < min(FANOUT_CHUNK + finished, FANOUT_AHEAD):
            return None
        return min(FANOUT_RECHECK_S * FANOUT_RECHECK_GROWTH**waited, FANOUT_RECHECK_MAX_S)

    def fanout(self, change: Change, from_seq: int, rows: Sequence[DeliveryRow]) -> None:
        """Request the deliveries of one chunk (`rows`, from `from_seq`), and the next chunk's fan-out."""
        workflow = change.workflow
        for row in rows:
            if not row.is_final:
                self._request(change, row, workflow.result or "")
        next_seq = from_seq + FANOUT_CHUNK
        if next_seq < workflow.tally.total:
            change.emit(WorkflowFanout(from_seq=next_seq), id=fanout_id(workflow.workflow_id, next_seq))

    @staticmethod
    def _request(change: Change, row: DeliveryRow, text: str) -> None:
        workflow = change.workflow
        change.emit(
            DeliveryRequested(
                delivery_id=row.delivery_id, account_id=workflow.sends_as, recipient_id=row.recipient_id, text=text
            )
        )

    # --- a text per recipient ------------------------------------------------------------------------------

    def text_written(
        self, change: Change, row: DeliveryRow, text: str, successor: DeliveryRow | None, claim: SuccessorClaim
    ) -> TextUpdate:
        """A personalized text is written: request its delivery, and the next text."""
        written = replace(row, text=text)
        self._request(change, written, text)
        return self._text_done(change, row, written, successor, claim, generated=1)

    def text_given_up(
        self, change: Change, row: DeliveryRow, error: ErrorInfo, successor: DeliveryRow | None, claim: SuccessorClaim
    ) -> TextUpdate:
        """A personalized text cannot be generated: that delivery fails, the campaign goes on."""
        failed = replace(row, status=D.FAILED, error=error)
        return self._text_done(change, row, failed, successor, claim, ungenerated=1)

    def _text_done(
        self,
        change: Change,
        row: DeliveryRow,
        after: DeliveryRow,
        successor: DeliveryRow | None,
        claim: SuccessorClaim,
        *,
        generated: int = 0,
        ungenerated: int = 0,
    ) -> TextUpdate:
        """A text finished (`after`: its row now): the next recipient's text is requested, and the campaign's
        deadline moves on."""
        assert row.generation_id is not None  # the result was matched to the row by it
        return TextUpdate(
            answered=row.generation_id,
            row=after,
            change=change,
            successor=claim(change, successor),
            generated=generated,
            ungenerated=ungenerated,
            deadline_at=change.at + timedelta(seconds=self.deadline_s(change)),
        )

    def deadline_s(self, change: Change) -> float:
        """How long a personalized campaign may go without progress: its own deadline's length, at most
        ROUTER_WORKFLOW_DEADLINE_S. The length is read off the stored deadline, which earlier texts and slots
        pushed on: unbounded, each text would add the time elapsed since the creation to the next one's."""
        workflow = change.workflow
        return min((workflow.deadline_at - workflow.created_at).total_seconds(), self.workflow_deadline_s)

    def successor_seq(self, row: DeliveryRow) -> int:
        return row.seq + self.concurrency

    # --- settling from the counters ------------------------------------------------------------------------

    def settle(
        self, workflow: Workflow, cause: Envelope, now: datetime, first_failed: DeliveryRow | None = None
    ) -> Change | None:
        """The transition the counters call for: personalized texts all done → delivering; every delivery
        finished → completed / failed (`first_failed`: why, when none was sent). None: nothing to do yet."""
        tally = workflow.tally
        change: Change | None = None
        if workflow.status is S.GENERATING and workflow.personalized and tally.texts_done:
            change = Change(workflow, cause, now)
            change.move(S.GENERATED, "texts_generated", {"generated": tally.generated, "given_up": tally.ungenerated})
            change.move(
                S.DELIVERING,
                "delivery_requested",
                {"deliveries": tally.total - tally.ungenerated},
                deadline_at=max(workflow.deadline_at, now + timedelta(seconds=self.grace_s)),
            )
        current = change.workflow if change else workflow
        if tally.all_finished and current.status is S.DELIVERING:
            change = change or Change(workflow, cause, now)
            self.finish(change, first_failed)
        return change

    def finish(self, change: Change, first_failed: DeliveryRow | None = None) -> None:
        """Every delivery is finished: completed when one was sent, failed when none was — with the counts."""
        workflow = change.workflow
        tally = workflow.tally
        counts = tally.counts()
        detail = {"sent": tally.sent, "failed": tally.failed, "total": tally.total}
        if tally.sent:
            # Partly failed is still completed (messages went out), and says so: the counts, and an error.
            error = None
            if tally.failed:
                message = f"{tally.failed} of {tally.total} deliveries failed"
                error = ErrorInfo(type=ErrorType.ONLYFANS_API_ERROR, message=message, retryable=False)
            change.move(S.COMPLETED, "completed", detail, completed_at=change.at, error=error)
            change.emit(
                WorkflowCompleted(
                    provider=workflow.current_provider,
                    content=workflow.result,
                    duration_ms=workflow.duration_ms(change.at),
                    usage=workflow.usage,
                    deliveries=counts,
                    **workflow.arm_fields(),
                )
            )
            return
        first = first_failed.error if first_failed else None
        if change.closing is not None:  # the deadline: its reason first
            also = f"; first error: {first.message}" if first else ""
            self.fail(change, change.closing.type, change.closing.message + also, counts=counts)
            return
        who = f"all {tally.total} deliveries"
        if tally.total == 1 and first_failed is not None:
            who = f"the delivery to {first_failed.recipient_id}"
        reason = f"; first error: {first.message}" if first else ""
        self.fail(change, first.type if first else ErrorType.ONLYFANS_API_ERROR, f"{who} failed{reason}", counts=counts)


SuccessorClaim = Callable[[Change, DeliveryRow | None], DeliveryRow | None]
"""Engine's: request the successor's text (emitting into the change); the successor as claimed, or None."""


def unfinished_reason(workflow: Workflow, next_open: DeliveryRow | None) -> str:
    """For a deadline's reason: how many deliveries were not finished, the next planned slot, and what
    held that delivery back."""
    tally = workflow.tally
    slot = next_open.scheduled_for if next_open else None
    nxt = f", next scheduled for {slot.isoformat()}" if slot else ""
    last = f", last error: {next_open.error.message}" if next_open and next_open.error else ""
    left = f"{tally.total - tally.finished} of {tally.total}"
    return f"deadline passed while {workflow.status.value}: {left} deliveries unfinished{nxt}{last}"
