"""Threshold and alert management (a later phase of the original plan), with its permissions.

Thresholds: a user lists, creates and edits the thresholds of their own scope that they created; an admin
any, including global ones and thresholds for other users. A threshold with an action (downgrade / block)
is a budget. A user's scope holds at most COST_MAX_THRESHOLDS_PER_USER thresholds (disabled ones count: a
full scope answers forbidden; edit one instead), and only an admin's thresholds name channels (Slack, SNS,
email are the operators'): a user's alert in-app, in the alert list. A created or edited threshold is
checked against the current spend at once, so a budget set below what was already spent applies now. A
budget is on every provider's spend over a period: a per-request threshold, or one on a provider's spend,
alerts only (an action answers invalid_parameter).

Alerts: a user lists and acknowledges the alerts of their own scope; an admin any, and may raise a manual
alert (delivered to the channels like any other).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from contracts import costs as cc
from contracts.enums import CostPeriod, Provider
from services.cost_tracker.constants import ALERT_NAMESPACE, CHANNELS
from services.cost_tracker.errors import Forbidden, InvalidParameter, NotFound
from services.cost_tracker.limits import Limits, describe_scope
from services.cost_tracker.model import (
    Alert,
    AlertFilter,
    Requester,
    Severity,
    SpendKey,
    Threshold,
    ThresholdAction,
    period_began,
    scope_of,
)
from services.cost_tracker.store import CostStore


@dataclasses.dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """A threshold's editable fields; None in an update: unchanged."""

    period: CostPeriod | None = None
    limit_usd: Decimal | None = None
    severity: Severity | None = None
    action: ThresholdAction | None = None
    channels: Sequence[str] | None = None
    enabled: bool | None = None
    name: str | None = None


class Management:
    def __init__(self, store: CostStore, limits: Limits, *, max_thresholds_per_user: int = 20) -> None:
        self._store = store
        self._limits = limits
        self._max_per_user = max_thresholds_per_user

    # --- thresholds ----------------------------------------------------------------------------------------

    async def thresholds(
        self, who: Requester, user_id: str | None, period: CostPeriod | None, enabled: bool | None
    ) -> cc.Thresholds:
        found = [
            t
            for t in await self._store.thresholds()
            if (user_id is None or t.scope_user_id == user_id)
            and (period is None or t.period is period)
            and (enabled is None or t.enabled is enabled)
            and (who.is_admin or t.scope_user_id == who.user_id)
        ]
        summary = cc.ThresholdSummary(
            total=len(found),
            enabled=sum(t.enabled for t in found),
            by_period=dict(Counter(t.period.value for t in found)),
            by_severity=dict(Counter(t.severity.value for t in found)),
            by_action=dict(Counter(t.action.value for t in found)),
        )
        return cc.Thresholds(thresholds=[threshold_view(t) for t in found], summary=summary)

    async def create_threshold(
        self,
        who: Requester,
        threshold_id: uuid.UUID,
        user_id: str | None,
        is_global: bool,
        spec: ThresholdSpec,
        now: datetime,
        provider: Provider | None = None,
    ) -> cc.Threshold:
        if is_global and not who.is_admin:
            raise Forbidden("only an admin may set global thresholds")
        scope_user = None if is_global else (user_id or who.user_id)
        if scope_user is not None and scope_user != who.user_id and not who.is_admin:
            raise Forbidden("only an admin may set thresholds for other users")
        assert spec.period is not None and spec.limit_usd is not None  # required by the create parameters
        _check_channels(who, spec)
        if scope_user is not None:
            held = sum(t.scope_user_id == scope_user for t in await self._store.thresholds())
            if held >= self._max_per_user:
                # 403, not 400: the request is valid, the scope is full (edit one of its thresholds instead).
                raise Forbidden(
                    f"a user holds at most {self._max_per_user} thresholds (COST_MAX_THRESHOLDS_PER_USER); "
                    "change one of theirs instead"
                )
        default_channels = CHANNELS if who.is_admin else ()
        threshold = Threshold(
            id=threshold_id,
            scope_user_id=scope_user,
            period=spec.period,
            limit_usd=spec.limit_usd,
            severity=spec.severity or Severity.WARNING,
            action=spec.action or ThresholdAction.NONE,
            channels=tuple(dict.fromkeys(spec.channels if spec.channels is not None else default_channels)),
            enabled=True if spec.enabled is None else spec.enabled,
            name=spec.name,
            created_by=who.user_id,
            created_at=now,
            updated_at=now,
            provider=provider,
        )
        _check_budget(threshold)
        stored = await self._store.create_threshold(threshold)
        await self._apply(stored)
        return threshold_view(stored)

    async def update_threshold(
        self, who: Requester, threshold_id: uuid.UUID, spec: ThresholdSpec, now: datetime
    ) -> cc.Threshold:
        current = next((t for t in await self._store.thresholds() if t.id == threshold_id), None)
        if current is None or not (who.is_admin or current.scope_user_id == who.user_id):
            raise NotFound(f"no threshold {threshold_id}")
        if not who.is_admin and current.created_by != who.user_id:
            raise Forbidden("this threshold was set by an admin; only an admin may change it")
        _check_channels(who, spec)
        changes = {k: v for k, v in dataclasses.asdict(spec).items() if v is not None}
        if "channels" in changes:
            changes["channels"] = tuple(dict.fromkeys(changes["channels"]))
        wanted = dataclasses.replace(current, **changes, updated_at=now)
        _check_budget(wanted)
        updated = await self._store.update_threshold(wanted)
        if updated is None:
            raise NotFound(f"no threshold {threshold_id}")
        await self._apply(updated)
        return threshold_view(updated)

    async def _apply(self, threshold: Threshold) -> None:
        self._limits.book.invalidate()
        await self._limits.evaluate({threshold.scope})

    # --- alerts --------------------------------------------------------------------------------------------

    async def alerts(self, who: Requester, where: AlertFilter) -> cc.Alerts:
        if not who.is_admin:
            where = dataclasses.replace(where, scope_user_id=who.user_id, only_scope=True)
        found, counts = await self._store.alerts(where)
        by_severity = {severity.value: n for severity, n in counts.by_severity.items()}
        summary = cc.AlertSummary(total=counts.total, unacknowledged=counts.unacknowledged, by_severity=by_severity)
        return cc.Alerts(alerts=[alert_view(a) for a in found], summary=summary)

    async def raise_manual(
        self,
        who: Requester,
        request_id: uuid.UUID,
        user_id: str | None,
        period: CostPeriod,
        limit_usd: Decimal,
        severity: Severity,
        message: str,
        channels: Sequence[str] | None,
        now: datetime,
    ) -> cc.Alert:
        if not who.is_admin:
            raise Forbidden("only an admin may raise alerts")
        if period is CostPeriod.PER_REQUEST:
            raise InvalidParameter("a manual alert is about a period's spend: hourly, daily or monthly")
        alert_id = uuid.uuid5(ALERT_NAMESPACE, f"manual|{request_id}")  # a redelivered request: the same alert
        start = period_began(period, now)
        key = SpendKey(scope_of(user_id), period, start)
        spent = (await self._store.totals([key]))[key]
        alert = Alert(
            id=alert_id,
            kind="manual",
            threshold_id=f"manual:{alert_id}",
            scope_user_id=user_id,
            period=period,
            period_start=start,
            spent_usd=spent,
            limit_usd=limit_usd,
            severity=severity,
            message=f"{message} ({describe_scope(user_id)} {period.value} spend: ${spent}; limit ${limit_usd})",
            raised_at=now,
            created_by=who.user_id,
            deliveries=await self._limits.deliveries(user_id, channels if channels is not None else CHANNELS),
        )
        if await self._store.raise_alert(alert):
            await self._limits.publish_alert(alert)
        stored = await self._store.get_alert(alert_id)
        assert stored is not None
        return alert_view(stored)

    async def acknowledge(self, who: Requester, alert_id: uuid.UUID, acknowledged: bool, now: datetime) -> cc.Alert:
        alert = await self._store.get_alert(alert_id)
        if alert is None or not (who.is_admin or alert.scope_user_id == who.user_id):
            raise NotFound(f"no alert {alert_id}")
        updated = await self._store.acknowledge(alert_id, acknowledged, who.user_id, now)
        if updated is None:
            raise NotFound(f"no alert {alert_id}")
        return alert_view(updated)


def _check_channels(who: Requester, spec: ThresholdSpec) -> None:
    """Only an admin's thresholds alert Slack, SNS or email: a user's alert in-app (the alert list)."""
    if spec.channels and not who.is_admin:
        raise Forbidden(
            "notification channels (slack, sns, email) are the operators': a user's thresholds alert in-app only"
        )


def _check_budget(threshold: Threshold) -> None:
    """A budget (an action) is on every provider's spend over a period (what the routers act on)."""
    if threshold.action is ThresholdAction.NONE:
        return
    if threshold.period is CostPeriod.PER_REQUEST:
        raise InvalidParameter("a per_request threshold alerts only: its action must be none")
    if threshold.provider is not None:
        raise InvalidParameter("a threshold on one provider's spend alerts only: its action must be none")


def threshold_view(t: Threshold) -> cc.Threshold:
    return cc.Threshold(
        id=t.id,
        user_id=t.scope_user_id,
        period=t.period,
        limit_usd=t.limit_usd,
        severity=t.severity.value,
        action=t.action.value,
        notification_channels=list(t.channels),
        enabled=t.enabled,
        name=t.name,
        created_by=t.created_by,
        created_at=t.created_at,
        updated_at=t.updated_at,
        provider=t.provider,
    )


def alert_view(a: Alert) -> cc.Alert:
    return cc.Alert(
        id=a.id,
        kind="manual" if a.kind == "manual" else "threshold",
        threshold_id=a.threshold_id,
        user_id=a.scope_user_id,
        period=a.period,
        period_start=a.period_start.astimezone(UTC).date(),
        period_started_at=a.period_start,
        spent_usd=a.spent_usd,
        limit_usd=a.limit_usd,
        severity=a.severity.value,
        message=a.message,
        raised_at=a.raised_at,
        created_by=a.created_by,
        acknowledged=a.acknowledged,
        acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
        deliveries=[
            cc.AlertDelivery(
                channel=d.channel,
                status=d.status.value,
                attempts=d.attempts,
                last_error=d.last_error,
                sent_at=d.sent_at,
            )
            for d in a.deliveries
        ],
    )
