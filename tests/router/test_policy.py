"""Routing policies (applied cost recommendations) in the router: a workflow type goes to the policy's provider
and asks for its model, below force_provider and a downgrade budget; only a newer version replaces the policy,
and a restarted router knows it from the store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from contracts import Envelope
from contracts.costs import PolicyRule, RoutingPolicy
from contracts.enums import BudgetAction, CostPeriod, ErrorType, IntentType, Provider
from contracts.experiments import Arm, ExperimentRule, bucket
from contracts.messages import BudgetStatus
from services.router.store import WorkflowStore
from tests.router.harness import Harness, fail, intent, ok, router_settings

T = IntentType


def rule(workflow_type: IntentType, provider: Provider, model: str | None) -> PolicyRule:
    return PolicyRule(
        policy_id=uuid.uuid4(),
        workflow_type=workflow_type,
        provider=provider,
        model=model,
        recommendation_id=uuid.uuid4(),
        applied_by="admin",
        applied_at=datetime.now(UTC),
    )


async def send(harness: Harness, version: int, *rules: PolicyRule) -> None:
    """A routing.policy as the cost-tracker publishes it, handled by the router."""
    await harness.router.on_routing_policy(Envelope.new(RoutingPolicy(version=version, rules=list(rules))))


def models(harness: Harness, provider: Provider) -> list[str | None]:
    return [call.request.payload.model for call in harness.workers.calls[provider]]  # type: ignore[attr-defined]


class TestPolicyRouting:
    async def test_each_type_goes_to_its_policys_provider_and_model(self, harness: Harness) -> None:
        """content_planning (azure by default) runs on openai asking gpt-4o-mini; message_generation on azure
        asking gpt-4o; a type without a rule keeps the default rules and the worker's model."""
        planning = rule(T.CONTENT_PLANNING, Provider.OPENAI, "gpt-4o-mini")
        await send(harness, 1, planning, rule(T.MESSAGE_GENERATION, Provider.AZURE, "gpt-4o"))
        planned, _ = await harness.run(intent(T.CONTENT_PLANNING))
        written, _ = await harness.run(intent(T.MESSAGE_GENERATION))
        validated, _ = await harness.run(intent(T.CONTENT_VALIDATION))
        assert (planned.current_provider, written.current_provider) == (Provider.OPENAI, Provider.AZURE)
        assert validated.current_provider is Provider.OPENAI
        assert (planned.routing_policy_id, validated.routing_policy_id) == (planning.policy_id, None)
        assert models(harness, Provider.OPENAI) == ["gpt-4o-mini", None]
        assert models(harness, Provider.AZURE) == ["gpt-4o"]

    async def test_force_provider_and_a_downgrade_outrank_the_policy(self, harness: Harness) -> None:
        """forceProvider azure beats a policy to openai; a downgrade budget sends a policy-to-azure type to openai."""
        await send(harness, 1, rule(T.CONTENT_PLANNING, Provider.OPENAI, "gpt-4o-mini"),
                   rule(T.MESSAGE_GENERATION, Provider.AZURE, "gpt-4o"))  # fmt: skip
        forced, _ = await harness.run(intent(T.CONTENT_PLANNING, force_provider=Provider.AZURE))
        assert forced.current_provider is Provider.AZURE and models(harness, Provider.AZURE) == [None]
        status = BudgetStatus(action=BudgetAction.DOWNGRADE, period=CostPeriod.DAILY, spent_usd=Decimal(9))
        await harness.router.on_budget_status(Envelope.new(status))
        downgraded, _ = await harness.run(intent(T.MESSAGE_GENERATION))
        assert downgraded.current_provider is Provider.OPENAI and models(harness, Provider.OPENAI) == [None]

    async def test_a_retry_asks_the_same_model_and_a_fallback_the_workers_own(self, harness: Harness) -> None:
        """A rate-limited azure attempt of a policy-to-azure type falls back to openai asking no model; an
        openai retry of a policy-to-openai type asks the policy's model again."""
        await send(harness, 1, rule(T.MESSAGE_GENERATION, Provider.AZURE, "gpt-4o"),
                   rule(T.CONTENT_PLANNING, Provider.OPENAI, "gpt-4o-mini"))  # fmt: skip
        harness.workers.script(Provider.AZURE, fail(ErrorType.RATE_LIMIT_EXCEEDED))
        fell_back, _ = await harness.run(intent(T.MESSAGE_GENERATION))
        assert fell_back.current_provider is Provider.OPENAI
        assert (models(harness, Provider.AZURE), models(harness, Provider.OPENAI)) == (["gpt-4o"], [None])
        harness.workers.script(Provider.OPENAI, fail(ErrorType.RATE_LIMIT_EXCEEDED), ok())
        await harness.run(intent(T.CONTENT_PLANNING))
        assert models(harness, Provider.OPENAI) == [None, "gpt-4o-mini", "gpt-4o-mini"]

    async def test_only_a_newer_version_replaces_the_policy(self, harness: Harness) -> None:
        """Version 2 (the rule reverted) arriving before a late version 1: the type is routed by default."""
        await send(harness, 2)
        await send(harness, 1, rule(T.CONTENT_PLANNING, Provider.OPENAI, "gpt-4o-mini"))
        view, _ = await harness.run(intent(T.CONTENT_PLANNING))
        assert view.current_provider is Provider.AZURE
        stored = await harness.store.routing_policy()
        assert stored is not None and (stored.version, stored.rules) == (2, [])

    async def test_a_restarted_router_routes_by_the_stored_policy(self, harness: Harness, store: WorkflowStore) -> None:
        """A router started afresh on the same store applies the policy another instance received."""
        await send(harness, 3, rule(T.CONTENT_PLANNING, Provider.OPENAI, "gpt-4o-mini"))
        await harness.close()
        restarted = await Harness.start(store, router_settings())
        try:
            view, _ = await restarted.run(intent(T.CONTENT_PLANNING))
            assert view.current_provider is Provider.OPENAI
            assert models(restarted, Provider.OPENAI) == ["gpt-4o-mini"]
        finally:
            await restarted.close()


def experiment(bucket_by: str = "workflow") -> ExperimentRule:
    return ExperimentRule(
        experiment_id=uuid.uuid4(),
        workflow_type=T.CONTENT_PLANNING,
        bucket_by=bucket_by,  # type: ignore[arg-type]
        arms=[
            Arm(name="big", provider=Provider.AZURE, model="gpt-4o", prompt_variant="playful", weight=Decimal(1)),
            Arm(
                name="mini", provider=Provider.OPENAI, model="gpt-4o-mini", prompt_variant="concise", weight=Decimal(1)
            ),
        ],
    )


def asked(harness: Harness) -> list[tuple[Provider, str | None, str | None]]:
    calls = harness.workers.calls[Provider.AZURE] + harness.workers.calls[Provider.OPENAI]
    requests = [call.request.payload for call in sorted(calls, key=lambda c: c.at)]
    return [(r.provider, r.model, r.prompt_variant) for r in requests]  # type: ignore[attr-defined]


class TestExperiments:
    async def test_each_workflow_runs_its_arm_and_says_so_when_it_ends(self, harness: Harness) -> None:
        """Workflows bucketed per workflow id: each asks its arm's provider, model and prompt variant, and its
        workflow.completed names the experiment and the arm."""
        rule = experiment()
        await harness.router.on_routing_policy(Envelope.new(RoutingPolicy(version=1, rules=[], experiments=[rule])))
        ids = [uuid.uuid4() for _ in range(64)]
        arms = {wid: bucket(rule.experiment_id, str(wid), rule.arms) for wid in ids}
        chosen = [next(w for w in ids if arms[w].name == "big"), next(w for w in ids if arms[w].name == "mini")]
        for wid in chosen:
            view, finished = await harness.run(intent(T.CONTENT_PLANNING), workflow_id=wid)
            end = finished.payload
            assert (end.experiment_id, end.arm) == (rule.experiment_id, arms[wid].name)  # type: ignore[attr-defined]
            assert (view.experiment_id, view.arm) == (rule.experiment_id, arms[wid].name)
        assert asked(harness) == [(Provider.AZURE, "gpt-4o", "playful"), (Provider.OPENAI, "gpt-4o-mini", "concise")]

    async def test_bucketing_by_user_keeps_a_users_workflows_together(self, harness: Harness) -> None:
        """Five workflows of one user all ask the same arm."""
        rule = experiment("user")
        await harness.router.on_routing_policy(Envelope.new(RoutingPolicy(version=1, rules=[], experiments=[rule])))
        for _ in range(5):
            await harness.run(intent(T.CONTENT_PLANNING), user="steady")
        arm = bucket(rule.experiment_id, "steady", rule.arms)
        assert asked(harness) == [(arm.provider, arm.model, arm.prompt_variant)] * 5

    async def test_force_provider_and_a_stopped_experiment_leave_the_arms(self, harness: Harness) -> None:
        """A forced workflow is in no arm; once the experiment is gone (a newer set with a policy instead), the
        type follows the policy."""
        running = experiment()
        await harness.router.on_routing_policy(Envelope.new(RoutingPolicy(version=1, rules=[], experiments=[running])))
        _, forced = await harness.run(intent(T.CONTENT_PLANNING, force_provider=Provider.OPENAI))
        assert forced.payload.arm is None  # type: ignore[attr-defined]
        await send(harness, 2, rule(T.CONTENT_PLANNING, Provider.OPENAI, "gpt-4.1-mini"))
        _, after = await harness.run(intent(T.CONTENT_PLANNING))
        assert after.payload.arm is None  # type: ignore[attr-defined]
        assert asked(harness)[-1] == (Provider.OPENAI, "gpt-4.1-mini", None)
