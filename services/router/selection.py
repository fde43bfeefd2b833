"""Which provider a new workflow's first attempt goes to (the original plan's rules).

1. a budget in `downgrade` sends it to openai, the cheaper provider — an operator's cost rule outranks the
   requester's wish, and an open circuit does not lift it;
2. `force_provider` wins over everything else, open circuit included (the requester asked for it);
3. a running experiment on the intent's type puts the workflow in one of its arms (stable bucketing), whose
   provider it goes to; otherwise a routing policy for the type (an applied cost recommendation: policy.py)
   names its provider;
4. otherwise azure for content_planning and for multi-platform work (`requires_multi_platform` or more
   than one platform), openai for everything else (message_generation, and content_validation /
   campaign_execution on one platform);
5. a provider whose circuit is open is avoided when the other's allows (breaker.Breakers.choose).

These rules pick the first attempt only; later attempts follow the fallback matrix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from contracts.costs import PolicyRule
from contracts.enums import IntentType, Provider
from contracts.experiments import Arm
from contracts.messages import Intent
from services.router.breaker import Breakers


@dataclass(frozen=True, slots=True)
class Selection:
    provider: Provider
    reason: str  # recorded in the workflow's history
    experiment: str | None = None  # "<experiment id>:<arm>" when an experiment's arm chose it
    policy_id: uuid.UUID | None = None  # the routing policy that chose it


# A running experiment's arm for the workflow: the experiment's id and the arm.
Assignment = tuple[uuid.UUID, Arm]


def preferred_provider(
    intent: Intent, policy: PolicyRule | None = None, assigned: Assignment | None = None
) -> Selection:
    """The provider the intent calls for, breakers and budgets aside."""
    if intent.force_provider is not None:
        return Selection(intent.force_provider, "force_provider")
    if assigned is not None:
        experiment_id, arm = assigned
        tag = f"{experiment_id}:{arm.name}"
        return Selection(arm.provider, f"experiment:{tag}", experiment=tag)
    if policy is not None and policy.workflow_type is intent.type:
        return Selection(policy.provider, f"cost_policy:{policy.policy_id}", policy_id=policy.policy_id)
    if intent.type is IntentType.CONTENT_PLANNING:
        return Selection(Provider.AZURE, "content_planning")
    if intent.requires_multi_platform or len(intent.platforms) > 1:
        return Selection(Provider.AZURE, "multi_platform")
    return Selection(Provider.OPENAI, intent.type.value)


def select_provider(
    intent: Intent,
    breakers: Breakers,
    *,
    downgrade: bool = False,
    policy: PolicyRule | None = None,
    assigned: Assignment | None = None,
) -> Selection:
    """The provider of a new workflow's first attempt (`policy`: the routing policy of the intent's type;
    `assigned`: its experiment arm)."""
    if downgrade:
        return Selection(Provider.OPENAI, "budget_downgrade")
    preferred = preferred_provider(intent, policy, assigned)
    if intent.force_provider is not None:
        return preferred
    chosen = breakers.choose(preferred.provider)
    if chosen is preferred.provider:
        return preferred
    reason = f"circuit_open:{preferred.provider.value}"
    return Selection(chosen, reason, experiment=preferred.experiment, policy_id=preferred.policy_id)
