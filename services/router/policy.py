"""The routing policy in force: which provider and model each workflow type goes to, as the cost-tracker last
sent it (routing.policy, applied from its recommendations), and the running experiments (A/B arms).

The policy is stored (so a restarted replica knows it) and cached here; the cache is reloaded when older
than ROUTER_BUDGET_REFRESH_S, so a policy handled by another replica applies here within that time. A policy
only ever moves forward: a message of a lower or equal version than the stored one is ignored. Selection
(selection.py) reads `rule_for` and `assign` (the arm of a running experiment, by a stable hash of the
experiment and the user or workflow id) when it picks a new workflow's provider; the engine asks `choice` the
model and prompt variant of each generation request — the workflow's arm's, else its type's policy's — so a
retry on that provider asks for the same, and a fallback to the other provider its worker's own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime

from contracts.costs import PolicyRule, RoutingPolicy
from contracts.enums import IntentType, Provider
from contracts.experiments import ExperimentRule, bucket
from services.router.selection import Assignment
from services.router.state import Workflow
from services.router.store import WorkflowStore


class PolicyBook:
    def __init__(self, store: WorkflowStore, *, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._policy: RoutingPolicy | None = None
        self._rules: dict[IntentType, PolicyRule] = {}
        self._experiments: dict[IntentType, ExperimentRule] = {}  # by the type it splits
        self._running: dict[uuid.UUID, ExperimentRule] = {}  # by id
        self._loaded_at: float | None = None

    @property
    def version(self) -> int:
        """The version in force here (0: none)."""
        return self._policy.version if self._policy else 0

    async def record(self, policy: RoutingPolicy, observed_at: datetime) -> bool:
        """Store `policy` if it is newer than the stored one, and apply it here at once; whether it was newer."""
        kept = await self._store.put_policy(policy, observed_at)
        if kept or policy.version > self.version:
            self._use(policy)
        return kept

    async def refresh(self) -> None:
        """Reload the stored policy when the cache is older than `refresh_s`."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_s:
            stored = await self._store.routing_policy()
            if stored is not None and stored.version >= self.version:
                self._use(stored)
            self._loaded_at = now

    def rule_for(self, workflow_type: IntentType) -> PolicyRule | None:
        return self._rules.get(workflow_type)

    def assign(self, workflow_type: IntentType, user_id: str, workflow_id: str) -> Assignment | None:
        """The arm of the running experiment on `workflow_type` a new workflow belongs to (None: none runs)."""
        experiment = self._experiments.get(workflow_type)
        if experiment is None:
            return None
        key = user_id if experiment.bucket_by == "user" else workflow_id
        return experiment.experiment_id, bucket(experiment.experiment_id, key, experiment.arms)

    def choice(self, workflow: Workflow, provider: Provider) -> tuple[str | None, str | None]:
        """The model (None: the worker's own) and prompt variant (None: the default) a generation request of
        `workflow` on `provider` asks for: its arm's while its experiment runs, else its type's policy's."""
        assigned = workflow.arm()
        running = None if assigned is None else self._running.get(assigned[0])
        arm = None if running is None or assigned is None else running.arm_named(assigned[1])
        if arm is not None:
            return (arm.model, arm.prompt_variant) if arm.provider is provider else (None, None)
        rule = self._rules.get(workflow.intent.type)
        return (rule.model if rule is not None and rule.provider is provider else None), None

    def _use(self, policy: RoutingPolicy) -> None:
        self._policy = policy
        self._rules = {rule.workflow_type: rule for rule in policy.rules}
        self._experiments = {experiment.workflow_type: experiment for experiment in policy.experiments}
        self._running = {experiment.experiment_id: experiment for experiment in policy.experiments}
