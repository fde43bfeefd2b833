"""Optimisation that acts: a switch_provider recommendation applied becomes the routing policy of its workflow
type (its provider and model), carried to the routers as `routing.policy` and stored on both sides.

    apply   (admin) the recommendation must still be recommended over its lookback — an unknown or stale id
            is a conflict (409), a price_missing one is not a routing and answers invalid_parameter
    revert  (admin) the type is routed by the default rules again; reverting a reverted policy changes nothing
    list    anyone: the policies in force and the reverted ones, with the set's version

Every change publishes the whole set in force with its version (one more per change, counted in the same
transaction as the change); a router stores the highest version it saw, so a late or repeated message never
undoes a newer one. The sweep sends the set again every COST_BUDGET_REPUBLISH_S, so a router whose database
was lost, or a publish lost after the commit, is corrected within that time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime

from contracts import Envelope
from contracts import costs as cc
from contracts.experiments import BucketBy, ExperimentRule
from libs.bus import Bus
from libs.telemetry import get_logger
from services.cost_tracker.constants import POLICY_NAMESPACE
from services.cost_tracker.errors import Conflict, Forbidden, InvalidParameter, NotFound
from services.cost_tracker.model import PolicyRecord, Requester
from services.cost_tracker.reports import Reports
from services.cost_tracker.store import CostStore

log = get_logger(__name__)


class Policies:
    def __init__(
        self,
        bus: Bus,
        store: CostStore,
        reports: Reports,
        *,
        republish_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._store = store
        self._reports = reports
        self._republish_s = republish_s
        self._clock = clock
        self._sent_at: float | None = None

    async def apply(
        self, who: Requester, request_id: uuid.UUID, recommendation_id: uuid.UUID, lookback_days: int, now: datetime
    ) -> cc.Policy:
        _admin(who, "apply a recommendation")
        current = await self._reports.optimization(None, lookback_days, now)
        found = next((r for r in current.recommendations if r.id == recommendation_id), None)
        if found is None:
            raise Conflict(
                f"recommendation {recommendation_id} is unknown or no longer recommended over the last "
                f"{lookback_days} days; ask for the current ones"
            )
        if found.kind != "switch_provider" or found.workflow_type is None or found.to_provider is None:
            raise InvalidParameter("only a switch_provider recommendation routes a workflow type")
        policy = PolicyRecord(
            id=uuid.uuid5(POLICY_NAMESPACE, str(request_id)),
            workflow_type=found.workflow_type,
            provider=found.to_provider,
            model=found.model,
            recommendation_id=recommendation_id,
            estimated_saving_usd=found.estimated_saving,
            applied_by=who.user_id,
            applied_at=now,
        )
        change = await self._store.apply_policy(policy)
        assert change.policy is not None  # stored now, or before (a redelivery)
        if change.changed:
            log.info(
                "cost.policy.applied",
                policy_id=str(policy.id),
                workflow_type=policy.workflow_type.value,
                provider=policy.provider.value,
                model=policy.model,
                version=change.version,
            )
            await self.publish()
        return policy_view(change.policy)

    async def revert(self, who: Requester, policy_id: uuid.UUID, now: datetime) -> cc.Policy:
        _admin(who, "revert a routing policy")
        change = await self._store.revert_policy(policy_id, who.user_id, now)
        if change.policy is None:
            raise NotFound(f"no routing policy {policy_id}")
        if change.changed:
            log.info("cost.policy.reverted", policy_id=str(policy_id), version=change.version)
            await self.publish()
        return policy_view(change.policy)

    async def list(self) -> cc.Policies:
        version, found = await self._store.policies()
        ordered = [p for p in found if p.in_force] + [p for p in found if not p.in_force]
        return cc.Policies(version=version, policies=[policy_view(p) for p in ordered])

    async def publish(self) -> None:
        """Send the set in force — the policies and the running experiments — with its version (nothing before
        the first change). The version is read again after the experiments: a set is sent only as it was at
        its version (routers ignore a second message of a version they have)."""
        while True:
            version, found = await self._store.policies()
            if version == 0:
                return
            running = [e for e in await self._store.experiments() if e.status == "running"]
            if (await self._store.policies())[0] == version:
                break
        rules = [rule_view(p) for p in found if p.in_force]
        experiments = [
            ExperimentRule(experiment_id=e.id, workflow_type=e.workflow_type, bucket_by=bucket_by_of(e.bucket_by),
                           arms=list(e.arms))
            for e in running
        ]  # fmt: skip
        policy = cc.RoutingPolicy(version=version, rules=rules, experiments=experiments)
        await self._bus.publish(Envelope.new(policy))
        self._sent_at = self._clock()

    async def republish_due(self) -> None:
        """The sweep's part: the set again once COST_BUDGET_REPUBLISH_S passed since this replica sent it."""
        if self._sent_at is None or self._clock() - self._sent_at >= self._republish_s:
            await self.publish()


def bucket_by_of(value: str) -> BucketBy:
    """The stored spelling of an experiment's bucketing, typed."""
    return "user" if value == "user" else "workflow"


def _admin(who: Requester, what: str) -> None:
    if not who.is_admin:
        raise Forbidden(f"only an admin may {what}")


def rule_view(p: PolicyRecord) -> cc.PolicyRule:
    return cc.PolicyRule(
        policy_id=p.id,
        workflow_type=p.workflow_type,
        provider=p.provider,
        model=p.model,
        recommendation_id=p.recommendation_id,
        applied_by=p.applied_by,
        applied_at=p.applied_at,
    )


def policy_view(p: PolicyRecord) -> cc.Policy:
    return cc.Policy(
        **rule_view(p).model_dump(),
        estimated_saving=p.estimated_saving_usd,
        in_force=p.in_force,
        automatic=p.automatic,
        reverted_by=p.reverted_by,
        reverted_at=p.reverted_at,
    )
