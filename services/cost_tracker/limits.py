"""Thresholds and budgets: which running totals crossed which thresholds, and what the routers must be told.

A crossing raises one alert per threshold and period: the alert's row is the guard (UNIQUE threshold and
period start), so however many replicas and messages see the same crossing, one of them stores it and that
one publishes the cost.alert. Channels are not called here: cost.alert is consumed by this service's own
queue (notify.py), so a slow or failing channel never holds up accounting.

A threshold watches a period's running total (hourly, daily, monthly: every provider's, or one provider's
when it names one) or each billed call's own cost (per_request: one alert per call over the limit). Every
alert of a user's scope also goes to the user's own destinations (their e-mail, their webhook) when they
set them, besides the operators' channels the threshold names.

A threshold with an action (downgrade / block) is also a budget: the most severe action among a scope's
crossed thresholds of a period is that scope's budget state, and a change of it is published as
budget.status (again guarded by a conditional write, so one replica publishes each change). Spending only
grows within a period; actions are lifted by the sweep (a new period, an edited or disabled threshold).

COST_DEFAULT_USER_DAILY_BUDGET_USD is a block threshold of every user without a daily budget of their own
(default_budget: not stored, not listed, alerting in-app), so one user's generations cannot run up the bill
unchecked. Alert delivery is limited per scope: an alert raised when its scope already raised
COST_ALERT_SCOPE_HOURLY_LIMIT alerts in the last hour is stored (the in-app list) with its channel
deliveries skipped as rate limited — many thresholds crossing at once page the operators a bounded number
of times.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts import Envelope
from contracts.enums import BudgetAction, CostPeriod, Provider
from contracts.messages import BudgetStatus, CostAlert
from libs.bus import Bus
from libs.telemetry import get_logger
from services.cost_tracker.constants import (
    ALERT_RATE_WINDOW,
    DEFAULT_BUDGET_CREATED_BY,
    DEFAULT_BUDGET_NAMESPACE,
    GLOBAL_SCOPE,
)
from services.cost_tracker.model import (
    BUDGET_SEVERITY,
    TOTAL_PERIODS,
    Alert,
    AlertFilter,
    BudgetState,
    CostEntry,
    Delivery,
    DeliveryStatus,
    Severity,
    SpendKey,
    Threshold,
    ThresholdAction,
    alert_id_for,
    period_began,
    request_alert_id,
    user_of,
)
from services.cost_tracker.store import CostStore

log = get_logger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ThresholdBook:
    """The enabled thresholds by scope, period and provider, cached: reloaded when older than `refresh_s` (so an edit
    made on another replica applies here within that time) or when this replica edited one."""

    def __init__(
        self,
        store: CostStore,
        *,
        refresh_s: float,
        default_daily_budget: Decimal | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._default_daily_budget = default_daily_budget
        self._clock = clock
        self._by_key: dict[_BookKey, list[Threshold]] = {}
        self._loaded_at: float | None = None

    def invalidate(self) -> None:
        self._loaded_at = None

    async def _current(self) -> dict[_BookKey, list[Threshold]]:
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_s:
            by_key: dict[_BookKey, list[Threshold]] = {}
            for threshold in await self._store.thresholds():
                if threshold.enabled:
                    key = (threshold.scope, threshold.period, threshold.provider)
                    by_key.setdefault(key, []).append(threshold)
            self._by_key, self._loaded_at = by_key, now
        return self._by_key

    async def matching(self, scope: str, period: CostPeriod, provider: Provider | None = None) -> list[Threshold]:
        """The scope's enabled thresholds of `period` on `provider`'s spend (None: every provider's), with the
        default daily budget for a user who has none."""
        found = (await self._current()).get((scope, period, provider), [])
        default = self._default_daily_budget
        if default is None or scope == GLOBAL_SCOPE or period is not CostPeriod.DAILY or provider is not None:
            return found
        if any(t.action is not ThresholdAction.NONE for t in found):
            return found  # the user's own daily budget replaces the default
        return [*found, default_budget(scope, default)]

    async def per_request(self, user_id: str, provider: Provider) -> list[Threshold]:
        """The per-request thresholds a call of `user_id` on `provider` is checked against (the user's and the
        global ones, on every provider or on this one)."""
        book = await self._current()
        return [
            threshold
            for scope in (user_id, GLOBAL_SCOPE)
            for each in (None, provider)
            for threshold in book.get((scope, CostPeriod.PER_REQUEST, each), [])
        ]

    async def scopes(self) -> set[str]:
        return {scope for scope, _, _ in await self._current()}


_BookKey = tuple[str, CostPeriod, Provider | None]


def default_budget(user_id: str, limit_usd: Decimal) -> Threshold:
    """COST_DEFAULT_USER_DAILY_BUDGET_USD as `user_id`'s threshold: block past it, alert in-app only."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return Threshold(
        id=uuid.uuid5(DEFAULT_BUDGET_NAMESPACE, user_id),
        scope_user_id=user_id,
        period=CostPeriod.DAILY,
        limit_usd=limit_usd,
        severity=Severity.WARNING,
        action=ThresholdAction.BLOCK,
        channels=(),
        enabled=True,
        name="default daily budget",
        created_by=DEFAULT_BUDGET_CREATED_BY,
        created_at=epoch,
        updated_at=epoch,
    )


def decide_budget(spent: Decimal, thresholds: Sequence[Threshold]) -> tuple[BudgetAction, Decimal | None]:
    """The budget action `spent` calls for, and the limit that decided it (or, when allowed, the nearest
    limit with an action; None when the scope has no budget)."""
    budgets = sorted((t for t in thresholds if t.action is not ThresholdAction.NONE), key=lambda t: t.limit_usd)
    crossed = [t for t in budgets if t.limit_usd <= spent]
    if not crossed:
        return BudgetAction.ALLOW, budgets[0].limit_usd if budgets else None
    deciding = max(crossed, key=lambda t: (BUDGET_SEVERITY[t.action.budget_action()], -t.limit_usd))
    return deciding.action.budget_action(), deciding.limit_usd


def describe_scope(scope_user_id: str | None) -> str:
    return "Global" if scope_user_id is None else f"User {scope_user_id}'s"


class Limits:
    """Checks running totals against the thresholds; raises alerts and publishes budget changes."""

    def __init__(
        self,
        bus: Bus,
        store: CostStore,
        book: ThresholdBook,
        *,
        configured_channels: frozenset[str],
        alert_hourly_limit: int = 10,
        clock: Clock = utcnow,
    ) -> None:
        self._bus = bus
        self._store = store
        self.book = book
        self._configured = configured_channels
        self._alert_hourly_limit = alert_hourly_limit
        self._clock = clock
        # Crossings this replica knows are stored: later messages of the period skip the INSERT round trip.
        self._raised: set[tuple[uuid.UUID, datetime]] = set()
        # The budget action stored per scope and period, as last seen here (reloaded by every sweep).
        self._budgets: dict[tuple[str, CostPeriod], BudgetAction] = {}

    async def load(self) -> None:
        self._budgets = {(s.scope, s.period): s.action for s in await self._store.budget_states()}

    async def on_totals(self, totals: Mapping[SpendKey, Decimal]) -> None:
        """After a usage entry: alerts for crossed thresholds; budget changes for the current periods."""
        now = self._clock()
        for key, spent in totals.items():
            thresholds = await self.book.matching(key.scope, key.period, key.provider)
            await self._raise_crossed(key, spent, thresholds, now)
            if key.provider is None and key.start == period_began(key.period, now):
                await self._settle_budget(key, spent, thresholds)

    async def on_entry(self, entry: CostEntry) -> None:
        """After a usage entry: an alert per per-request threshold the call's own cost reached."""
        for threshold in await self.book.per_request(entry.user_id, entry.provider):
            if entry.cost_usd < threshold.limit_usd:
                continue
            deliveries = await self._rate_limited(threshold, self._clock())
            alert = self._request_alert(threshold, entry, deliveries)
            if await self._store.raise_alert(alert):
                log.info(
                    "cost.threshold.crossed",
                    threshold_id=str(threshold.id),
                    scope=threshold.scope,
                    period=CostPeriod.PER_REQUEST.value,
                    spent_usd=str(entry.cost_usd),
                    limit_usd=str(threshold.limit_usd),
                )
                await self.publish_alert(alert)

    async def evaluate(self, scopes: Iterable[str]) -> None:
        """Check the current periods of `scopes` (a threshold changed, a period began, the sweep)."""
        now = self._clock()
        keys = [
            SpendKey(scope, period, period_began(period, now), provider)
            for scope in sorted(scopes)
            for period in TOTAL_PERIODS
            for provider in (None, *Provider)
        ]
        if not keys:
            return
        totals = await self._store.totals(keys)
        for key in keys:
            thresholds = await self.book.matching(key.scope, key.period, key.provider)
            await self._raise_crossed(key, totals[key], thresholds, now)
            if key.provider is None:
                await self._settle_budget(key, totals[key], thresholds)

    async def sweep(self, *, unpublished_grace_s: float, republish_s: float) -> None:
        """Re-check every scope with thresholds or a budget state, re-send what was never confirmed, and
        re-send every budget state once per `republish_s` (a router that lost its state learns it again)."""
        self.book.invalidate()
        await self.load()
        now = self._clock()
        current = {period_began(period, now) for period in TOTAL_PERIODS}
        self._raised = {marker for marker in self._raised if marker[1] in current}
        await self.evaluate(await self.book.scopes() | {scope for scope, _ in self._budgets})
        grace = _seconds(unpublished_grace_s)
        for state in await self._store.claim_budget_republish(now, now - grace, now - _seconds(republish_s)):
            await self._send_budget(state, confirm=False)
        for alert in await self._store.unpublished_alerts(now - grace):
            await self.publish_alert(alert)

    # --- alerts --------------------------------------------------------------------------------------------

    async def _raise_crossed(
        self, key: SpendKey, spent: Decimal, thresholds: Sequence[Threshold], now: datetime
    ) -> None:
        for threshold in thresholds:
            marker = (threshold.id, key.start)
            if spent < threshold.limit_usd or marker in self._raised:
                continue
            alert = self._alert_for(threshold, key, spent, now, await self._rate_limited(threshold, now))
            if await self._store.raise_alert(alert):
                log.info(
                    "cost.threshold.crossed",
                    threshold_id=str(threshold.id),
                    scope=key.scope,
                    period=key.period.value,
                    spent_usd=str(spent),
                    limit_usd=str(threshold.limit_usd),
                )
                await self.publish_alert(alert)
            self._raised.add(marker)

    async def _rate_limited(self, threshold: Threshold, now: datetime) -> tuple[Delivery, ...]:
        """The deliveries of `threshold`'s alert: skipped as rate limited when its scope raised
        COST_ALERT_SCOPE_HOURLY_LIMIT alerts or more in the last hour."""
        deliveries = await self.deliveries(threshold.scope_user_id, threshold.channels)
        if not any(d.status is DeliveryStatus.PENDING for d in deliveries):
            return deliveries
        where = AlertFilter(scope_user_id=threshold.scope_user_id, only_scope=True, start=now - ALERT_RATE_WINDOW)
        _, counts = await self._store.alerts(dataclasses.replace(where, limit=1))
        if counts.total < self._alert_hourly_limit:
            return deliveries
        log.warning("cost.alert.rate_limited", scope=threshold.scope, alerts_last_hour=counts.total)
        reason = f"rate limited: {counts.total} alerts of this scope in the last hour (COST_ALERT_SCOPE_HOURLY_LIMIT)"
        return tuple(
            Delivery(d.channel, DeliveryStatus.SKIPPED, last_error=reason) if d.status is DeliveryStatus.PENDING else d
            for d in deliveries
        )

    def _alert_for(
        self, threshold: Threshold, key: SpendKey, spent: Decimal, now: datetime, deliveries: tuple[Delivery, ...]
    ) -> Alert:
        budget = "" if threshold.action is ThresholdAction.NONE else f"; budget action: {threshold.action.value}"
        on = "" if key.provider is None else f" {key.provider.value}"
        message = (
            f"{describe_scope(threshold.scope_user_id)} {key.period.value}{on} spend reached ${spent} "
            f"(threshold ${threshold.limit_usd}, {threshold.severity.value}){budget}"
        )
        return Alert(
            id=alert_id_for(threshold.id, key.period, key.start),
            kind="threshold",
            threshold_id=str(threshold.id),
            scope_user_id=threshold.scope_user_id,
            period=key.period,
            period_start=key.start,
            spent_usd=spent,
            limit_usd=threshold.limit_usd,
            severity=threshold.severity,
            message=message,
            raised_at=now,
            deliveries=deliveries,
        )

    def _request_alert(self, threshold: Threshold, entry: CostEntry, deliveries: tuple[Delivery, ...]) -> Alert:
        who = "Global" if threshold.scope_user_id is None else f"User {entry.user_id}'s"
        message = (
            f"{who} call on {entry.provider.value} ({entry.model}) cost ${entry.cost_usd} "
            f"(per-request threshold ${threshold.limit_usd}, {threshold.severity.value}; user {entry.user_id})"
        )
        return Alert(
            id=request_alert_id(threshold.id, entry.message_id),
            kind="threshold",
            threshold_id=str(threshold.id),
            scope_user_id=threshold.scope_user_id,
            period=CostPeriod.PER_REQUEST,
            period_start=period_began(CostPeriod.PER_REQUEST, entry.occurred_at),
            spent_usd=entry.cost_usd,
            limit_usd=threshold.limit_usd,
            severity=threshold.severity,
            message=message,
            raised_at=self._clock(),
            deliveries=deliveries,
        )

    async def deliveries(self, scope_user_id: str | None, channels: Iterable[str]) -> tuple[Delivery, ...]:
        """A delivery per named channel, and per destination the scope's user set (their e-mail, their
        webhook): pending, or skipped when the channel is not configured here."""
        names = list(channels)
        if scope_user_id is not None:
            destination = await self._store.destination(scope_user_id)
            names.extend(destination.channels() if destination else ())
        return tuple(
            Delivery(name, DeliveryStatus.PENDING)
            if name in self._configured
            else Delivery(name, DeliveryStatus.SKIPPED, last_error="channel not configured")
            for name in dict.fromkeys(names)
        )

    async def publish_alert(self, alert: Alert) -> None:
        """Publish the alert's cost.alert (its id is the alert's: consumers meet duplicates) and confirm it."""
        payload = CostAlert(
            threshold_id=alert.threshold_id,
            period=alert.period,
            period_start=alert.period_start,
            scope_user_id=alert.scope_user_id,
            spent_usd=alert.spent_usd,
            limit_usd=alert.limit_usd,
            alert_id=alert.id,
            severity=alert.severity.value,
            message=alert.message,
        )
        await self._bus.publish(Envelope.new(payload, id=alert.id, user_id=alert.scope_user_id))
        await self._store.mark_published(alert.id, self._clock())

    # --- budgets -------------------------------------------------------------------------------------------

    async def _settle_budget(self, key: SpendKey, spent: Decimal, thresholds: Sequence[Threshold]) -> None:
        action, limit = decide_budget(spent, thresholds)
        known = self._budgets.get((key.scope, key.period))
        if known is action or (known is None and action is BudgetAction.ALLOW):
            return  # nothing changes (a scope never restricted needs no "allow")
        wanted = BudgetState(key.scope, key.period, action, key.start, spent, limit, changed_at=self._clock())
        changed = await self._store.change_budget_state(wanted)
        # Unchanged means the stored action is this one already (another replica got there first).
        self._budgets[(key.scope, key.period)] = action
        if changed is not None:
            log.info(
                "cost.budget.changed",
                scope=key.scope,
                period=key.period.value,
                action=action.value,
                previous=known.value if known else None,
                spent_usd=str(spent),
                limit_usd=str(limit) if limit is not None else None,
            )
            await self._send_budget(changed, confirm=True)

    async def _send_budget(self, state: BudgetState, *, confirm: bool) -> None:
        """budget.status of `state`, timed at its change: a router keeps the newest state by that time, so a
        late re-send of an older state never overrides a newer one."""
        user_id = user_of(state.scope)
        payload = BudgetStatus(
            scope_user_id=user_id,
            action=state.action,
            period=state.period,
            spent_usd=state.spent_usd,
            limit_usd=state.limit_usd,
        )
        envelope = Envelope(
            type=payload.TYPE, version=payload.VERSION, occurred_at=state.changed_at, user_id=user_id, payload=payload
        )
        await self._bus.publish(envelope)
        if confirm:
            await self._store.mark_budget_published(state, self._clock())


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
