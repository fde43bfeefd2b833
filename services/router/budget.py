"""Budget decisions for new workflows, from the cost-tracker's latest budget.status per scope and period.

`block` refuses new workflows (cost_limit_exceeded); `downgrade` sends them to the cheaper provider. The
most severe action among the user's budgets and the global ones applies. Statuses are stored (so a
restarted replica knows them) and cached here; the cache is reloaded when older than `refresh_s`, so a
status handled by another replica takes effect here within that time. Only non-`allow` records are
cached: everyone without one is allowed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from contracts.enums import BudgetAction, CostPeriod
from contracts.messages import BudgetStatus
from services.router.store import GLOBAL_SCOPE, BudgetRecord, WorkflowStore

_SEVERITY = {BudgetAction.ALLOW: 0, BudgetAction.DOWNGRADE: 1, BudgetAction.BLOCK: 2}


class BudgetBook:
    def __init__(self, store: WorkflowStore, *, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._active: dict[str, dict[CostPeriod, BudgetRecord]] = {}  # scope -> period -> record
        self._loaded_at: float | None = None

    async def record(self, status: BudgetStatus, observed_at: datetime) -> BudgetRecord:
        """Store `status` (older than what is stored: ignored) and apply it here at once."""
        record = BudgetRecord(
            scope=status.scope_user_id or GLOBAL_SCOPE,
            period=status.period,
            action=status.action,
            spent_usd=status.spent_usd,
            limit_usd=status.limit_usd,
            observed_at=observed_at,
        )
        await self._store.put_budget(record)
        periods = self._active.setdefault(record.scope, {})
        cached = periods.get(record.period)
        if cached is None or cached.observed_at <= observed_at:
            if record.action is BudgetAction.ALLOW:
                periods.pop(record.period, None)
            else:
                periods[record.period] = record
        return record

    async def action_for(self, user_id: str) -> tuple[BudgetAction, BudgetRecord | None]:
        """The action for a new workflow of `user_id`, and the budget that decided it (None: allowed)."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_s:
            active: dict[str, dict[CostPeriod, BudgetRecord]] = {}
            for record in await self._store.active_budgets():
                active.setdefault(record.scope, {})[record.period] = record
            self._active, self._loaded_at = active, now
        deciding: BudgetRecord | None = None
        for scope in (user_id, GLOBAL_SCOPE):
            for record in self._active.get(scope, {}).values():
                if deciding is None or _SEVERITY[record.action] > _SEVERITY[deciding.action]:
                    deciding = record
        return (deciding.action if deciding else BudgetAction.ALLOW), deciding
