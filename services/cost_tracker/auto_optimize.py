"""The automatic optimisation mode (admin): recommendations applied by themselves, within a budget rule, and
taken back by themselves.

Switched on with a budget rule — a global threshold with an action, over an hour, a day or a month — it
acts while that rule's period spend is at least `trigger_percent` of its limit: each workflow type's best
current switch_provider recommendation saving at least `min_saving_percent` becomes the type's routing
policy, applied by "auto-optimize" and marked automatic. Below the trigger (the next period begins) or
switched off, every automatic policy is reverted; an admin's own policy for a type is never replaced or
reverted by it. While it acts, the policies it applied stay (no switching back and forth as the history
moves). It is evaluated by the sweep (every COST_SWEEP_INTERVAL_S) and when switched; the recommendations
(a month of cost entries summed) are computed again at most every COST_BUDGET_REPUBLISH_S while it acts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from contracts import costs as cc
from libs.telemetry import get_logger
from services.cost_tracker.constants import GLOBAL_SCOPE, POLICY_NAMESPACE
from services.cost_tracker.errors import Forbidden, InvalidParameter
from services.cost_tracker.limits import Clock, utcnow
from services.cost_tracker.model import (
    TOTAL_PERIODS,
    AutoSettings,
    PolicyRecord,
    Requester,
    SpendKey,
    Threshold,
    ThresholdAction,
    period_began,
)
from services.cost_tracker.policies import Policies, policy_view
from services.cost_tracker.reports import Reports
from services.cost_tracker.store import CostStore

log = get_logger(__name__)

AUTO_BY = "auto-optimize"  # the applied_by / reverted_by of the automatic mode's changes
_DEFAULTS = {name: field.default for name, field in cc.AutoOptimizeUpdate.model_fields.items()}
# The mode never switched: off, with the request's defaults.
OFF = AutoSettings(
    enabled=False,
    threshold_id=None,
    trigger_percent=_DEFAULTS["trigger_percent"],
    min_saving_percent=_DEFAULTS["min_saving_percent"],
    lookback_days=_DEFAULTS["lookback_days"],
    updated_by="",
    updated_at=datetime.min.replace(tzinfo=UTC),
)


class AutoOptimizer:
    def __init__(
        self,
        store: CostStore,
        reports: Reports,
        policies: Policies,
        *,
        recheck_s: float,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._reports = reports
        self._policies = policies
        self._recheck_s = recheck_s
        self._clock = clock
        self._monotonic = monotonic
        self._checked_at: float | None = None  # when the recommendations were last applied from

    async def get(self, who: Requester) -> cc.AutoOptimize:
        _admin(who)
        return await self._view()

    async def update(self, who: Requester, q: cc.AutoOptimizeUpdate) -> cc.AutoOptimize:
        _admin(who)
        if q.enabled:
            if q.threshold_id is None:
                raise InvalidParameter("the automatic mode acts within a budget rule: name its threshold_id")
            _check_rule(await self._rule(q.threshold_id), q.threshold_id)
        settings = AutoSettings(
            enabled=q.enabled,
            threshold_id=q.threshold_id,
            trigger_percent=q.trigger_percent,
            min_saving_percent=q.min_saving_percent,
            lookback_days=q.lookback_days,
            updated_by=who.user_id,
            updated_at=self._clock(),
        )
        await self._store.put_auto_settings(settings)
        log.info("cost.auto_optimize.set", enabled=q.enabled, threshold_id=str(q.threshold_id))
        self._checked_at = None  # evaluate the new settings in full now
        await self.evaluate()
        return await self._view()

    async def evaluate(self) -> None:
        """Apply or revert the automatic policies as the rule's spend says (the sweep's part)."""
        now = self._clock()
        settings = await self._store.auto_settings()
        active = settings is not None and (await self._spend(settings, now))[0]
        _, policies = await self._store.policies()
        automatic = [p for p in policies if p.in_force and p.automatic]
        changed = False
        if not active:
            self._checked_at = None  # acting again (the next crossing) applies at once
            for policy in automatic:
                await self._store.revert_policy(policy.id, AUTO_BY, now)
                log.info("cost.auto_optimize.reverted", policy_id=str(policy.id))
                changed = True
        elif self._checked_at is None or self._monotonic() - self._checked_at >= self._recheck_s:
            assert settings is not None
            changed = await self._apply(settings, policies, automatic, now)
            self._checked_at = self._monotonic()
        if changed:
            await self._policies.publish()

    async def _apply(
        self, settings: AutoSettings, policies: list[PolicyRecord], automatic: list[PolicyRecord], now: datetime
    ) -> bool:
        found = await self._reports.optimization(None, settings.lookback_days, now)
        admins = {p.workflow_type for p in policies if p.in_force and not p.automatic}
        acting = {p.workflow_type for p in automatic}
        changed = False
        for advice in found.recommendations:  # the largest saving first: each type's best
            kind, saving = advice.kind, advice.saving_percent
            if kind != "switch_provider" or saving < settings.min_saving_percent or advice.workflow_type is None:
                continue
            if advice.workflow_type in admins or advice.workflow_type in acting or advice.to_provider is None:
                continue
            policy = PolicyRecord(
                id=uuid.uuid5(POLICY_NAMESPACE, f"auto|{advice.id}|{now.isoformat()}"),
                workflow_type=advice.workflow_type,
                provider=advice.to_provider,
                model=advice.model,
                recommendation_id=advice.id,
                estimated_saving_usd=advice.estimated_saving,
                applied_by=AUTO_BY,
                applied_at=now,
                automatic=True,
            )
            await self._store.apply_policy(policy)
            acting.add(advice.workflow_type)
            log.info(
                "cost.auto_optimize.applied", workflow_type=policy.workflow_type.value, provider=policy.provider.value
            )
            changed = True
        return changed

    async def _rule(self, threshold_id: uuid.UUID) -> Threshold | None:
        return next((t for t in await self._store.thresholds() if t.id == threshold_id), None)

    async def _spend(self, settings: AutoSettings, now: datetime) -> tuple[bool, Threshold | None, Decimal | None]:
        """Whether the mode acts now, its rule, and the rule's period spend (None without a valid rule)."""
        rule = await self._rule(settings.threshold_id) if settings.threshold_id is not None else None
        if not settings.enabled or rule is None or _rule_problem(rule) is not None:
            return False, rule, None
        key = SpendKey(GLOBAL_SCOPE, rule.period, period_began(rule.period, now))
        spent = (await self._store.totals([key]))[key]
        return spent * 100 >= rule.limit_usd * settings.trigger_percent, rule, spent

    async def _view(self) -> cc.AutoOptimize:
        settings = await self._store.auto_settings() or OFF
        version, policies = await self._store.policies()
        active, rule, spent = await self._spend(settings, self._clock())
        return cc.AutoOptimize(
            enabled=settings.enabled,
            threshold_id=settings.threshold_id,
            trigger_percent=settings.trigger_percent,
            min_saving_percent=settings.min_saving_percent,
            lookback_days=settings.lookback_days,
            active=active,
            spent_usd=spent,
            limit_usd=rule.limit_usd if rule else None,
            updated_by=settings.updated_by or None,
            updated_at=settings.updated_at if settings.updated_by else None,
            version=version,
            in_force=[policy_view(p) for p in policies if p.in_force],
        )


def _rule_problem(rule: Threshold) -> str | None:
    if rule.scope_user_id is not None:
        return "is not global"
    if rule.action is ThresholdAction.NONE or rule.period not in TOTAL_PERIODS or rule.provider is not None:
        return "is not a budget (an action on every provider's spend over a period)"
    if not rule.enabled:
        return "is disabled"
    return None


def _check_rule(rule: Threshold | None, threshold_id: uuid.UUID) -> None:
    problem = "does not exist" if rule is None else _rule_problem(rule)
    if problem is not None:
        raise InvalidParameter(f"threshold {threshold_id} {problem}: the automatic mode acts within a budget rule")


def _admin(who: Requester) -> None:
    if not who.is_admin:
        raise Forbidden("only an admin may see or switch the automatic mode")
