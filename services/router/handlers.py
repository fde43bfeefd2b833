"""The router's message handlers: load the workflow, let the engine decide, store the change with the
handled message id and its outbox in one write, then publish the outbox.

    workflow.requested     → persists the workflow, replies WorkflowAccepted (after the commit: a status
                             query right after the reply finds it); with `notify` (?wait=true) the
                             workflow's end is told there too (`_tell_requester`, after the terminal commit)
    generation.completed   → completed with WorkflowCompleted, or (send_to_onlyfans) delivering with one
                             delivery.requested per recipient (delivery.py)
    generation.failed      → the fallback matrix: another attempt, or failed with WorkflowFailed
    workflow.fanout        → one chunk of a campaign's delivery.requested, and the next chunk's fan-out
    workflow.status.query  → WorkflowStatusReply (queries.py: found only for the owner or an admin; with
                             wait_s, sent when the workflow is terminal, holding no prefetch slot)
    budget.status          → stored; later requests are refused or downgraded accordingly
    routing.policy         → stored if newer; later requests of its workflow types go to its provider and
                             model (policy.py)
    delivery.scheduled / delivery.completed / delivery.failed
                           → the delivery's row and the workflow's counters in one store write; then, when
                             the counters say every delivery is finished, the workflow settles
    delivery.list.query    → DeliveryListReply: a keyset page of a workflow's deliveries (queries.py)
    workflow.list.query    → WorkflowListReply: a keyset page of the requester's workflows (queries.py)
    workflow.cancel / workflow.retry
                           → an operator's cancel, or the retry of a failed workflow (control.py)

A personalized campaign's generation results are matched to their delivery (by the request they answer)
and written with `store.write_text`; the workflow's own generation results go through the cycle below.

Deadlines are enforced by a sweep (`fail_overdue`, every ROUTER_DEADLINE_SWEEP_S on each replica): the
running workflows past their deadline are read from the store, and each is handled (`on_deadline`) like a
message — a workflow.timer the sweep makes itself, never published, whose id is derived from the workflow and
its deadline, so replicas sweeping at the same time de-duplicate like any redelivered message. The workflow
fails with the reason unless already finished; a delivering one ends by its counts instead (delivery.py).

A message already handled (its id is recorded) changes nothing: its recorded outbox is published again,
which is how a router killed between commit and publish still finishes the workflow.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from contracts import Envelope, Message
from contracts.costs import RoutingPolicy
from contracts.enums import BudgetAction, ErrorType, WorkflowStatus
from contracts.ids import is_user_id
from contracts.messages import (
    BudgetStatus,
    DeliveryCompleted,
    DeliveryFailed,
    DeliveryListQuery,
    DeliveryScheduled,
    ErrorInfo,
    GenerationCompleted,
    GenerationFailed,
    WorkflowAccepted,
    WorkflowCancelRequest,
    WorkflowFanout,
    WorkflowListQuery,
    WorkflowRequested,
    WorkflowRetryRequest,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowTimer,
)
from libs.bus import Bus, BusError, Handler, Reject
from libs.flags import FlagClient
from libs.storage import DatabaseError
from libs.telemetry import get_logger, workflow_span
from services.router.budget import BudgetBook
from services.router.constants import (
    BREAKER_FAILURES,
    DEADLINE_NAMESPACE,
    DEADLINE_SWEEP_BATCH,
    FANOUT_CHUNK,
    MAX_CONFLICT_RETRIES,
    SERVICE_NAME,
    STATUS_DELIVERIES_LISTED,
    TERMINAL_CACHE_SIZE,
    WRITTEN_CACHE_SIZE,
)
from services.router.control import Control
from services.router.delivery import Report, settle_id
from services.router.engine import Engine
from services.router.errors import ConcurrentUpdate
from services.router.metrics import get_router_metrics
from services.router.outbox import Outgoing, publish_all
from services.router.policy import PolicyBook
from services.router.queries import Queries
from services.router.selection import select_provider
from services.router.state import Change, DeliveryRow, Workflow
from services.router.store import GLOBAL_SCOPE, BudgetRecord, Counted, WorkflowStore

log = get_logger(__name__)

Decide = Callable[[Workflow, datetime], Change | None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _refused(error_type: ErrorType, message: str) -> WorkflowAccepted:
    return WorkflowAccepted(accepted=False, error=ErrorInfo(type=error_type, message=message, retryable=False))


def _budget_message(record: BudgetRecord | None) -> str:
    if record is None:
        return "budget spent"
    who = "the global" if record.scope == GLOBAL_SCOPE else "the user's"
    limit = f" of {record.limit_usd}" if record.limit_usd is not None else ""
    return f"{who} {record.period.value} budget is spent ({record.spent_usd}{limit} USD)"


class Router:
    def __init__(
        self,
        bus: Bus,
        store: WorkflowStore,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        flags: FlagClient | None = None,
    ) -> None:
        self.bus = bus
        self.flags = flags
        self.store = store
        self.engine = engine
        self.budgets = BudgetBook(store, refresh_s=engine.settings.router_budget_refresh_s)
        self.policies = PolicyBook(store, refresh_s=engine.settings.router_budget_refresh_s)
        engine.models = self.policies.choice
        self.clock = clock
        self._terminal: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._written: OrderedDict[uuid.UUID, Workflow] = OrderedDict()
        self.queries = Queries(bus, store, clock)
        self.control = Control(store, self._apply, self.on_requested)
        self._metrics = get_router_metrics()

    def handlers(self) -> dict[str, Handler]:
        return {
            WorkflowRequested.TYPE: self.on_requested,
            GenerationCompleted.TYPE: self.on_generation_result,
            GenerationFailed.TYPE: self.on_generation_result,
            WorkflowFanout.TYPE: self.on_fanout,
            WorkflowStatusQuery.TYPE: self.queries.on_status_query,
            DeliveryListQuery.TYPE: self.queries.on_delivery_list,
            WorkflowListQuery.TYPE: self.queries.on_list,
            WorkflowCancelRequest.TYPE: self.control.on_cancel,
            WorkflowRetryRequest.TYPE: self.control.on_retry,
            BudgetStatus.TYPE: self.on_budget_status,
            RoutingPolicy.TYPE: self.on_routing_policy,
            DeliveryScheduled.TYPE: self.on_delivery_report,
            DeliveryCompleted.TYPE: self.on_delivery_report,
            DeliveryFailed.TYPE: self.on_delivery_report,
        }

    # --- handlers ----------------------------------------------------------------------------------------

    async def on_requested(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        assert isinstance(request, WorkflowRequested)
        if envelope.workflow_id is None or envelope.user_id is None:
            return _refused(ErrorType.INVALID_REQUEST, "workflow.requested needs a workflow_id and a user_id")
        if not is_user_id(envelope.user_id):  # never the global budget scope "*"
            return _refused(ErrorType.INVALID_REQUEST, "the user_id is not a user id (contracts.ids)")
        intent = request.intent
        if intent.send_to_onlyfans and not (intent.recipient_id or intent.recipient_ids or request.recipients):
            return _refused(ErrorType.INVALID_REQUEST, "send_to_onlyfans needs recipient_id or recipient_ids")
        action, budget = await self.budgets.action_for(envelope.user_id)
        if action is BudgetAction.BLOCK:
            existing = await self._existing(envelope)  # a retried request for a workflow accepted earlier
            if existing is not None:
                return existing
            log.info("workflow.refused", reason="budget", scope=budget.scope if budget else None)
            self._metrics.record_refusal(reason=ErrorType.COST_LIMIT_EXCEEDED.value)
            return _refused(ErrorType.COST_LIMIT_EXCEEDED, _budget_message(budget))
        now = self.clock()
        await self.policies.refresh()
        selection = select_provider(
            request.intent,
            self.engine.breakers,
            downgrade=action is BudgetAction.DOWNGRADE,
            policy=self.policies.rule_for(request.intent.type),
            assigned=self.policies.assign(request.intent.type, envelope.user_id, str(envelope.workflow_id)),
        )
        change = self.engine.start(envelope, request, selection, now)
        try:
            created = await self.store.create(change, envelope.id)
        except DatabaseError as exc:
            if not exc.permanent:
                raise
            # The database refuses this workflow's data whatever we do: refused now, never accepted and lost.
            log.warning("workflow.refused", reason="unstorable", error=str(exc))
            return _refused(ErrorType.INVALID_REQUEST, "the workflow's data cannot be stored")
        if created:
            await self._committed(change, now)
            workflow = change.result()
            listed = change.new_deliveries if workflow.tally.total <= STATUS_DELIVERIES_LISTED else ()
            view = workflow.to_view(listed, now=now)
            return WorkflowAccepted(accepted=True, workflow=view, notifies=workflow.notify is not None)
        existing = await self._existing(envelope)
        if existing is None:
            raise ConcurrentUpdate(f"workflow {envelope.workflow_id} neither created nor found")
        return existing

    async def on_generation_result(self, envelope: Envelope) -> Message | None:
        result = envelope.payload
        assert isinstance(result, GenerationCompleted | GenerationFailed)
        if envelope.workflow_id in self._terminal:
            log.info("generation.result_ignored", reason="workflow finished", provider=result.provider.value)
            return None
        if await self._on_text(envelope):
            return None
        fed = False

        def decide(workflow: Workflow, now: datetime) -> Change | None:
            nonlocal fed
            if not fed:  # once per handled message, however many times a write conflict makes us re-decide
                self._feed_breaker(result)
                fed = True
            reason = Engine.ignore_reason(workflow, envelope)
            if reason is not None:
                log.info(
                    "generation.result_ignored",
                    reason=reason,
                    provider=result.provider.value,
                    causation_id=str(envelope.causation_id),
                    current_generation_id=str(workflow.generation_id),
                )
                return None
            if isinstance(result, GenerationCompleted):
                return self.engine.on_completed(workflow, envelope, now)
            return self.engine.on_failed(workflow, envelope, now)

        # Only a completed generation takes the shortcut: deciding a failure may claim a circuit's probe, which
        # a stale copy must not do.
        written = self._written_copy(envelope) if isinstance(result, GenerationCompleted) else None
        await self._apply(envelope, decide, written=written)
        return None

    async def on_deadline(self, envelope: Envelope) -> None:
        """The deadline of `envelope`'s workflow (a deadline timer made by the sweep, not a bus message)."""
        assert isinstance(envelope.payload, WorkflowTimer) and envelope.payload.purpose == "deadline"
        if envelope.workflow_id in self._terminal or envelope.workflow_id is None:
            return
        next_open = await self.store.next_open(envelope.workflow_id)

        def decide(workflow: Workflow, now: datetime) -> Change | None:
            return self.engine.on_deadline(workflow, envelope, now, next_open, held=self._held(workflow))

        await self._apply(envelope, decide)

    def _held(self, workflow: Workflow) -> str | None:
        """Why `workflow`'s work waits now (the kill switch; for one that delivers, its account paused)."""
        if self.flags is None:
            return None
        return self.flags.held(workflow.sends_as if workflow.tally.total else None)

    async def _on_text(self, envelope: Envelope) -> bool:
        """Handle a personalized campaign's text result; False when the result is not one (the workflow's own
        generation). Rows, successor, counters and outbox are one write; a result that finds its row no
        longer waiting for it was handled before (its outbox is re-published) or superseded (ignored)."""
        workflow_id = envelope.workflow_id
        if workflow_id is None or envelope.causation_id is None:
            return False  # refused by the cycle below
        workflow = self._written.get(workflow_id) or await self.store.get(workflow_id)
        if workflow is None or not workflow.personalized:
            return False
        result = envelope.payload
        assert isinstance(result, GenerationCompleted | GenerationFailed)
        row = await self.store.delivery_for(workflow_id, envelope.causation_id)
        update = None
        if row is not None and row.text is None and not row.is_final:
            self._feed_breaker(result)
            successor = await self.store.delivery_at(workflow_id, self.engine.delivery.successor_seq(row))
            now = self.clock()
            update = self.engine.on_text(workflow, row, successor, envelope, now)
            counted = await self.store.write_text(workflow_id, envelope.id, update)
            if counted is not None:
                await publish_all(self.bus, tuple(update.change.outbox), now)
                log.info("delivery.text", seq=row.seq, outcome="written" if update.generated else
                         "given_up" if update.ungenerated else "retry")  # fmt: skip
                await self._settle(envelope, counted)
                return True
        loaded = await self.store.load(workflow_id, envelope.id)
        if loaded.outbox is not None:
            log.info("message.duplicate", type=envelope.type, republished=len(loaded.outbox))
            await self._republish(loaded.outbox)
        else:
            log.info("generation.result_ignored", reason="superseded text", provider=result.provider.value)
        return True

    async def on_delivery_report(self, envelope: Envelope) -> Message | None:
        """The delivery's row and the counters in one write (a report on a finished workflow is recorded
        too), then the workflow settles if the counters say it is done."""
        if envelope.workflow_id is None:
            raise Reject(f"{envelope.type} without a workflow_id")
        report = Report.of(envelope.payload)
        grace_s = self.engine.settings.router_delivery_grace_s
        counted = await self.store.report(envelope.workflow_id, envelope.id, report, grace_s, self.clock())
        if counted is None:
            raise Reject(f"{envelope.type} for unknown workflow {envelope.workflow_id}")
        if not counted.applied:
            log.info("message.duplicate", type=envelope.type, republished=0)
        else:
            self._metrics.record_delivery_report(state=envelope.type.removeprefix("delivery."))
        await self._settle(envelope, counted)  # a duplicate too: its first handler may have died before this
        return None

    async def _settle(self, envelope: Envelope, counted: Counted) -> None:
        """Make the transitions the counters call for (delivery.py `settle`), each once: under an id derived
        from the workflow and the status it settles from, whichever report notices first. A settle from
        generating that raced the last report (it read the counters just before) leaves the workflow
        delivering with everything finished: that is settled at once too, not at the deadline."""
        assert envelope.workflow_id is not None
        tally, status = counted.tally, counted.status
        for _ in range(2):  # generating → delivering, then delivering → completed / failed
            done = status is WorkflowStatus.DELIVERING and tally.all_finished
            texts_done = status is WorkflowStatus.GENERATING and tally.total > 0 and tally.texts_done
            if not (done or texts_done):
                return
            settling = envelope.model_copy(update={"id": settle_id(envelope.workflow_id, status)})
            first_failed = None
            if tally.all_finished and not tally.sent:
                first_failed = await self.store.first_failed(envelope.workflow_id)
            decide = functools.partial(self._decide_settle, cause=settling, first_failed=first_failed)
            workflow = await self._apply(settling, decide)
            if workflow is None:
                return
            tally, status = workflow.tally, workflow.status

    def _decide_settle(
        self, workflow: Workflow, now: datetime, *, cause: Envelope, first_failed: DeliveryRow | None
    ) -> Change | None:
        return self.engine.settle(workflow, cause, now, first_failed)

    async def on_fanout(self, envelope: Envelope) -> Message | None:
        """One chunk of a campaign's deliveries requested; its outbox recorded with the message, so a
        redelivered chunk re-publishes exactly what it published (no duplicate, none skipped)."""
        fanout = envelope.payload
        assert isinstance(fanout, WorkflowFanout)
        if envelope.workflow_id is None:
            raise Reject(f"{envelope.type} without a workflow_id")
        loaded = await self.store.load(envelope.workflow_id, envelope.id)
        if loaded.outbox is None:
            if loaded.workflow is None:
                raise Reject(f"{envelope.type} for unknown workflow {envelope.workflow_id}")
            wait_s = self.engine.delivery.fanout_wait_s(loaded.workflow, fanout.from_seq, envelope.attempt - 1)
            if wait_s is not None:  # nothing recorded: the same message comes back and is handled when it may go
                await self.bus.publish(envelope.model_copy(update={"attempt": envelope.attempt + 1}), delay=wait_s)
                log.debug("delivery.fanout_paced", from_seq=fanout.from_seq, wait_s=wait_s)
                return None
            after = fanout.from_seq - 1 if fanout.from_seq else None
            rows = await self.store.deliveries(envelope.workflow_id, after_seq=after, limit=FANOUT_CHUNK)
            now = self.clock()
            change = self.engine.fanout(loaded.workflow, envelope, fanout.from_seq, rows, now)
            outbox = tuple(change.outbox)
            if await self.store.record(envelope.workflow_id, envelope.id, outbox):
                await publish_all(self.bus, outbox, now)
                log.info("delivery.fanout", from_seq=fanout.from_seq, requested=len(rows))
                return None
            loaded = await self.store.load(envelope.workflow_id, envelope.id)  # a concurrent duplicate won
        await self._republish(loaded.outbox or ())
        return None

    async def close(self) -> None:
        """Stop answering waiting status queries (their requesters time out and ask another replica)."""
        await self.queries.close()

    async def on_budget_status(self, envelope: Envelope) -> Message | None:
        status = envelope.payload
        assert isinstance(status, BudgetStatus)
        record = await self.budgets.record(status, envelope.occurred_at)
        log.info("budget.status", scope=record.scope, period=record.period.value, action=record.action.value)
        return None

    async def on_routing_policy(self, envelope: Envelope) -> Message | None:
        policy = envelope.payload
        assert isinstance(policy, RoutingPolicy)
        kept = await self.policies.record(policy, envelope.occurred_at)
        log.info("routing.policy", version=policy.version, rules=len(policy.rules), kept=kept)
        return None

    # --- the deadline sweep ------------------------------------------------------------------------------

    async def fail_overdue(self) -> int:
        """One pass of the deadline sweep: fail up to DEADLINE_SWEEP_BATCH running workflows whose deadline
        has passed; how many were found."""
        overdue = await self.store.overdue(self.clock(), DEADLINE_SWEEP_BATCH)
        for workflow in overdue:
            timer = Envelope.new(
                WorkflowTimer(purpose="deadline"),
                workflow_id=workflow.workflow_id,
                user_id=workflow.user_id,
                id=uuid.uuid5(DEADLINE_NAMESPACE, f"{workflow.workflow_id}/{workflow.deadline_at.isoformat()}"),
            )
            try:
                with workflow_span("router.deadline", trace_id=workflow.trace_id, workflow_id=str(workflow.workflow_id),
                                   component=SERVICE_NAME, user_id=workflow.user_id):  # fmt: skip
                    await self.on_deadline(timer)
            except Exception as exc:  # one workflow's trouble (a write conflict) must not hold up the others
                log.warning("deadline.not_applied", workflow_id=str(workflow.workflow_id), error=repr(exc))
        return len(overdue)

    # --- the load / decide / store / publish cycle ---------------------------------------------------------

    async def _apply(self, envelope: Envelope, decide: Decide, *, written: Workflow | None = None) -> Workflow | None:
        """Decide on the stored workflow and save the change. `written` (this replica's copy of the workflow as
        it last wrote it) is tried first, without reading the database (WRITTEN_CACHE_SIZE)."""
        if envelope.workflow_id is None:
            raise Reject(f"{envelope.type} without a workflow_id")
        if written is not None:
            now = self.clock()
            change = decide(written, now)
            if change is not None and await self.store.save(change, envelope.id):
                await self._committed(change, now)
                return change.result()
            # The copy was stale or the message was handled before: nothing was written; read and decide again.
        for _ in range(MAX_CONFLICT_RETRIES):
            loaded = await self.store.load(envelope.workflow_id, envelope.id)
            if loaded.outbox is not None:
                log.info("message.duplicate", type=envelope.type, republished=len(loaded.outbox))
                await self._republish(loaded.outbox)
                return loaded.workflow
            if loaded.workflow is None:
                raise Reject(f"{envelope.type} for unknown workflow {envelope.workflow_id}")
            now = self.clock()
            change = decide(loaded.workflow, now)
            if change is None:
                if loaded.workflow.is_terminal:
                    self._remember_terminal(loaded.workflow.workflow_id)
                return loaded.workflow
            if await self.store.save(change, envelope.id):
                await self._committed(change, now)
                return change.result()
            log.info("workflow.write_conflict", type=envelope.type)
        raise ConcurrentUpdate(f"workflow {envelope.workflow_id} kept changing; {envelope.type} will be redelivered")

    async def _existing(self, envelope: Envelope) -> WorkflowAccepted | None:
        """The reply to a workflow.requested whose workflow exists already (None: it does not)."""
        assert envelope.workflow_id is not None
        loaded = await self.store.load(envelope.workflow_id, envelope.id)
        if loaded.outbox is not None:
            await self._republish(loaded.outbox)
        workflow = loaded.workflow
        if workflow is None:
            return None
        if workflow.user_id != envelope.user_id:
            return _refused(ErrorType.INVALID_REQUEST, "the workflow id belongs to another user")
        log.info("workflow.duplicate_request", status=workflow.status.value)
        return WorkflowAccepted(accepted=True, workflow=await self.queries.view(workflow))

    async def _committed(self, change: Change, now: datetime) -> None:
        """After the write: publish the outbox, then log and measure what happened. A requester waiting for
        the end is told first and while the outbox is being confirmed, not after: both follow from the
        stored state."""
        workflow = change.result()
        publishing = publish_all(self.bus, tuple(change.outbox), now)
        if workflow.is_terminal and workflow.notify is not None:
            await asyncio.gather(self._tell_requester(change.cause, workflow, now), publishing)
        else:
            await publishing
        for event in change.events:
            log.info(f"workflow.{event.name}", status=event.to_status.value, **event.detail)
        if not workflow.is_terminal:
            self._remember_written(workflow)
        else:
            self._written.pop(workflow.workflow_id, None)
            self._remember_terminal(workflow.workflow_id)
            self.queries.finished(workflow)
            self._metrics.record_workflow(
                provider=workflow.current_provider.value if workflow.current_provider else "none",
                success=workflow.status is WorkflowStatus.COMPLETED,
                duration_ms=workflow.duration_ms(now),
            )
            if workflow.status is WorkflowStatus.FAILED and workflow.error is not None:
                deadline = isinstance(change.cause.payload, WorkflowTimer)
                self._metrics.record_failure(error_type=workflow.error.type.value, deadline=deadline)

    async def _tell_requester(self, cause: Envelope, workflow: Workflow, now: datetime) -> None:
        """Send a finished workflow's view to whoever asked to be told (`notify`: the gateway's ?wait=true),
        so it need not ask. Best effort: the state is stored, and a requester that hears nothing asks."""
        notify = workflow.notify
        if notify is None:
            return
        reply = cause.child(WorkflowStatusReply(found=True, workflow=workflow.to_view(now=now)))
        try:
            await self.bus.reply(notify.reply_to, notify.end_correlation_id, reply)
        except BusError as exc:
            log.warning("workflow.notify_failed", error=f"{type(exc).__name__}: {exc}")

    async def _republish(self, outbox: tuple[Outgoing, ...]) -> None:
        if outbox:
            await publish_all(self.bus, outbox, self.clock())

    def _feed_breaker(self, result: GenerationCompleted | GenerationFailed) -> None:
        breaker = self.engine.breakers[result.provider]
        if isinstance(result, GenerationCompleted):
            breaker.record_success()
        elif result.error.type in BREAKER_FAILURES:
            breaker.record_failure()

    def _written_copy(self, envelope: Envelope) -> Workflow | None:
        """This replica's copy of the workflow as it last wrote it, if that state waits for this result."""
        written = self._written.pop(envelope.workflow_id, None) if envelope.workflow_id else None
        return written if written is not None and Engine.ignore_reason(written, envelope) is None else None

    def _remember_written(self, workflow: Workflow) -> None:
        self._written[workflow.workflow_id] = workflow
        self._written.move_to_end(workflow.workflow_id)
        if len(self._written) > WRITTEN_CACHE_SIZE:
            self._written.popitem(last=False)

    def _remember_terminal(self, workflow_id: uuid.UUID) -> None:
        self._terminal[workflow_id] = None
        self._terminal.move_to_end(workflow_id)
        if len(self._terminal) > TERMINAL_CACHE_SIZE:
            self._terminal.popitem(last=False)
