"""Budgets end to end: gateway, router, both workers (on the LLM simulator) and the cost-tracker on one
memory bus — a user over a block budget is refused with cost_limit_exceeded, one over a downgrade budget
has their next content_planning workflow sent to openai, and everyone else is untouched."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.runtime import Runtime, Service, Shared
from libs.simulators import LLMSimulator
from services.azure_worker.service import create as create_azure
from services.cost_tracker.service import create as create_cost_tracker
from services.openai_worker.service import create as create_openai
from services.router.config import RouterSettings
from services.router.service import create as create_router
from services.router.store import MemoryStore
from tests.cost_tracker.conftest import tracker_settings
from tests.fixtures.waiting import eventually
from tests.gateway.conftest import ALICE, BOB, PLAN, Answer, Harness, MakeGateway

THRESHOLDS = "/api/v2/costs/thresholds"
WAIT_S = 10.0


@dataclass
class Pipeline:
    gw: Harness
    router_store: MemoryStore

    async def budget(self, user_id: str, threshold: float, action: str) -> Answer:
        body = {"type": "daily", "threshold": threshold, "action": action, "userId": user_id}
        answer = await self.gw.client.call("POST", THRESHOLDS, json=body, user="boss", role="admin")
        assert answer.status == 201, answer.body
        return answer

    async def run(self, user: str = ALICE, body: dict[str, Any] = PLAN) -> Answer:
        return await self.gw.client.post(body, user=user, params={"wait": "true"})

    async def restricted(self, user_id: str) -> None:
        """Wait until the router holds a budget restriction for `user_id` (it arrives as budget.status)."""

        async def stored() -> bool:
            return any(r.scope == user_id for r in await self.router_store.active_budgets())

        await eventually(stored)


@pytest.fixture
async def pipeline(make_gateway: MakeGateway) -> AsyncIterator[Pipeline]:
    simulator = LLMSimulator()
    router_store = MemoryStore()
    shared = Shared(llm_simulator_url=await simulator.start())
    bus = MemoryBus()
    await bus.connect()
    router_settings = RouterSettings(database_url=None, router_budget_refresh_s=0.0)
    services: list[Service] = []
    for factory, settings in (
        (partial(create_router, store=router_store), router_settings),
        (create_azure, CommonSettings()),
        (create_openai, CommonSettings()),
        (partial(create_cost_tracker, settings=tracker_settings()), CommonSettings()),
    ):
        runtime = Runtime(bus=bus, settings=settings, shared=shared)
        service = await factory(runtime)
        await service.start(runtime)
        services.append(service)
    gw = await make_gateway(bus=bus, router=False, gateway_wait_timeout_s=WAIT_S, shared=shared)
    yield Pipeline(gw, router_store)
    for service in reversed(services):
        await service.stop()
    await simulator.stop()


class TestBlock:
    async def test_a_user_over_a_block_budget_is_refused_with_cost_limit_exceeded(self, pipeline: Pipeline) -> None:
        """Alice's first workflow spends past her block budget; her next is refused at once (402) with a
        clear message and nothing created; Bob is not affected."""
        await pipeline.budget(ALICE, 0.0001, "block")
        first = await pipeline.run()
        assert first.status == 200 and first.body["metrics"]["cost"]["cost"] > 0.0001
        await pipeline.restricted(ALICE)
        refused = await pipeline.gw.client.post(PLAN, user=ALICE)
        assert (refused.status, refused.body["error"]["code"]) == (402, "cost_limit_exceeded")
        assert "daily budget is spent" in refused.body["error"]["message"]
        assert (await pipeline.gw.client.post(PLAN, user=BOB)).status == 202

    async def test_a_budget_set_below_the_spend_blocks_at_once(self, pipeline: Pipeline) -> None:
        """Spend first, then the budget: creating it is enough, no further usage needed."""
        assert (await pipeline.run()).status == 200
        await pipeline.budget(ALICE, 0.0001, "block")
        await pipeline.restricted(ALICE)
        assert (await pipeline.gw.client.post(PLAN, user=ALICE)).status == 402


class TestDowngrade:
    async def test_downgrade_sends_the_next_content_planning_workflow_to_openai(self, pipeline: Pipeline) -> None:
        """content_planning goes to azure; over a downgrade budget the next one goes to openai, and the
        workflow's history says why."""
        await pipeline.budget(ALICE, 0.0001, "downgrade")
        first = await pipeline.run()
        assert (first.status, first.body["data"]["provider"]) == (200, "azure")
        await pipeline.restricted(ALICE)
        second = await pipeline.run()
        assert (second.status, second.body["data"]["provider"]) == (200, "openai")
        history = await pipeline.router_store.history(uuid.UUID(second.body["data"]["workflowId"]))
        [requested] = [event for event in history if event.name == "generation_requested"]
        assert (requested.detail["provider"], requested.detail["reason"]) == ("openai", "budget_downgrade")
        bob = await pipeline.run(user=BOB)
        assert (bob.status, bob.body["data"]["provider"]) == (200, "azure")


class TestRecordedCost:
    async def test_wait_answers_exactly_the_cost_the_cost_tracker_recorded(self, pipeline: Pipeline) -> None:
        """Through the real workers and router: metrics.cost = the workflow's cost at GET /campaigns/costs,
        which is its tokens times the price table's rate (azure gpt-4, $0.01 per 1K tokens)."""
        answer = await pipeline.run()
        assert answer.status == 200
        workflow_id = answer.body["data"]["workflowId"]
        recorded = await pipeline.gw.client.call("GET", "/api/v2/campaigns/costs", params={"workflowId": workflow_id})
        data = recorded.body["data"]
        assert data["settled"] is True and answer.body["metrics"]["cost"]["cost"] == data["totalCost"]
        tokens = data["promptTokens"] + data["completionTokens"]
        assert data["totalCost"] == tokens / 100_000 and answer.body["metrics"]["cost"]["tokens"] == tokens
