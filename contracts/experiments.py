"""A/B experiments on routing: a workflow type's new workflows split between arms (a provider, a model, a prompt
variant), each workflow in one arm for good by a stable hash of the experiment and its user or workflow id.

The cost-tracker keeps the experiments and their results; the routers get the running ones inside
`routing.policy` (contracts/costs.py) and assign the arms (`bucket`). The requests that create, list, stop
and measure them are cost requests (contracts/costs.py), answered with the shapes below.
"""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from contracts.enums import IntentType, Provider
from contracts.messages import Part

# The prompt variants a worker knows (libs/llm/prompts.py: PROMPT_VARIANTS adds each one's instruction).
PromptVariant = Literal["default", "concise", "playful"]
ArmName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
Weight = Annotated[Decimal, Field(ge=0, le=1_000_000, allow_inf_nan=False, max_digits=16, decimal_places=6)]
BucketBy = Literal["user", "workflow"]

MIN_ARMS: Final = 2
MAX_ARMS: Final = 8
# A bucket is the first 8 bytes of sha256("<experiment id>:<user or workflow id>") as a fraction of 2^64.
_BUCKET_SPACE: Final = 2**64


class Arm(Part):
    name: ArmName
    provider: Provider
    model: ModelName | None = Field(default=None, description="asked of the provider; null: the worker's own")
    prompt_variant: PromptVariant = "default"
    weight: Weight = Field(description="its share of the workflows: weight / the arms' total")


class ExperimentRule(Part):
    """A running experiment as the routers apply it."""

    experiment_id: uuid.UUID
    workflow_type: IntentType
    bucket_by: BucketBy = Field(description="user: a user's workflows all in one arm; workflow: each on its own")
    arms: list[Arm] = Field(min_length=MIN_ARMS, max_length=MAX_ARMS)

    def arm_named(self, name: str) -> Arm | None:
        return next((arm for arm in self.arms if arm.name == name), None)


class Experiment(ExperimentRule):
    name: str
    status: Literal["running", "stopped"]
    promoted_arm: str | None = Field(description="the arm made the type's routing policy when it stopped")
    created_by: str
    created_at: AwareDatetime
    stopped_by: str | None
    stopped_at: AwareDatetime | None


class Estimate(Part):
    """A figure with its 95% interval (null when there is nothing to estimate from)."""

    value: Decimal | None
    lower: Decimal | None
    upper: Decimal | None


class ArmResult(Part):
    arm: str
    workflows: int = Field(description="ended workflows assigned to the arm")
    completed: int
    failed: int
    failure_rate: Estimate = Field(description="failed / ended (Wilson interval)")
    fallback_rate: Estimate = Field(description="ended workflows with a call on another provider than the arm's")
    compliance_violations: int = Field(description="texts rewritten for the content gate, and compliance failures")
    compliance_rate: Estimate = Field(description="workflows with a compliance violation / ended")
    total_cost: Decimal
    cost_per_workflow: Estimate = Field(description="USD (normal interval of the mean)")
    latency_p50_ms: Estimate = Field(description="workflow duration (distribution-free interval of the quantile)")
    latency_p95_ms: Estimate


class ExperimentResults(Part):
    experiment: Experiment
    interval_level: Decimal = Field(description="the intervals' confidence (0.95)")
    arms: list[ArmResult]


class Experiments(Part):
    experiments: list[Experiment] = Field(description="running first, then stopped, newest first")


def bucket(experiment_id: uuid.UUID, key: str, arms: list[Arm]) -> Arm:
    """The arm of `key` (a user or workflow id): the same for the same experiment and key, whatever the process,
    each arm with its weight's share of the keys."""
    digest = hashlib.sha256(f"{experiment_id}:{key}".encode()).digest()
    point = Decimal(int.from_bytes(digest[:8], "big")) / _BUCKET_SPACE
    total = sum((arm.weight for arm in arms), Decimal(0))
    reached = Decimal(0)
    for arm in arms:
        reached += arm.weight / total
        if point < reached and arm.weight > 0:
            return arm
    return next(arm for arm in reversed(arms) if arm.weight > 0)
