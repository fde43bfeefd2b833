"""The read-only cost reports: stats, breakdown, campaign (workflow) costs, forecast and optimization.

Every report sums the same cost entries (store.aggregate), so the figures agree with each other: the month
total of stats is the breakdown's total from the month's start, and the sum of the month's campaign costs.
`user_id` None means everyone's (only an admin gets there; queries.py decides).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from contracts.costs import (
    BreakdownGroup,
    BreakdownPart,
    CallCost,
    CampaignCosts,
    CostBreakdown,
    CostForecast,
    CostOptimization,
    CostStats,
    DailyCost,
    ProviderAmounts,
    SplitBy,
    WorkflowCost,
    final_usage_recorded,
)
from contracts.enums import CostPeriod, IntentType, Provider
from services.cost_tracker import forecast as fc
from services.cost_tracker.constants import AVERAGE_QUANTUM, FORECAST_LEVEL, PERCENT_QUANTUM
from services.cost_tracker.errors import NotFound
from services.cost_tracker.model import CostEntry, EntryFilter, Group, WorkflowOutcome, midnight, period_start
from services.cost_tracker.optimization import recommend
from services.cost_tracker.prices import PriceTable
from services.cost_tracker.store import CostStore

ZERO = Decimal(0)
GroupBy = Literal["provider", "model", "day", "type"]


def percent(part: Decimal, whole: Decimal) -> Decimal:
    return (part * 100 / whole).quantize(PERCENT_QUANTUM) if whole else ZERO


class Reports:
    def __init__(self, store: CostStore, prices: PriceTable) -> None:
        self._store = store
        self._prices = prices

    async def stats(self, user_id: str | None, now: datetime) -> CostStats:
        day = midnight(period_start(CostPeriod.DAILY, now))
        month = midnight(period_start(CostPeriod.MONTHLY, now))
        by_day_provider = await self._store.aggregate(EntryFilter(user_id, month), ("day", "provider"))
        today_key = day.date().isoformat()
        month_by_provider: dict[str, Decimal] = defaultdict(Decimal)
        today_by_provider: dict[str, Decimal] = defaultdict(Decimal)
        requests = today_requests = 0
        estimated = ZERO
        for group in by_day_provider:
            day_key, provider = group.keys
            month_by_provider[provider] += group.cost_usd
            requests += group.calls
            estimated += group.estimated_cost_usd
            if day_key == today_key:
                today_by_provider[provider] += group.cost_usd
                today_requests += group.calls
        month_all = await self._store.aggregate(EntryFilter(user_id, month), ())
        workflows = month_all[0].workflows if month_all else 0
        month_total = sum(month_by_provider.values(), ZERO)
        return CostStats(
            user_id=user_id,
            today_total=sum(today_by_provider.values(), ZERO),
            month_total=month_total,
            provider_breakdown=ProviderAmounts(**today_by_provider),
            month_provider_breakdown=ProviderAmounts(**month_by_provider),
            today_provider_breakdown=ProviderAmounts(**today_by_provider),
            requests=requests,
            today_requests=today_requests,
            workflows=workflows,
            average_cost_per_workflow=(month_total / workflows).quantize(AVERAGE_QUANTUM) if workflows else ZERO,
            estimated_total=estimated,
            day_start=day,
            month_start=month,
        )

    async def breakdown(
        self, user_id: str | None, start: datetime, end: datetime, group_by: GroupBy, split_by: SplitBy | None = None
    ) -> CostBreakdown:
        where = EntryFilter(user_id, start, end)
        groups = {g.keys[0]: g for g in await self._store.aggregate(where, (group_by,))}
        # Every provider, and every day of the range, is listed even when nothing was spent (charts).
        if group_by == "provider":
            keys = sorted(set(groups) | {p.value for p in Provider})
        elif group_by == "day":
            keys, day = [], start.astimezone(UTC).date()
            while midnight(day) < end:
                keys.append(day.isoformat())
                day += timedelta(days=1)
        else:
            keys = sorted(groups)
        total = sum((g.cost_usd for g in groups.values()), ZERO)
        parts = await self._parts(where, group_by, split_by, keys) if split_by else None
        return CostBreakdown(
            user_id=user_id,
            start=start,
            end=end,
            group_by=group_by,
            total=total,
            requests=sum(g.calls for g in groups.values()),
            prompt_tokens=sum(g.prompt_tokens for g in groups.values()),
            completion_tokens=sum(g.completion_tokens for g in groups.values()),
            groups=[
                _breakdown_group(key, groups.get(key), total, parts[key] if parts is not None else None) for key in keys
            ],
            split_by=split_by,
        )

    async def _parts(
        self, where: EntryFilter, group_by: GroupBy, split_by: SplitBy, keys: list[str]
    ) -> dict[str, list[BreakdownPart]]:
        """Each group's cost per `split_by` value: every provider, or every model with costs in the range, in
        every group (a zero where it spent nothing), so a chart's series have a point per group."""
        cells = {(g.keys[0], g.keys[1]): g for g in await self._store.aggregate(where, (group_by, split_by))}
        names = {name for _, name in cells} | ({p.value for p in Provider} if split_by == "provider" else set())
        return {
            key: [
                BreakdownPart(key=name, cost=cell.cost_usd, requests=cell.calls)
                if (cell := cells.get((key, name)))
                else BreakdownPart(key=name, cost=ZERO, requests=0)
                for name in sorted(names)
            ]
            for key in keys
        }

    async def campaign(self, user_id: str | None, workflow_id: uuid.UUID) -> WorkflowCost:
        """One workflow's cost with its calls; NotFound when it has no costs and no end, or is not theirs."""
        entries = await self._store.entries(workflow_id)
        outcome = (await self._store.outcomes([workflow_id])).get(workflow_id)
        owner = entries[0].user_id if entries else outcome.user_id if outcome else None
        if owner is None or (user_id is not None and owner != user_id):
            raise NotFound(f"no costs recorded for workflow {workflow_id}")
        return _workflow_view(workflow_id, owner, entries, outcome)

    async def ended(self, outcome: WorkflowOutcome) -> WorkflowCost:
        """The cost of a workflow that ended as `outcome` (one read: its entries; the outcome row is not read)."""
        return await self.recorded(outcome.workflow_id, outcome.user_id, outcome)

    async def recorded(
        self, workflow_id: uuid.UUID, user_id: str, outcome: WorkflowOutcome | None = None
    ) -> WorkflowCost:
        """What a workflow's entries add up to (one read), ended as `outcome` (None: its end is not known here,
        and `settled` is false)."""
        entries = await self._store.entries(workflow_id)
        return _workflow_view(workflow_id, entries[0].user_id if entries else user_id, entries, outcome)

    async def campaigns(self, user_id: str | None, start: datetime, end: datetime, limit: int) -> CampaignCosts:
        """Workflows with costs in [start, end), the latest first; `total` and `count` cover all of them."""
        where = EntryFilter(user_id, start, end)
        groups = await self._store.aggregate(where, ("workflow", "user", "type"), latest_first=True)
        page = groups[:limit]
        outcomes = await self._store.outcomes([uuid.UUID(g.keys[0]) for g in page if g.keys[0]])
        workflows = [_summary_view(group, outcomes.get(uuid.UUID(group.keys[0]))) for group in page if group.keys[0]]
        return CampaignCosts(
            user_id=user_id,
            start=start,
            end=end,
            total=sum((g.cost_usd for g in groups), ZERO),
            count=len(groups),
            workflows=workflows,
        )

    async def forecast(self, user_id: str | None, lookback_days: int, now: datetime) -> CostForecast:
        today = period_start(CostPeriod.DAILY, now)
        first = today - timedelta(days=lookback_days)
        groups = await self._store.aggregate(EntryFilter(user_id, midnight(first), midnight(today)), ("day",))
        costs = {datetime.fromisoformat(g.keys[0]).date(): g.cost_usd for g in groups}
        series = fc.daily_series(costs, first, today)
        used = fc.trimmed(series)
        line = fc.fit([cost for _, cost in used], used[0][0] if used else None)
        return CostForecast(
            user_id=user_id,
            method=line.method,
            lookback_days=lookback_days,
            history_days=line.days,
            history=[DailyCost(date=day, cost=cost) for day, cost in series],
            daily_average=fc.quantized(line.mean),
            trend_per_day=fc.quantized(line.slope),
            interval_level=FORECAST_LEVEL,
            next_7_days=line.window(7),
            next_30_days=line.window(30),
            generated_at=now,
            weekly_effect=line.weekday_effects(),
        )

    async def optimization(self, user_id: str | None, lookback_days: int, now: datetime) -> CostOptimization:
        end = now
        start = now - timedelta(days=lookback_days)
        groups = await self._store.aggregate(EntryFilter(user_id, start, end), ("type", "provider", "model"))
        recommendations = recommend(groups, self._prices, lookback_days)
        return CostOptimization(
            user_id=user_id,
            lookback_days=lookback_days,
            start=start,
            end=end,
            total_cost=sum((g.cost_usd for g in groups), ZERO),
            potential_saving=sum((r.estimated_saving for r in recommendations), ZERO),
            recommendations=recommendations,
        )


def _breakdown_group(
    key: str, group: Group | None, total: Decimal, parts: list[BreakdownPart] | None = None
) -> BreakdownGroup:
    if group is None:
        return BreakdownGroup(
            key=key, cost=ZERO, requests=0, prompt_tokens=0, completion_tokens=0, workflows=0, estimated_cost=ZERO,
            share=ZERO, parts=parts,
        )  # fmt: skip
    return BreakdownGroup(
        key=key,
        cost=group.cost_usd,
        requests=group.calls,
        prompt_tokens=group.prompt_tokens,
        completion_tokens=group.completion_tokens,
        workflows=group.workflows,
        estimated_cost=group.estimated_cost_usd,
        share=percent(group.cost_usd, total),
        parts=parts,
    )


def _settled(calls: list[CallCost], outcome: WorkflowOutcome | None) -> bool:
    """The workflow ended and its final generation's usage is among the calls."""
    if outcome is None:
        return False
    if outcome.prompt_tokens is None or outcome.completion_tokens is None:
        return True  # failed, or completed without usage: nothing more to wait for
    return final_usage_recorded(calls, outcome.provider, outcome.prompt_tokens, outcome.completion_tokens)


def _status(outcome: WorkflowOutcome | None) -> Literal["running", "completed", "failed", "cancelled"]:
    if outcome is None:
        return "running"
    if outcome.status == "cancelled":
        return "cancelled"
    return "completed" if outcome.status == "completed" else "failed"


def _workflow_view(
    workflow_id: uuid.UUID, owner: str, entries: list[CostEntry], outcome: WorkflowOutcome | None
) -> WorkflowCost:
    calls = [
        CallCost(
            provider=e.provider,
            model=e.model,
            prompt_tokens=e.prompt_tokens,
            completion_tokens=e.completion_tokens,
            cost=e.cost_usd,
            tokens_estimated=e.tokens_estimated,
            price_estimated=e.price_estimated,
            price_entry=e.price_entry,
            occurred_at=e.occurred_at,
            cached_prompt_tokens=e.cached_prompt_tokens,
        )
        for e in entries
    ]
    return WorkflowCost(
        workflow_id=workflow_id,
        user_id=owner,
        workflow_type=entries[0].workflow_type if entries else None,
        status=_status(outcome),
        total_cost=sum((e.cost_usd for e in entries), ZERO),
        requests=len(entries),
        prompt_tokens=sum(e.prompt_tokens for e in entries),
        completion_tokens=sum(e.completion_tokens for e in entries),
        estimated_cost=sum((e.cost_usd for e in entries if e.price_estimated), ZERO),
        first_at=entries[0].occurred_at if entries else None,
        last_at=entries[-1].occurred_at if entries else None,
        settled=_settled(calls, outcome),
        calls=calls,
    )


def _summary_view(group: Group, outcome: WorkflowOutcome | None) -> WorkflowCost:
    workflow_id, user_id, workflow_type = group.keys
    return WorkflowCost(
        workflow_id=uuid.UUID(workflow_id),
        user_id=user_id,
        workflow_type=IntentType(workflow_type),
        status=_status(outcome),
        total_cost=group.cost_usd,
        requests=group.calls,
        prompt_tokens=group.prompt_tokens,
        completion_tokens=group.completion_tokens,
        estimated_cost=group.estimated_cost_usd,
        first_at=group.first_at,
        last_at=group.last_at,
        settled=outcome is not None,
    )
