"""Where the cost-tracker keeps its records: the repository interface, and its in-memory implementation (the
embedded mode and unit tests). pg_store.PostgresStore is the same interface on PostgreSQL.

The writes that must hold across replicas are single atomic, conditional steps: a usage entry is stored
once per message id together with its running totals; an alert is raised once per threshold and period; a
delivery is leased to one sender at a time; a budget state is changed only when the action changes. Callers
publish only what their own write changed, so N replicas seeing the same crossing send one message.
"""

from __future__ import annotations

import dataclasses
import uuid
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts.enums import CostPeriod
from libs.storage.store import Store
from services.cost_tracker.experiment_store import ExperimentStore, MemoryExperiments
from services.cost_tracker.model import (
    Alert,
    AlertDestination,
    AlertFilter,
    AutoSettings,
    BudgetState,
    CostEntry,
    Delivery,
    DeliveryStatus,
    Dim,
    EntryFilter,
    ExperimentRecord,
    Group,
    PolicyChange,
    PolicyRecord,
    Severity,
    SpendKey,
    Threshold,
    WorkflowOutcome,
    WorkflowSpend,
    spend_keys,
)


@dataclass(frozen=True, slots=True)
class AlertCounts:
    """Counts over every alert a filter matches (not only the page returned)."""

    total: int = 0
    unacknowledged: int = 0
    by_severity: dict[Severity, int] = field(default_factory=dict)


class CostStore(Store, ExperimentStore):
    # --- accounting ----------------------------------------------------------------------------------------

    @abstractmethod
    async def record_usage(self, entry: CostEntry) -> dict[SpendKey, Decimal] | None:
        """Store `entry` and add its cost to its twelve running totals (spend_keys), atomically: the new
        totals, or None — nothing written — when an entry with the same message id is stored already."""

    @abstractmethod
    async def totals(self, keys: Sequence[SpendKey]) -> dict[SpendKey, Decimal]:
        """The running totals of `keys` (zero where nothing was spent)."""

    @abstractmethod
    async def record_outcome(self, outcome: WorkflowOutcome) -> WorkflowSpend | None:
        """Store how a workflow ended and return what its recorded calls cost, in one step (one round trip
        per workflow end); None — nothing written — when its end is stored already."""

    @abstractmethod
    async def outcomes(self, workflow_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WorkflowOutcome]: ...

    @abstractmethod
    async def entries(self, workflow_id: uuid.UUID) -> list[CostEntry]:
        """The workflow's cost entries, oldest first."""

    @abstractmethod
    async def aggregate(
        self, where: EntryFilter, dims: Sequence[Dim], *, latest_first: bool = False, limit: int | None = None
    ) -> list[Group]:
        """Entries matching `where`, summed per combination of `dims` values (no dims: one group, or none
        when nothing matches), ordered by the keys — or by the latest entry, newest first."""

    # --- thresholds ----------------------------------------------------------------------------------------

    @abstractmethod
    async def thresholds(self) -> list[Threshold]:
        """Every threshold, oldest first."""

    @abstractmethod
    async def create_threshold(self, threshold: Threshold) -> Threshold:
        """Store `threshold` unless one with its id exists; the stored one (a retried create is harmless)."""

    @abstractmethod
    async def update_threshold(self, threshold: Threshold) -> Threshold | None:
        """Replace the threshold with `threshold.id`; None when there is none."""

    # --- a user's alert destinations ------------------------------------------------------------------------

    @abstractmethod
    async def destination(self, user_id: str) -> AlertDestination | None:
        """Where `user_id`'s own alerts go (None: never set)."""

    @abstractmethod
    async def put_destination(self, destination: AlertDestination) -> AlertDestination:
        """Replace the user's destinations with `destination`'s; the stored one."""

    # --- routing policies ----------------------------------------------------------------------------------

    @abstractmethod
    async def apply_policy(self, policy: PolicyRecord) -> PolicyChange:
        """Store `policy` in force, replacing (reverting) the one of its workflow type, and add one to the
        policy set's version, atomically — unless a policy with its id is stored already (a redelivered apply:
        nothing changes)."""

    @abstractmethod
    async def revert_policy(self, policy_id: uuid.UUID, by: str, at: datetime) -> PolicyChange:
        """Revert the policy if it is in force (adding one to the version)."""

    @abstractmethod
    async def policies(self) -> tuple[int, list[PolicyRecord]]:
        """The set's version and every policy, newest first."""

    # --- alerts --------------------------------------------------------------------------------------------

    @abstractmethod
    async def raise_alert(self, alert: Alert) -> bool:
        """Store `alert` with its deliveries unless an alert of the same threshold and period exists;
        whether it was stored (exactly one caller gets True per threshold and period)."""

    @abstractmethod
    async def get_alert(self, alert_id: uuid.UUID) -> Alert | None: ...

    @abstractmethod
    async def alerts(self, where: AlertFilter) -> tuple[list[Alert], AlertCounts]:
        """Matching alerts, newest first (at most `where.limit`), and counts over all that match."""

    @abstractmethod
    async def acknowledge(self, alert_id: uuid.UUID, acknowledged: bool, by: str, at: datetime) -> Alert | None: ...

    @abstractmethod
    async def mark_published(self, alert_id: uuid.UUID, at: datetime) -> None:
        """The alert's cost.alert was confirmed by the bus."""

    @abstractmethod
    async def unpublished_alerts(self, raised_before: datetime) -> list[Alert]: ...

    @abstractmethod
    async def claim_delivery(self, alert_id: uuid.UUID, channel: str, now: datetime, until: datetime) -> bool:
        """Lease the delivery to the caller until `until`, if it is pending, retrying, or leased by someone
        whose lease ran out; whether the caller got it."""

    @abstractmethod
    async def finish_delivery(
        self, alert_id: uuid.UUID, channel: str, status: DeliveryStatus, error: str | None, at: datetime
    ) -> None:
        """Record the outcome of one attempt (attempts + 1) and release the lease."""

    # --- budgets -------------------------------------------------------------------------------------------

    @abstractmethod
    async def budget_states(self) -> list[BudgetState]: ...

    @abstractmethod
    async def change_budget_state(self, state: BudgetState) -> BudgetState | None:
        """Store `state` if its action differs from the stored one's (and its period is not older): the
        stored state, with its `changed_at` set now; None when nothing changed."""

    @abstractmethod
    async def mark_budget_published(self, state: BudgetState, at: datetime) -> None:
        """`state`'s budget.status was confirmed by the bus (ignored if the state changed since)."""

    @abstractmethod
    async def claim_budget_republish(
        self, now: datetime, unpublished_before: datetime, published_before: datetime
    ) -> list[BudgetState]:
        """States never confirmed and changed before `unpublished_before`, or last published before
        `published_before`: marked published now (one replica gets each) and returned for re-sending."""


class MemoryStore(MemoryExperiments, CostStore):
    """The store in this process's memory: same semantics, nothing survives the process."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, CostEntry] = {}
        self._totals: dict[SpendKey, Decimal] = {}
        self._outcomes: dict[uuid.UUID, WorkflowOutcome] = {}
        self._thresholds: dict[uuid.UUID, Threshold] = {}
        self._alerts: dict[uuid.UUID, Alert] = {}
        self._alert_keys: set[tuple[str, object]] = set()
        self._budgets: dict[tuple[str, CostPeriod], tuple[BudgetState, datetime | None]] = {}
        self._destinations: dict[str, AlertDestination] = {}
        self._policies: dict[uuid.UUID, PolicyRecord] = {}
        self._policy_version = 0
        self._experiments: dict[uuid.UUID, ExperimentRecord] = {}
        self._auto: AutoSettings | None = None

    async def record_usage(self, entry: CostEntry) -> dict[SpendKey, Decimal] | None:
        if entry.message_id in self._entries:
            return None
        self._entries[entry.message_id] = entry
        totals = {}
        for key in spend_keys(entry.user_id, entry.occurred_at, entry.provider):
            totals[key] = self._totals[key] = self._totals.get(key, Decimal(0)) + entry.cost_usd
        return totals

    async def totals(self, keys: Sequence[SpendKey]) -> dict[SpendKey, Decimal]:
        return {key: self._totals.get(key, Decimal(0)) for key in keys}

    async def record_outcome(self, outcome: WorkflowOutcome) -> WorkflowSpend | None:
        if outcome.workflow_id in self._outcomes:
            return None
        self._outcomes[outcome.workflow_id] = outcome
        entries = await self.entries(outcome.workflow_id)
        return WorkflowSpend(
            calls=len(entries),
            cost_usd=sum((e.cost_usd for e in entries), Decimal(0)),
            last_provider=entries[-1].provider if entries else None,
        )

    async def outcomes(self, workflow_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WorkflowOutcome]:
        return {wid: self._outcomes[wid] for wid in workflow_ids if wid in self._outcomes}

    async def entries(self, workflow_id: uuid.UUID) -> list[CostEntry]:
        found = [e for e in self._entries.values() if e.workflow_id == workflow_id]
        return sorted(found, key=lambda e: (e.occurred_at, str(e.message_id)))

    async def aggregate(
        self, where: EntryFilter, dims: Sequence[Dim], *, latest_first: bool = False, limit: int | None = None
    ) -> list[Group]:
        buckets: dict[tuple[str, ...], list[CostEntry]] = {}
        for entry in self._entries.values():
            if _matches(entry, where):
                buckets.setdefault(tuple(_dim_value(entry, dim) for dim in dims), []).append(entry)
        groups = [_group(keys, entries) for keys, entries in buckets.items()]
        if latest_first:
            groups.sort(key=lambda g: (g.last_at, g.keys), reverse=True)
        else:
            groups.sort(key=lambda g: g.keys)
        return groups[:limit] if limit is not None else groups

    async def thresholds(self) -> list[Threshold]:
        return sorted(self._thresholds.values(), key=lambda t: (t.created_at, str(t.id)))

    async def create_threshold(self, threshold: Threshold) -> Threshold:
        return self._thresholds.setdefault(threshold.id, threshold)

    async def update_threshold(self, threshold: Threshold) -> Threshold | None:
        if threshold.id not in self._thresholds:
            return None
        self._thresholds[threshold.id] = threshold
        return threshold

    async def destination(self, user_id: str) -> AlertDestination | None:
        return self._destinations.get(user_id)

    async def put_destination(self, destination: AlertDestination) -> AlertDestination:
        self._destinations[destination.user_id] = destination
        return destination

    async def apply_policy(self, policy: PolicyRecord) -> PolicyChange:
        if policy.id in self._policies:
            return PolicyChange(self._policies[policy.id], self._policy_version, changed=False)
        for old in list(self._policies.values()):
            if old.in_force and old.workflow_type is policy.workflow_type:
                self._policies[old.id] = dataclasses.replace(
                    old, reverted_by=policy.applied_by, reverted_at=policy.applied_at
                )
        self._policies[policy.id] = policy
        self._policy_version += 1
        return PolicyChange(policy, self._policy_version, changed=True)

    async def revert_policy(self, policy_id: uuid.UUID, by: str, at: datetime) -> PolicyChange:
        policy = self._policies.get(policy_id)
        if policy is None or not policy.in_force:
            return PolicyChange(policy, self._policy_version, changed=False)
        reverted = self._policies[policy_id] = dataclasses.replace(policy, reverted_by=by, reverted_at=at)
        self._policy_version += 1
        return PolicyChange(reverted, self._policy_version, changed=True)

    async def policies(self) -> tuple[int, list[PolicyRecord]]:
        newest = sorted(self._policies.values(), key=lambda p: (p.applied_at, str(p.id)), reverse=True)
        return self._policy_version, newest

    async def raise_alert(self, alert: Alert) -> bool:
        key = (alert.threshold_id, alert.period_start)
        if key in self._alert_keys or alert.id in self._alerts:
            return False
        self._alert_keys.add(key)
        self._alerts[alert.id] = alert
        return True

    async def get_alert(self, alert_id: uuid.UUID) -> Alert | None:
        return self._alerts.get(alert_id)

    async def alerts(self, where: AlertFilter) -> tuple[list[Alert], AlertCounts]:
        found = [a for a in self._alerts.values() if _alert_matches(a, where)]
        found.sort(key=lambda a: (a.raised_at, str(a.id)), reverse=True)
        severities = Counter(a.severity for a in found)
        counts = AlertCounts(len(found), sum(not a.acknowledged for a in found), dict(severities))
        return found[: where.limit], counts

    async def acknowledge(self, alert_id: uuid.UUID, acknowledged: bool, by: str, at: datetime) -> Alert | None:
        alert = self._alerts.get(alert_id)
        if alert is None:
            return None
        updated = dataclasses.replace(
            alert,
            acknowledged=acknowledged,
            acknowledged_by=by if acknowledged else None,
            acknowledged_at=at if acknowledged else None,
        )
        self._alerts[alert_id] = updated
        return updated

    async def mark_published(self, alert_id: uuid.UUID, at: datetime) -> None:
        alert = self._alerts.get(alert_id)
        if alert is not None and alert.published_at is None:
            self._alerts[alert_id] = dataclasses.replace(alert, published_at=at)

    async def unpublished_alerts(self, raised_before: datetime) -> list[Alert]:
        return [a for a in self._alerts.values() if a.published_at is None and a.raised_at < raised_before]

    async def claim_delivery(self, alert_id: uuid.UUID, channel: str, now: datetime, until: datetime) -> bool:
        alert = self._alerts.get(alert_id)
        if alert is None:
            return False
        for i, delivery in enumerate(alert.deliveries):
            if delivery.channel != channel:
                continue
            claimable = delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING) or (
                delivery.status is DeliveryStatus.SENDING and (delivery.claimed_until or now) <= now
            )
            if not claimable:
                return False
            leased = dataclasses.replace(delivery, status=DeliveryStatus.SENDING, claimed_until=until)
            self._replace_delivery(alert, i, leased)
            return True
        return False

    async def finish_delivery(
        self, alert_id: uuid.UUID, channel: str, status: DeliveryStatus, error: str | None, at: datetime
    ) -> None:
        alert = self._alerts.get(alert_id)
        if alert is None:
            return
        for i, delivery in enumerate(alert.deliveries):
            if delivery.channel == channel:
                done = dataclasses.replace(
                    delivery,
                    status=status,
                    attempts=delivery.attempts + 1,
                    last_error=error,
                    sent_at=at if status is DeliveryStatus.SENT else delivery.sent_at,
                    claimed_until=None,
                )
                self._replace_delivery(alert, i, done)

    def _replace_delivery(self, alert: Alert, index: int, delivery: Delivery) -> None:
        deliveries = list(alert.deliveries)
        deliveries[index] = delivery
        self._alerts[alert.id] = dataclasses.replace(alert, deliveries=tuple(deliveries))

    async def budget_states(self) -> list[BudgetState]:
        return [state for state, _ in self._budgets.values()]

    async def change_budget_state(self, state: BudgetState) -> BudgetState | None:
        key = (state.scope, state.period)
        stored = self._budgets.get(key)
        if stored is not None and (stored[0].action is state.action or stored[0].period_start > state.period_start):
            return None
        changed = dataclasses.replace(state, changed_at=_later(datetime.now(UTC), stored[0] if stored else None))
        self._budgets[key] = (changed, None)
        return changed

    async def mark_budget_published(self, state: BudgetState, at: datetime) -> None:
        stored = self._budgets.get((state.scope, state.period))
        if stored is not None and stored[0].changed_at == state.changed_at:
            self._budgets[(state.scope, state.period)] = (stored[0], at)

    async def claim_budget_republish(
        self, now: datetime, unpublished_before: datetime, published_before: datetime
    ) -> list[BudgetState]:
        due = []
        for key, (state, published_at) in self._budgets.items():
            never = published_at is None and state.changed_at < unpublished_before
            if never or (published_at is not None and published_at < published_before):
                self._budgets[key] = (state, now)
                due.append(state)
        return due


def _later(now: datetime, previous: BudgetState | None) -> datetime:
    """`now`, but always after the previous change: the routers keep the newest state by this time."""
    return now if previous is None else max(now, previous.changed_at + timedelta(microseconds=1))


def _matches(entry: CostEntry, where: EntryFilter) -> bool:
    return (
        (where.user_id is None or entry.user_id == where.user_id)
        and (where.start is None or entry.occurred_at >= where.start)
        and (where.end is None or entry.occurred_at < where.end)
        and (where.workflow_id is None or entry.workflow_id == where.workflow_id)
    )


def _dim_value(entry: CostEntry, dim: Dim) -> str:
    if dim == "provider":
        return entry.provider.value
    if dim == "model":
        return entry.model
    if dim == "day":
        return entry.occurred_at.astimezone(UTC).date().isoformat()
    if dim == "type":
        return entry.workflow_type.value
    if dim == "workflow":
        return str(entry.workflow_id) if entry.workflow_id else ""
    return entry.user_id


def _group(keys: tuple[str, ...], entries: list[CostEntry]) -> Group:
    return Group(
        keys=keys,
        cost_usd=sum((e.cost_usd for e in entries), Decimal(0)),
        calls=len(entries),
        prompt_tokens=sum(e.prompt_tokens for e in entries),
        completion_tokens=sum(e.completion_tokens for e in entries),
        workflows=len({e.workflow_id for e in entries if e.workflow_id is not None}),
        estimated_cost_usd=sum((e.cost_usd for e in entries if e.price_estimated), Decimal(0)),
        first_at=min(e.occurred_at for e in entries),
        last_at=max(e.occurred_at for e in entries),
    )


def _alert_matches(alert: Alert, where: AlertFilter) -> bool:
    return (
        (not where.only_scope or alert.scope_user_id == where.scope_user_id)
        and (where.severity is None or alert.severity is where.severity)
        and (where.acknowledged is None or alert.acknowledged is where.acknowledged)
        and (where.start is None or alert.raised_at >= where.start)
        and (where.end is None or alert.raised_at < where.end)
    )
