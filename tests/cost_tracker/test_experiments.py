"""A/B experiments in the cost-tracker: stable bucketing, arms checked against the price table, one running
experiment per workflow type sent to the routers, each arm's results with intervals from the recorded
history, and stopping with an arm promoted to the type's routing policy."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from contracts import Envelope
from contracts.enums import ErrorType, IntentType, Provider
from contracts.experiments import Arm, PromptVariant, bucket
from contracts.messages import ErrorInfo, Usage, UsageRecorded, WorkflowCompleted, WorkflowFailed
from libs.llm.prompts import PROMPT_VARIANTS
from tests.cost_tracker.conftest import ADMIN, ALICE, Harness, cost_request

T = IntentType
ARMS = [
    {"name": "azure-gpt4", "provider": "azure", "model": "gpt-4", "weight": "1"},
    {"name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini", "prompt_variant": "concise", "weight": "1"},
]


async def start(harness: Harness, arms: list[dict[str, Any]] = ARMS, **fields: Any) -> Any:
    params = {"op": "create", "name": "mini vs gpt-4", "workflow_type": "content_planning", "arms": arms, **fields}
    return await harness.ask("experiments", params, user=ADMIN)


class TestBucketing:
    def test_a_key_keeps_its_arm_and_each_arm_gets_its_share(self) -> None:
        """20,000 users over weights 1 and 3 (and one of 0): about a quarter in the first arm, none in the
        empty one; a user's arm is the same every time."""
        experiment = uuid.uuid4()
        arms = [
            Arm(name="a", provider=Provider.AZURE, weight=Decimal(1)),
            Arm(name="none", provider=Provider.AZURE, weight=Decimal(0)),
            Arm(name="b", provider=Provider.OPENAI, weight=Decimal(3)),
        ]
        chosen = [bucket(experiment, f"user-{i}", arms).name for i in range(20_000)]
        assert 0.24 < chosen.count("a") / len(chosen) < 0.26
        assert "none" not in chosen
        assert all(bucket(experiment, f"user-{i}", arms).name == chosen[i] for i in range(100))

    def test_the_contracts_prompt_variants_are_the_workers(self) -> None:
        """Every prompt variant an arm may name has its instruction in the workers' prompts."""
        assert set(get_args(PromptVariant)) == set(PROMPT_VARIANTS)


class TestStart:
    @pytest.mark.parametrize(
        ("arms", "problem"),
        [
            ([{**ARMS[0], "weight": "0"}, {**ARMS[1], "weight": "0"}], "add up to more than 0"),
            ([ARMS[0], {**ARMS[1], "provider": "anthropic"}], "provider"),
            ([ARMS[0], {**ARMS[1], "name": "azure-gpt4"}], "name of its own"),
            ([ARMS[0]], "at least 2"),
        ],
    )
    def test_bad_arms_are_refused_by_the_contract(self, arms: list[dict[str, Any]], problem: str) -> None:
        """Weights adding up to 0, an unknown provider, two arms of one name, a single arm: invalid."""
        with pytest.raises(ValidationError, match=problem):
            cost_request("experiments", {"op": "create", "name": "x", "workflow_type": "content_planning",
                                         "arms": arms}, ADMIN)  # fmt: skip

    async def test_a_model_unknown_to_its_provider_is_invalid(self, harness: Harness) -> None:
        """An arm naming a model the price table does not know for its provider: invalid_parameter."""
        reply = await start(harness, [ARMS[0], {**ARMS[1], "model": "gpt-99"}])
        assert reply.code == "invalid_parameter" and "gpt-99" in (reply.error or "")

    async def test_one_running_experiment_per_type_is_sent_to_the_routers(self, harness: Harness) -> None:
        """Started: routing.policy carries it with its arms; a second of the type is a conflict; a user may not
        start one."""
        first = await start(harness)
        assert first.ok, first.error
        assert (await start(harness)).code == "conflict"
        assert (await harness.ask("experiments", {"op": "create", "name": "x", "workflow_type": "content_planning",
                                                  "arms": ARMS}, user=ALICE)).code == "forbidden"  # fmt: skip
        [sent] = harness.policies
        [rule] = sent.experiments
        assert str(rule.experiment_id) == first.data["experiment_id"]
        assert [a.name for a in rule.arms] == ["azure-gpt4", "openai-mini"]
        assert rule.arms[1].prompt_variant == "concise"


def spent(arm_provider: Provider, workflow_id: uuid.UUID, tokens: int, *, generation: uuid.UUID | None = None,
          provider: Provider | None = None) -> Envelope:  # fmt: skip
    """A billed call of the workflow: azure gpt-4 $0.01/1K, openai gpt-4o-mini $0.002/1K (the seeds' rates)."""
    on = provider or arm_provider
    payload = UsageRecorded(
        provider=on, model="gpt-4" if on is Provider.AZURE else "gpt-4o-mini",
        usage=Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens),
        workflow_type=T.CONTENT_PLANNING, generation_id=generation or uuid.uuid4(),
    )  # fmt: skip
    return Envelope.new(payload, workflow_id=workflow_id, user_id=ALICE)


async def ended(
    harness: Harness, experiment_id: str, arm: str, duration_ms: float, error: ErrorType | None = None
) -> uuid.UUID:
    workflow_id = uuid.uuid4()
    fields = {"experiment_id": uuid.UUID(experiment_id), "arm": arm, "duration_ms": duration_ms}
    if error is None:
        end: WorkflowCompleted | WorkflowFailed = WorkflowCompleted(provider=None, content="x", **fields)
    else:
        end = WorkflowFailed(error=ErrorInfo(type=error, message="m", retryable=False), **fields)
    await harness.tracker.accounting.on_workflow_end(Envelope.new(end, workflow_id=workflow_id, user_id=ALICE))
    return workflow_id


class TestResults:
    async def test_each_arm_is_measured_from_its_workflows(self, harness: Harness) -> None:
        """Arm azure-gpt4: 10 workflows of $0.10 (100 to 1,000 ms), 2 failed (one on compliance), one draft
        rewritten, one call on openai; arm openai-mini: 5 of $0.002. Rates, counts, costs, quantiles as computed
        by hand, with their intervals."""
        experiment_id = (await start(harness)).data["experiment_id"]
        for i in range(10):
            error = {8: ErrorType.COMPLIANCE_VIOLATION, 9: ErrorType.AZURE_TIMEOUT}.get(i)
            wid = await ended(harness, experiment_id, "azure-gpt4", 100.0 * (i + 1), error)
            generation = uuid.uuid4()
            await harness.record(spent(Provider.AZURE, wid, 10_000, generation=generation))
            if i == 0:  # the content gate refused the draft: a second call for the same generation
                await harness.record(spent(Provider.AZURE, wid, 0, generation=generation))
            if i == 1:
                await harness.record(spent(Provider.AZURE, wid, 0, provider=Provider.OPENAI))
        for _ in range(5):
            wid = await ended(harness, experiment_id, "openai-mini", 50.0)
            await harness.record(spent(Provider.OPENAI, wid, 1_000))
        results = await harness.data("experiments", {"op": "results", "experiment_id": experiment_id}, user=ADMIN)
        a, b = results["arms"]
        assert (a["arm"], a["workflows"], a["completed"], a["failed"]) == ("azure-gpt4", 10, 8, 2)
        assert _estimate(a["failure_rate"]) == _d("0.2", "0.0567", "0.5098")  # Wilson, 2 of 10
        assert _estimate(a["fallback_rate"]) == _d("0.1", "0.0179", "0.4042")
        assert a["compliance_violations"] == 2 and _estimate(a["compliance_rate"])[0] == Decimal("0.2")
        assert Decimal(a["total_cost"]) == Decimal("1.0")
        assert _estimate(a["cost_per_workflow"]) == _d("0.1", "0.1", "0.1")
        assert _estimate(a["latency_p50_ms"]) == _d("500", "200", "900")
        assert _estimate(a["latency_p95_ms"])[0] == Decimal(1000)
        assert (b["workflows"], Decimal(b["total_cost"]), _estimate(b["failure_rate"])[0]) == (5, Decimal("0.01"), 0)


def _estimate(found: dict[str, Any]) -> tuple[Decimal | None, ...]:
    return tuple(None if found[k] is None else Decimal(found[k]) for k in ("value", "lower", "upper"))


def _d(*values: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(v) for v in values)


class TestStop:
    async def test_promoting_an_arm_makes_it_the_types_policy(self, harness: Harness) -> None:
        """Stopped with openai-mini promoted: the type's policy is openai gpt-4o-mini, and routing.policy carries
        it and no experiment; stopping again answers the same; promoting an arm it lacks is invalid."""
        experiment_id = (await start(harness)).data["experiment_id"]
        stop = {"op": "stop", "experiment_id": experiment_id}
        bad = await harness.ask("experiments", {**stop, "promote_arm": "nope"}, user=ADMIN)
        assert bad.code == "invalid_parameter"
        stopped = await harness.data("experiments", {**stop, "promote_arm": "openai-mini"}, user=ADMIN)
        assert (stopped["status"], stopped["promoted_arm"], stopped["stopped_by"]) == ("stopped", "openai-mini", ADMIN)
        again = await harness.data("experiments", {**stop, "promote_arm": "openai-mini"}, user=ADMIN)
        assert again["stopped_at"] == stopped["stopped_at"]
        [policy] = (await harness.data("policies", {}, user=ADMIN))["policies"]
        assert (policy["provider"], policy["model"], policy["in_force"]) == ("openai", "gpt-4o-mini", True)
        last = harness.policies[-1]
        assert last.experiments == [] and [(r.provider, r.model) for r in last.rules] == [(Provider.OPENAI,
                                                                                           "gpt-4o-mini")]  # fmt: skip
        listed = (await harness.data("experiments", {}, user=ADMIN))["experiments"]
        assert [e["status"] for e in listed] == ["stopped"]
        unknown = await harness.ask("experiments", {"op": "stop", "experiment_id": str(uuid.uuid4())}, user=ADMIN)
        assert unknown.code == "not_found"
