"""The cost endpoints against a real cost-tracker on the memory bus: every answer as documented, exact
amounts, each user's own costs only, clear 4xx for bad input, and ?wait=true's cost from the cost-tracker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from contracts import Envelope, Message
from contracts.enums import Provider, ProviderState, WorkflowStatus
from contracts.messages import (
    ProviderStates,
    RetryAttempts,
    Usage,
    UsageRecorded,
    WorkflowAccepted,
    WorkflowCompleted,
    WorkflowRequested,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowView,
)
from contracts.routing import COST_TRACKER, ROUTER
from libs.bus.memory import MemoryBus
from services.cost_tracker.service import CostTracker
from services.cost_tracker.store import MemoryStore
from services.gateway import make_token
from tests.cost_tracker.conftest import eventually, tracker_settings, usage
from tests.gateway.conftest import ALICE, BOB, PLAN, SECRET, Answer, Harness, MakeGateway

STATS = "/api/v2/costs/stats"
BREAKDOWN = "/api/v2/costs/breakdown"
CAMPAIGN_COSTS = "/api/v2/campaigns/costs"
THRESHOLDS = "/api/v2/costs/thresholds"
ALERTS = "/api/v2/costs/alerts"
FORECAST = "/api/v2/costs/forecast"
OPTIMIZATION = "/api/v2/costs/optimization"
DESTINATION = "/api/v2/costs/alert-destination"
APPLY = "/api/v2/costs/optimization/apply"
REVERT = "/api/v2/costs/optimization/revert"
POLICIES = "/api/v2/costs/optimization/policies"
EXPERIMENTS = "/api/admin/experiments"
OPTIMIZE = "/api/v2/costs/optimize"
ADMIN = "boss"


@dataclass
class PipelineRouter:
    """Stands in for the router and the workers: accepts a workflow, then — like the real pipeline — the
    worker publishes usage.recorded and the router completes the workflow (its view carries no cost).
    `usage_delay_s` sends the usage that long after the completion (the two travel separately)."""

    bus: MemoryBus
    tokens: tuple[int, int] = (1200, 800)
    usage_delay_s: float = 0.0
    retries: RetryAttempts = field(default_factory=RetryAttempts)
    views: dict[uuid.UUID, WorkflowView] = field(default_factory=dict)

    async def on_requested(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        assert isinstance(request, WorkflowRequested) and envelope.workflow_id and envelope.user_id
        now = datetime.now(UTC)
        view = WorkflowView(
            workflow_id=envelope.workflow_id,
            user_id=envelope.user_id,
            status=WorkflowStatus.GENERATING,
            intent_type=request.intent.type,
            priority=request.intent.priority,
            current_provider=Provider.AZURE,
            provider_states=ProviderStates(azure=ProviderState.EXECUTING),
            retry_attempts=self.retries,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(minutes=1),
        )
        self.views[view.workflow_id] = view
        asyncio.get_running_loop().create_task(self._run(envelope, view))
        return WorkflowAccepted(accepted=True, workflow=view)

    async def _run(self, request: Envelope, view: WorkflowView) -> None:
        prompt, completion = self.tokens
        billed = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        recorded = UsageRecorded(
            provider=Provider.AZURE, model="gpt-4", usage=billed, workflow_type=view.intent_type,
            generation_id=uuid.uuid4(),
        )  # fmt: skip
        if not self.usage_delay_s:
            await self.bus.publish(request.child(recorded))
        now = datetime.now(UTC)
        self.views[view.workflow_id] = view.model_copy(
            update={
                "status": WorkflowStatus.COMPLETED,
                "result": "done",
                "usage": billed,
                "provider_states": ProviderStates(azure=ProviderState.COMPLETED),
                "updated_at": now,
                "completed_at": now,
            }
        )
        done = WorkflowCompleted(provider=Provider.AZURE, content="done", duration_ms=5.0, usage=billed)
        await self.bus.publish(request.child(done))
        if self.usage_delay_s:
            await asyncio.sleep(self.usage_delay_s)
            await self.bus.publish(request.child(recorded))

    async def on_status(self, envelope: Envelope) -> Message | None:
        query = envelope.payload
        assert isinstance(query, WorkflowStatusQuery)
        view = self.views.get(query.workflow_id)
        return WorkflowStatusReply(found=view is not None, workflow=view)


@dataclass
class Stack:
    gw: Harness
    tracker: CostTracker
    router: PipelineRouter

    async def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        return await self.gw.client.call(method, path, **kwargs)

    async def record(self, *envelopes: Envelope) -> None:
        for envelope in envelopes:
            await self.tracker.accounting.on_usage(envelope)


@pytest.fixture
async def stack(make_gateway: MakeGateway) -> AsyncIterator[Stack]:
    bus = MemoryBus()
    await bus.connect()
    tracker = CostTracker.build(bus, tracker_settings(), MemoryStore())
    await tracker.start()
    await bus.subscribe(COST_TRACKER, tracker.handlers())
    router = PipelineRouter(bus)
    await bus.subscribe(
        ROUTER, {WorkflowRequested.TYPE: router.on_requested, WorkflowStatusQuery.TYPE: router.on_status}
    )
    gw = await make_gateway(bus=bus, router=False)
    yield Stack(gw, tracker, router)
    await tracker.stop()


def admin(**kwargs: Any) -> dict[str, Any]:
    return {"user": ADMIN, "role": "admin", **kwargs}


async def templated(stack: Stack, method: str, path: str, template: str, **kwargs: Any) -> Answer:
    """An admin's call of a path with parameters, checked against the document's `template`."""
    answer = await stack.gw.client.call(method, path, documented=False, **admin(**kwargs))
    stack.gw.client.check_documented(method, template, answer)
    return answer


class TestReports:
    async def test_stats_answer_the_seed_fields_in_camel_case(self, stack: Stack) -> None:
        """todayTotal, monthTotal, providerBreakdown {azure, openai}, requests, averageCostPerWorkflow."""
        workflow = uuid.uuid4()
        await stack.record(
            usage(ALICE, prompt=1200, completion=300, workflow_id=workflow),
            usage(ALICE, Provider.OPENAI, "gpt-4o-mini", prompt=500, completion=500, workflow_id=workflow),
        )
        answer = await stack.call("GET", STATS)
        assert answer.status == 200 and answer.body["success"] is True
        data = answer.body["data"]
        assert (data["todayTotal"], data["monthTotal"], data["requests"], data["workflows"]) == (0.017, 0.017, 2, 1)
        assert data["providerBreakdown"] == {"azure": 0.015, "openai": 0.002}
        assert data["averageCostPerWorkflow"] == 0.017 and data["currency"] == "USD"

    async def test_amounts_are_json_numbers_with_the_exact_digits(self, stack: Stack) -> None:
        """Parsed as decimals, the JSON amounts are exactly the cost-tracker's Decimals."""
        await stack.record(usage(ALICE, Provider.OPENAI, "gpt-4o", prompt=1001, completion=99))
        token = make_token(SECRET, ALICE)
        async with stack.gw.client.session.get(
            stack.gw.url + STATS, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            body = json.loads(await response.read(), parse_float=Decimal)
        assert body["data"]["monthTotal"] == Decimal("0.0034925")
        assert body["data"]["providerBreakdown"]["openai"] == Decimal("0.0034925")

    @pytest.mark.parametrize("group_by", ["provider", "model", "day", "type"])
    async def test_breakdown_groups_by_what_is_asked(self, stack: Stack, group_by: str) -> None:
        """from/to as UTC days (to included), groupBy: every group documented, totals agreeing with stats."""
        await stack.record(
            usage(ALICE, prompt=1000, completion=0),
            usage(ALICE, Provider.OPENAI, "gpt-4o-mini", prompt=1000, completion=0),
        )
        today = datetime.now(UTC).date()
        params = {"from": (today - timedelta(days=2)).isoformat(), "to": today.isoformat(), "groupBy": group_by}
        answer = await stack.call("GET", BREAKDOWN, params=params)
        assert answer.status == 200
        data = answer.body["data"]
        assert (data["groupBy"], data["total"], data["requests"]) == (group_by, 0.012, 2)
        assert data["from"].startswith((today - timedelta(days=2)).isoformat())
        assert data["to"].startswith((today + timedelta(days=1)).isoformat())
        keys = [g["key"] for g in data["groups"]]
        expected = {
            "provider": ["azure", "openai"],
            "model": ["gpt-4", "gpt-4o-mini"],
            "day": [(today - timedelta(days=d)).isoformat() for d in (2, 1, 0)],
            "type": ["content_planning"],
        }
        assert keys == expected[group_by]

    async def test_daily_breakdown_split_by_provider_lists_every_provider_each_day(self, stack: Stack) -> None:
        """groupBy=day&splitBy=provider: each day's parts in camelCase, every provider, summing to the day."""
        await stack.record(
            usage(ALICE, prompt=1000, completion=0),
            usage(ALICE, Provider.OPENAI, "gpt-4o-mini", prompt=1000, completion=0),
        )
        today = datetime.now(UTC).date()
        params = {"from": (today - timedelta(days=1)).isoformat(), "groupBy": "day", "splitBy": "provider"}
        answer = await stack.call("GET", BREAKDOWN, params=params)
        assert answer.status == 200
        data = answer.body["data"]
        assert data["splitBy"] == "provider"
        yesterday, now = data["groups"]
        assert [(p["key"], p["cost"], p["requests"]) for p in yesterday["parts"]] == [("azure", 0, 0), ("openai", 0, 0)]
        assert [(p["key"], p["requests"]) for p in now["parts"]] == [("azure", 1), ("openai", 1)]
        assert now["parts"][0]["cost"] + now["parts"][1]["cost"] == now["cost"] == data["total"]
        refused = await stack.call("GET", BREAKDOWN, params={"groupBy": "day", "splitBy": "type"})
        assert refused.status == 400 and refused.body["error"]["code"] == "invalid_parameter"

    async def test_campaign_costs_list_workflows_and_one_with_its_calls(self, stack: Stack) -> None:
        """Without workflowId: the month's workflows; with it: that workflow's calls."""
        workflow = uuid.uuid4()
        await stack.record(
            usage(ALICE, workflow_id=workflow, prompt=100, completion=100), usage(ALICE, prompt=7, completion=3)
        )
        listed = await stack.call("GET", CAMPAIGN_COSTS)
        assert listed.status == 200 and listed.body["data"]["count"] == 2 and listed.body["data"]["total"] == 0.0021
        one = await stack.call("GET", CAMPAIGN_COSTS, params={"workflowId": str(workflow)})
        assert one.status == 200
        data = one.body["data"]
        assert (data["workflowId"], data["totalCost"], data["workflowType"]) == (
            str(workflow),
            0.002,
            "content_planning",
        )
        [call] = data["calls"]
        assert (call["provider"], call["model"], call["priceEntry"], call["priceEstimated"]) == (
            "azure",
            "gpt-4",
            "azure/gpt-4",
            False,
        )

    async def test_forecast_and_optimization(self, stack: Stack) -> None:
        """Both answer their documented shapes from the recorded history."""
        yesterday = datetime.now(UTC) - timedelta(days=1)
        await stack.record(usage(ALICE, prompt=50_000, completion=0, at=yesterday))
        forecast = await stack.call("GET", FORECAST, params={"lookbackDays": "14"})
        assert forecast.status == 200
        data = forecast.body["data"]
        assert (data["method"], data["lookbackDays"], data["next7Days"]["total"]) == ("daily_mean", 14, 3.5)
        optimization = await stack.call("GET", OPTIMIZATION)
        assert optimization.status == 200
        [move] = optimization.body["data"]["recommendations"]
        assert (move["fromProvider"], move["toProvider"], move["estimatedSaving"]) == ("azure", "openai", 0.4)

    async def test_a_recommendation_is_applied_listed_and_reverted(self, stack: Stack) -> None:
        """POST apply (admin) answers 201 with the policy; an unknown id 409; a user's apply 403; GET lists it
        with the version; POST revert answers it reverted."""
        yesterday = datetime.now(UTC) - timedelta(days=1)
        await stack.record(usage(ALICE, prompt=50_000, completion=0, at=yesterday))
        [move] = (await stack.call("GET", OPTIMIZATION, **admin())).body["data"]["recommendations"]
        unknown = await stack.call("POST", APPLY, json={"recommendationId": str(uuid.uuid4())}, **admin())
        assert (unknown.status, unknown.body["error"]["code"]) == (409, "conflict")
        assert (await stack.call("POST", APPLY, json={"recommendationId": move["id"]})).status == 403
        applied = await stack.call("POST", APPLY, json={"recommendationId": move["id"]}, **admin())
        assert applied.status == 201
        policy = applied.body["data"]
        assert (policy["workflowType"], policy["provider"], policy["inForce"]) == ("content_planning", "openai", True)
        listed = (await stack.call("GET", POLICIES)).body["data"]
        assert (listed["version"], [p["policyId"] for p in listed["policies"]]) == (1, [policy["policyId"]])
        reverted = await stack.call("POST", REVERT, json={"policyId": policy["policyId"]}, **admin())
        assert (reverted.status, reverted.body["data"]["inForce"], reverted.body["data"]["revertedBy"]) == (
            200,
            False,
            ADMIN,
        )

    async def test_the_automatic_mode_is_switched_within_a_budget_rule(self, stack: Stack) -> None:
        """POST /api/v2/costs/optimize with a global budget rule answers the mode on; without one 400; a user
        403; GET answers it with the policies in force."""
        rule = {"type": "daily", "threshold": 1, "action": "block", "global": True}
        threshold = (await stack.call("POST", THRESHOLDS, json=rule, **admin())).body["data"]["id"]
        assert (await stack.call("POST", OPTIMIZE, json={"enabled": True}, **admin())).status == 400
        assert (await stack.call("POST", OPTIMIZE, json={"enabled": False})).status == 403
        body = {"enabled": True, "thresholdId": threshold, "triggerPercent": 75}
        switched = await stack.call("POST", OPTIMIZE, json=body, **admin())
        assert (switched.status, switched.body["data"]["enabled"], switched.body["data"]["active"]) == (
            200,
            True,
            False,
        )
        state = (await stack.call("GET", OPTIMIZE, **admin())).body["data"]
        assert (state["thresholdId"], state["triggerPercent"], state["inForce"]) == (threshold, 75, [])

    async def test_an_experiment_is_started_measured_and_stopped(self, stack: Stack) -> None:
        """POST /api/admin/experiments answers 201 (camelCase arms); bad weights, an unknown provider or model
        400; a user 403; GET lists it; GET …/results answers each arm; POST …/stop with promoteArm stops it."""
        arms = [
            {"name": "big", "provider": "azure", "model": "gpt-4", "weight": 1},
            {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "promptVariant": "concise", "weight": 3},
        ]
        body = {"name": "mini test", "workflowType": "content_planning", "bucketBy": "workflow", "arms": arms}
        for bad in (
            [{**arms[0], "weight": 0}, {**arms[1], "weight": 0}],
            [arms[0], {**arms[1], "provider": "mistral"}],
            [arms[0], {**arms[1], "model": "gpt-99"}],
        ):
            refused = await stack.call("POST", EXPERIMENTS, json={**body, "arms": bad}, **admin())
            assert refused.status == 400, refused.body
        assert (await stack.call("POST", EXPERIMENTS, json=body)).status == 403
        created = await stack.call("POST", EXPERIMENTS, json=body, **admin())
        assert created.status == 201, created.body
        experiment = created.body["data"]
        assert (experiment["status"], experiment["arms"][1]["promptVariant"]) == ("running", "concise")
        path = f"{EXPERIMENTS}/{experiment['experimentId']}"
        listed = await stack.call("GET", EXPERIMENTS, **admin())
        assert [e["experimentId"] for e in listed.body["data"]["experiments"]] == [experiment["experimentId"]]
        results = await templated(stack, "GET", f"{path}/results", f"{EXPERIMENTS}/{{experimentId}}/results")
        assert [(a["arm"], a["workflows"]) for a in results.body["data"]["arms"]] == [("big", 0), ("mini", 0)]
        bad_id = await templated(stack, "GET", f"{EXPERIMENTS}/nope/results", f"{EXPERIMENTS}/{{experimentId}}/results")
        assert bad_id.status == 400
        stopped = await templated(
            stack, "POST", f"{path}/stop", f"{EXPERIMENTS}/{{experimentId}}/stop", json={"promoteArm": "mini"}
        )
        assert (stopped.status, stopped.body["data"]["promotedArm"]) == (200, "mini")


class TestVisibility:
    async def test_a_user_sees_only_their_own_costs(self, stack: Stack) -> None:
        """Bob's stats and campaign list hold nothing of Alice's; her workflow answers 404 to him."""
        workflow = uuid.uuid4()
        await stack.record(usage(ALICE, workflow_id=workflow, prompt=9000, completion=1000))
        stats = await stack.call("GET", STATS, user=BOB)
        assert (stats.body["data"]["monthTotal"], stats.body["data"]["userId"]) == (0, BOB)
        assert (await stack.call("GET", CAMPAIGN_COSTS, user=BOB)).body["data"]["workflows"] == []
        hidden = await stack.call("GET", CAMPAIGN_COSTS, user=BOB, params={"workflowId": str(workflow)})
        assert (hidden.status, hidden.body["error"]["code"]) == (404, "not_found")

    async def test_naming_another_user_needs_an_admin(self, stack: Stack) -> None:
        """userId=alice from Bob answers 403; from an admin, Alice's figures."""
        await stack.record(usage(ALICE, prompt=1000, completion=0))
        refused = await stack.call("GET", STATS, user=BOB, params={"userId": ALICE})
        assert (refused.status, refused.body["error"]["code"]) == (403, "forbidden")
        allowed = await stack.call("GET", STATS, params={"userId": ALICE}, **admin())
        assert (allowed.status, allowed.body["data"]["monthTotal"], allowed.body["data"]["userId"]) == (
            200,
            0.01,
            ALICE,
        )
        everyone = await stack.call("GET", STATS, **admin())
        assert everyone.body["data"]["userId"] is None


class TestManagement:
    async def test_thresholds_are_created_listed_and_changed(self, stack: Stack) -> None:
        """POST answers 201 with the original plan's names (type, threshold); GET lists it; PUT changes it. A user's
        notificationChannels are refused (403: Slack, SNS and email are the operators')."""
        body = {"type": "daily", "threshold": 12.5, "severity": "critical"}
        refused = await stack.call("POST", THRESHOLDS, json={**body, "notificationChannels": ["slack"]})
        assert (refused.status, refused.body["error"]["code"]) == (403, "forbidden")
        created = await stack.call("POST", THRESHOLDS, json=body)
        assert created.status == 201
        data = created.body["data"]
        assert (data["type"], data["threshold"], data["userId"], data["action"]) == ("daily", 12.5, ALICE, "none")
        listed = await stack.call("GET", THRESHOLDS, params={"type": "daily"})
        assert [t["id"] for t in listed.body["data"]["thresholds"]] == [data["id"]]
        assert listed.body["data"]["summary"]["byType"] == {"daily": 1}
        changed = await stack.call(
            "PUT", THRESHOLDS, json={"thresholdId": data["id"], "threshold": "0.1", "enabled": False}
        )
        assert (changed.status, changed.body["data"]["threshold"], changed.body["data"]["enabled"]) == (200, 0.1, False)

    async def test_hourly_per_request_and_provider_thresholds_over_http(self, stack: Stack) -> None:
        """type hourly and per_request and a provider are accepted and answered; a per-request budget is 400."""
        hourly = await stack.call("POST", THRESHOLDS, json={"type": "hourly", "threshold": 1, "provider": "azure"})
        assert (hourly.status, hourly.body["data"]["type"], hourly.body["data"]["provider"]) == (201, "hourly", "azure")
        budget = {"type": "per_request", "threshold": 1, "action": "block"}
        refused = await stack.call("POST", THRESHOLDS, json=budget)
        assert (refused.status, refused.body["error"]["code"]) == (400, "validation_error")
        assert "alerts only" in refused.body["error"]["message"]
        listed = await stack.call("GET", THRESHOLDS, params={"type": "hourly"})
        assert [t["provider"] for t in listed.body["data"]["thresholds"]] == ["azure"]

    async def test_a_users_alert_destination_is_set_and_read(self, stack: Stack) -> None:
        """PUT sets Alice's e-mail and webhook (camelCase); GET answers them; Bob may not read hers (403)."""
        body = {"email": "alice@example.com", "webhookUrl": "https://hooks.example.com/alice"}
        stored = await stack.call("PUT", DESTINATION, json=body)
        assert (stored.status, stored.body["data"]["webhookUrl"], stored.body["data"]["userId"]) == (
            200,
            body["webhookUrl"],
            ALICE,
        )
        read = await stack.call("GET", DESTINATION)
        assert read.body["data"]["email"] == "alice@example.com"
        other = await stack.call("GET", DESTINATION, user=BOB, params={"userId": ALICE})
        assert (other.status, other.body["error"]["code"]) == (403, "forbidden")
        bad = await stack.call("PUT", DESTINATION, json={"email": "not an address"})
        assert bad.status == 400

    async def test_alerts_are_raised_by_admins_and_acknowledged_by_their_user(self, stack: Stack) -> None:
        """POST (admin) answers 201; Alice lists and acknowledges it; Bob's PUT answers 404."""
        refused = await stack.call("POST", ALERTS, json={"threshold": 1, "message": "hi"})
        assert (refused.status, refused.body["error"]["code"]) == (403, "forbidden")
        raised = await stack.call(
            "POST", ALERTS, json={"threshold": 1, "message": "Check spend", "userId": ALICE}, **admin()
        )
        assert raised.status == 201
        alert_id = raised.body["data"]["id"]
        assert (raised.body["data"]["currentValue"], raised.body["data"]["kind"]) == (0, "manual")
        listed = await stack.call("GET", ALERTS, params={"acknowledged": "false"})
        assert [a["id"] for a in listed.body["data"]["alerts"]] == [alert_id]
        assert (
            await stack.call("PUT", ALERTS, user=BOB, json={"alertId": alert_id, "acknowledged": True})
        ).status == 404
        acked = await stack.call("PUT", ALERTS, json={"alertId": alert_id, "acknowledged": True})
        assert (acked.status, acked.body["data"]["acknowledged"], acked.body["data"]["acknowledgedBy"]) == (
            200,
            True,
            ALICE,
        )


class TestBadInput:
    @pytest.mark.parametrize(
        ("path", "params"),
        [
            (BREAKDOWN, {"groupBy": "colour"}),
            (BREAKDOWN, {"from": "2026-05-01T00:00:00"}),
            (BREAKDOWN, {"from": "yesterday"}),
            (BREAKDOWN, {"from": "2026-05-02", "to": "2026-05-01"}),
            (STATS, {"groupby": "model"}),
            (CAMPAIGN_COSTS, {"workflowId": "42"}),
            (CAMPAIGN_COSTS, {"limit": "100000"}),
            (FORECAST, {"lookbackDays": "0"}),
            (THRESHOLDS, {"enabled": "maybe"}),
        ],
    )
    async def test_bad_query_parameters_answer_400(self, stack: Stack, path: str, params: dict[str, str]) -> None:
        """Unknown, malformed and out-of-range parameters answer invalid_parameter, naming the parameter."""
        answer = await stack.call("GET", path, params=params)
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")

    @pytest.mark.parametrize(
        ("path", "params"),
        [
            (BREAKDOWN, {"to": "0001-01-01T00:00:00+01:00"}),  # before datetime's minimum in UTC: was a 503
            (BREAKDOWN, {"from": "0001-01-01"}),
            (BREAKDOWN, {"to": "9999-12-31"}),  # the day after is past datetime's maximum: was a 500
            (ALERTS, {"to": "9999-12-31T23:59:59-01:00"}),
            (STATS, {"userId": "*"}),  # the global scope is no user
            (STATS, {"userId": " alice"}),
        ],
    )
    async def test_insane_dates_and_non_user_ids_answer_400_naming_them(
        self, stack: Stack, path: str, params: dict[str, str]
    ) -> None:
        """Dates outside the years 2000-2099 and a userId that is no user id answer 400 naming the parameter,
        from an admin too, without asking the cost-tracker."""
        answer = await stack.call("GET", path, params=params, **admin())
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")
        assert next(iter(params)) in answer.body["error"]["message"], answer.body

    @pytest.mark.parametrize(
        "body",
        [
            {"type": "weekly", "threshold": 1},
            {"type": "daily", "threshold": -1},
            {"type": "daily", "threshold": "a lot"},
            {"type": "daily"},
            {"type": "daily", "threshold": 1, "notificationChannels": ["pager"]},
            {"type": "daily", "threshold": 1, "treshold": 2},
            {"type": "daily", "threshold": 1, "userId": "*", "action": "block"},
            {"type": "daily", "threshold": 1, "name": "budget\u0000"},
        ],
    )
    async def test_bad_threshold_bodies_answer_400_naming_the_field(self, stack: Stack, body: dict[str, Any]) -> None:
        """The body is validated before anything is asked: validation_error with the fields."""
        answer = await stack.call("POST", THRESHOLDS, json=body)
        assert (answer.status, answer.body["error"]["code"]) == (400, "validation_error")
        assert answer.body["error"]["details"]

    async def test_global_thresholds_need_an_admin(self, stack: Stack) -> None:
        """A user asking for a global threshold gets 403; an admin gets it."""
        body = {"type": "monthly", "threshold": 100, "global": True, "action": "downgrade"}
        assert (await stack.call("POST", THRESHOLDS, json=body)).status == 403
        created = await stack.call("POST", THRESHOLDS, json=body, **admin())
        assert (created.status, created.body["data"]["userId"]) == (201, None)

    async def test_an_unknown_threshold_answers_404(self, stack: Stack) -> None:
        """PUT of a threshold id nobody created answers not_found."""
        answer = await stack.call("PUT", THRESHOLDS, json={"thresholdId": str(uuid.uuid4()), "enabled": False})
        assert (answer.status, answer.body["error"]["code"]) == (404, "not_found")

    async def test_no_cost_tracker_answers_503(self, make_gateway: MakeGateway) -> None:
        """Nobody consuming cost.query: 503 unavailable with Retry-After, after the request timeout."""
        gw = await make_gateway(router=False, gateway_request_timeout_s=0.2)
        answer = await gw.client.call("GET", STATS)
        assert (answer.status, answer.body["error"]["code"], answer.headers["Retry-After"]) == (503, "unavailable", "1")


class TestWaitCost:
    async def test_wait_answers_the_cost_the_cost_tracker_recorded(self, stack: Stack) -> None:
        """metrics.cost of ?wait=true is the cost-tracker's figure for the workflow (the router has none)."""
        answer = await stack.gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 200
        workflow_id = answer.body["data"]["workflowId"]
        recorded = await stack.call("GET", CAMPAIGN_COSTS, params={"workflowId": workflow_id})
        assert answer.body["metrics"]["cost"] == {"tokens": 2000, "cost": recorded.body["data"]["totalCost"]}
        assert recorded.body["data"]["totalCost"] == 0.02

    async def test_wait_answers_the_total_retries(self, stack: Stack) -> None:
        """metadata.totalRetries of ?wait=true: the workflow's provider and delivery retries summed."""
        stack.router.retries = RetryAttempts(azure=2, openai=1, onlyfans=3)
        answer = await stack.gw.client.post(PLAN, params={"wait": "true"})
        assert (answer.status, answer.body["metadata"]) == (200, {"totalRetries": 6})

    async def test_status_of_a_finished_workflow_carries_its_cost(self, stack: Stack) -> None:
        """GET status: cost null until the cost-tracker has the ended workflow's last usage, then its figure."""
        stack.router.usage_delay_s = 0.5  # the usage lands after the end: until then the cost is not known
        accepted = await stack.gw.client.post(PLAN)
        workflow_id = accepted.body["data"]["workflowId"]
        early = await stack.call("GET", "/api/v2/campaigns/status", params={"workflowId": workflow_id})
        assert early.body["data"]["status"] in ("generating", "completed") and early.body["data"]["cost"] is None

        async def costed() -> bool:
            answer = await stack.call("GET", "/api/v2/campaigns/status", params={"workflowId": workflow_id})
            return answer.body["data"]["status"] == "completed" and answer.body["data"]["cost"] is not None

        await eventually(costed)
        status = await stack.call("GET", "/api/v2/campaigns/status", params={"workflowId": workflow_id})
        recorded = await stack.call("GET", CAMPAIGN_COSTS, params={"workflowId": workflow_id})
        assert status.body["data"]["cost"] == recorded.body["data"]["totalCost"] == 0.02

    async def test_status_answers_without_a_cost_tracker(self, make_gateway: MakeGateway) -> None:
        """Nobody answering cost queries: a finished workflow's status still answers within ~1 s, its cost as
        the router's view had it (this fake router's figure; the real router's is null)."""
        gw = await make_gateway()
        gw.router.finish_after_s = 0.0
        accepted = await gw.client.post(PLAN, params={"wait": "true"})
        workflow_id = accepted.body["data"]["workflowId"]
        started = asyncio.get_running_loop().time()
        answer = await gw.client.call("GET", "/api/v2/campaigns/status", params={"workflowId": workflow_id})
        assert (answer.status, answer.body["data"]["status"]) == (200, "completed")
        assert answer.body["data"]["cost"] == 0.001 and asyncio.get_running_loop().time() - started < 2.0

    async def test_wait_waits_for_usage_that_arrives_after_the_result(self, stack: Stack) -> None:
        """The usage record lands 300 ms after the router's completion: the answer still carries it."""
        stack.router.usage_delay_s = 0.3
        stack.router.tokens = (100, 50)
        answer = await stack.gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 200
        assert answer.body["metrics"]["cost"] == {"tokens": 150, "cost": 0.0015}
