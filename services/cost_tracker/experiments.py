"""A/B experiments (admin): start one on a workflow type with its arms, list them, read each arm's results
from the recorded history, stop one — promoting an arm makes its provider and model the type's routing
policy (policies.py).

An arm must name a model the price table knows for its provider (else its costs would be estimates, and a
typo would run a model nobody meant): an unknown one is invalid_parameter, as are weights that do not add
up to more than 0 (the contract's check). A second running experiment of one workflow type is a conflict.
Every start and stop sends the routing set again (routing.policy carries the running experiments).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from contracts import costs as cc
from contracts.experiments import Experiment, ExperimentResults, Experiments
from libs.telemetry import get_logger
from services.cost_tracker.constants import EXPERIMENT_NAMESPACE, POLICY_NAMESPACE
from services.cost_tracker.errors import Conflict, Forbidden, InvalidParameter, NotFound
from services.cost_tracker.experiment_stats import LEVEL, arm_result
from services.cost_tracker.model import ExperimentRecord, PolicyRecord, Requester
from services.cost_tracker.policies import Policies, bucket_by_of
from services.cost_tracker.prices import PriceTable
from services.cost_tracker.store import CostStore

log = get_logger(__name__)


class ExperimentDesk:
    def __init__(self, store: CostStore, prices: PriceTable, policies: Policies) -> None:
        self._store = store
        self._prices = prices
        self._policies = policies

    async def create(self, who: Requester, request_id: uuid.UUID, q: cc.ExperimentCreate, now: datetime) -> Experiment:
        _admin(who)
        for arm in q.arms:
            if arm.model is not None and not self._prices.quote(arm.provider, arm.model).known:
                raise InvalidParameter(
                    f"arm {arm.name}: model {arm.model} is not in the price table for {arm.provider.value}"
                )
        experiment = ExperimentRecord(
            id=uuid.uuid5(EXPERIMENT_NAMESPACE, str(request_id)),
            name=q.name,
            workflow_type=q.workflow_type,
            bucket_by=q.bucket_by,
            arms=tuple(q.arms),
            created_by=who.user_id,
            created_at=now,
        )
        stored = await self._store.create_experiment(experiment)
        if stored is None:
            raise Conflict(f"an experiment of {q.workflow_type.value} is running; stop it first")
        log.info("cost.experiment.started", experiment_id=str(stored.id), arms=len(stored.arms))
        await self._policies.publish()
        return experiment_view(stored)

    async def list(self, who: Requester) -> Experiments:
        _admin(who)
        found = await self._store.experiments()
        ordered = [e for e in found if e.status == "running"] + [e for e in found if e.status != "running"]
        return Experiments(experiments=[experiment_view(e) for e in ordered])

    async def results(self, who: Requester, experiment_id: uuid.UUID) -> ExperimentResults:
        _admin(who)
        experiment = await self._find(experiment_id)
        samples = await self._store.experiment_samples(experiment_id)
        arms = [arm_result(arm, [s for s in samples if s.arm == arm.name]) for arm in experiment.arms]
        return ExperimentResults(experiment=experiment_view(experiment), interval_level=LEVEL, arms=arms)

    async def stop(
        self, who: Requester, experiment_id: uuid.UUID, promote_arm: str | None, now: datetime
    ) -> Experiment:
        _admin(who)
        experiment = await self._find(experiment_id)
        promoted = next((a for a in experiment.arms if a.name == promote_arm), None)
        if promote_arm is not None and promoted is None:
            raise InvalidParameter(f"experiment {experiment_id} has no arm {promote_arm}")
        if experiment.status != "running":
            if promote_arm is not None and promote_arm != experiment.promoted_arm:
                raise Conflict(f"experiment {experiment_id} is stopped already")
            return experiment_view(experiment)
        stopped = await self._store.stop_experiment(experiment_id, who.user_id, now, promote_arm)
        assert stopped is not None  # found above; experiments are never deleted
        if promoted is not None:
            policy = PolicyRecord(
                id=uuid.uuid5(POLICY_NAMESPACE, f"experiment|{experiment_id}"),
                workflow_type=experiment.workflow_type,
                provider=promoted.provider,
                model=promoted.model,
                recommendation_id=None,
                estimated_saving_usd=None,
                applied_by=who.user_id,
                applied_at=now,
            )
            await self._store.apply_policy(policy)
        log.info("cost.experiment.stopped", experiment_id=str(experiment_id), promoted=promote_arm)
        await self._policies.publish()
        return experiment_view(stopped)

    async def _find(self, experiment_id: uuid.UUID) -> ExperimentRecord:
        found = next((e for e in await self._store.experiments() if e.id == experiment_id), None)
        if found is None:
            raise NotFound(f"no experiment {experiment_id}")
        return found


def _admin(who: Requester) -> None:
    if not who.is_admin:
        raise Forbidden("experiments are for admins")


def experiment_view(e: ExperimentRecord) -> Experiment:
    return Experiment(
        experiment_id=e.id,
        workflow_type=e.workflow_type,
        bucket_by=bucket_by_of(e.bucket_by),
        arms=list(e.arms),
        name=e.name,
        status="running" if e.status == "running" else "stopped",
        promoted_arm=e.promoted_arm,
        created_by=e.created_by,
        created_at=e.created_at,
        stopped_by=e.stopped_by,
        stopped_at=e.stopped_at,
    )
