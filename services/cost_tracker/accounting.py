"""The accounting handlers: price each usage.recorded once, and note how each workflow ended.

usage.recorded       → a priced cost entry (once per message id) and its running totals, then the
                       thresholds and budgets those totals crossed, and the per-request thresholds the
                       call's own cost reached (limits.py); with `notify` (the usage of the text a
                       ?wait=true workflow ends with), the workflow's recorded cost sent to the requester
workflow.completed   → the workflow's outcome (campaign costs; "settled" for the gateway's ?wait=true)
workflow.failed        and the WorkflowCost metric; with `notify` (a ?wait=true), the workflow's recorded
workflow.cancelled     cost sent to the requester as a WorkflowCostReply, settled or not (it asks when not)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from contracts import Envelope, Message
from contracts.costs import WorkflowCost, WorkflowCostReply
from contracts.ids import is_user_id
from contracts.messages import Notify, UsageRecorded, WorkflowCancelled, WorkflowCompleted, WorkflowFailed
from libs.bus import Bus, BusError, Reject
from libs.telemetry import get_logger
from services.cost_tracker.limits import Limits
from services.cost_tracker.metrics import get_cost_metrics
from services.cost_tracker.model import CostEntry, WorkflowOutcome
from services.cost_tracker.prices import PriceTable
from services.cost_tracker.reports import Reports
from services.cost_tracker.store import CostStore

log = get_logger(__name__)


# The outcome status each end message records.
_ENDED_AS: dict[type, str] = {WorkflowCompleted: "completed", WorkflowFailed: "failed", WorkflowCancelled: "cancelled"}


class Accounting:
    def __init__(self, store: CostStore, prices: PriceTable, limits: Limits, *, bus: Bus | None = None) -> None:
        self._store = store
        self._prices = prices
        self._limits = limits
        self._bus = bus  # None: nobody is told their workflow's cost (the requester asks)
        self._reports = Reports(store, prices)

    async def on_usage(self, envelope: Envelope) -> Message | None:
        usage = envelope.payload
        assert isinstance(usage, UsageRecorded)
        if not is_user_id(envelope.user_id):
            # Without a user the cost cannot be attributed, and a user id spelling the global scope would add
            # to the global totals twice; the dead-letter queue keeps it for a replay.
            raise Reject(f"usage.recorded without a valid user_id ({envelope.user_id!r})")
        quote = self._prices.quote(usage.provider, usage.model)
        tokens = usage.usage
        entry = CostEntry(
            message_id=envelope.id,
            user_id=envelope.user_id,
            workflow_id=envelope.workflow_id,
            generation_id=usage.generation_id,
            workflow_type=usage.workflow_type,
            provider=usage.provider,
            model=usage.model,
            prompt_tokens=tokens.prompt_tokens,
            completion_tokens=tokens.completion_tokens,
            tokens_estimated=tokens.estimated,
            price_estimated=not quote.known,
            price_entry=quote.entry,
            prompt_price_per_1k=quote.price.prompt_per_1k,
            completion_price_per_1k=quote.price.completion_per_1k,
            cost_usd=quote.price.cost(tokens.prompt_tokens, tokens.completion_tokens, tokens.cached_prompt_tokens),
            occurred_at=envelope.occurred_at,
            cached_prompt_tokens=min(tokens.cached_prompt_tokens, tokens.prompt_tokens),
            cached_price_per_1k=quote.price.cached_rate,
        )
        totals = await self._store.record_usage(entry)
        if usage.notify is not None and self._bus is not None and envelope.workflow_id is not None:
            # Recorded (now or on an earlier delivery of this message): the waiting requester hears the cost
            # now, while the router is still finishing the workflow, instead of one hop after its end.
            await self._tell_cost(
                self._bus, envelope, usage.notify, self._reports.recorded(envelope.workflow_id, envelope.user_id)
            )
        if totals is None:
            log.info("cost.usage.duplicate", message_id=str(envelope.id))
            return None
        get_cost_metrics().record(
            provider=usage.provider.value, model=usage.model, cost_usd=entry.cost_usd, priced=quote.known
        )
        if not quote.known:
            log.warning("cost.model.unpriced", provider=usage.provider.value, model=usage.model, entry=quote.entry)
        log.info(
            "cost.usage.recorded",
            provider=usage.provider.value,
            model=usage.model,
            prompt_tokens=entry.prompt_tokens,
            completion_tokens=entry.completion_tokens,
            cached_prompt_tokens=entry.cached_prompt_tokens,
            cost_usd=str(entry.cost_usd),
            price_estimated=entry.price_estimated,
        )
        await self._limits.on_totals(totals)
        await self._limits.on_entry(entry)
        return None

    async def on_workflow_end(self, envelope: Envelope) -> Message | None:
        end = envelope.payload
        assert isinstance(end, WorkflowCompleted | WorkflowFailed | WorkflowCancelled)
        if envelope.workflow_id is None or not is_user_id(envelope.user_id):
            raise Reject(f"{envelope.type} without a workflow_id and a valid user_id")
        usage = end.usage if isinstance(end, WorkflowCompleted) else None
        outcome = WorkflowOutcome(
            workflow_id=envelope.workflow_id,
            user_id=envelope.user_id,
            status=_ENDED_AS[type(end)],
            provider=end.provider if isinstance(end, WorkflowCompleted) else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            duration_ms=end.duration_ms,
            finished_at=envelope.occurred_at,
            experiment_id=None if isinstance(end, WorkflowCancelled) else end.experiment_id,
            arm=None if isinstance(end, WorkflowCancelled) else end.arm,
            error_type=end.error.type.value if isinstance(end, WorkflowFailed) else None,
        )
        recording = self._store.record_outcome(outcome)
        if end.notify is not None and self._bus is not None:
            # The cost told is read from the usage entries, not from the outcome row: told while the outcome
            # is being written, the waiting requester hears it one statement sooner.
            told = self._tell_cost(self._bus, envelope, end.notify, self._reports.ended(outcome))
            spend, _ = await asyncio.gather(recording, told)
        else:
            spend = await recording
        if spend is not None and spend.calls:
            provider = outcome.provider or spend.last_provider
            assert provider is not None  # calls > 0: the latest entry has one
            get_cost_metrics().record_workflow_cost(provider=provider.value, cost_usd=spend.cost_usd)
        return None

    async def _tell_cost(self, bus: Bus, cause: Envelope, notify: Notify, reading: Awaitable[WorkflowCost]) -> None:
        """Send a workflow's recorded cost (`reading` reads it) to whoever asked to be told (the gateway's
        ?wait=true). Best effort: the handler fails if what the cost is read from is not stored (and tells
        again on the redelivery), and a requester that hears nothing, or a cost that does not include its
        workflow's final usage, asks."""
        cost = await reading
        try:
            await bus.reply(notify.reply_to, notify.cost_correlation_id, cause.child(WorkflowCostReply(data=cost)))
        except BusError as exc:
            log.warning("cost.notify_failed", error=f"{type(exc).__name__}: {exc}")
