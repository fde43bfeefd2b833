"""The routing policy in force: which provider and model each workflow type goes to, as the cost-tracker last
sent it (routing.policy, applied from its recommendations).

The policy is stored (so a restarted replica knows it) and cached here; the cache is reloaded when older
than ROUTER_BUDGET_REFRESH_S, so a policy handled by another replica applies here within that time. A policy
only ever moves forward: a message of a lower or equal version than the stored one is ignored. Selection
(selection.py) reads `rule_for` when it picks a new workflow's provider; the engine asks `model_for` the model
of each generation request, so a retry on the policy's provider asks for the same model, and a fallback to
the other provider its worker's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from contracts.costs import PolicyRule, RoutingPolicy
from contracts.enums import IntentType, Provider
from services.router.store import WorkflowStore


class PolicyBook:
    def __init__(self, store: WorkflowStore, *, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._policy: RoutingPolicy | None = None
        self._rules: dict[IntentType, PolicyRule] = {}
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

    def model_for(self, workflow_type: IntentType, provider: Provider) -> str | None:
        """The model a generation request of `workflow_type` on `provider` asks for (None: the worker's own)."""
        rule = self._rules.get(workflow_type)
        return rule.model if rule is not None and rule.provider is provider else None

    def _use(self, policy: RoutingPolicy) -> None:
        self._policy = policy
        self._rules = {rule.workflow_type: rule for rule in policy.rules}
