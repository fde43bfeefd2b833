"""Optimisation that acts across processes: a recommendation applied, or an experiment started, through the
gateway routes every router.

Gateway, cost-tracker and two router replicas each their own OS process on RabbitMQ and PostgreSQL; the test
process stands in for the LLM workers (answering, and recording which provider and model each request asked
for) and publishes the usage history the recommendation comes from: content_planning on azure gpt-4o, the
rest on openai gpt-4o-mini. Applied, content_planning workflows go to openai asking for gpt-4o-mini on both
replicas — and still after both are restarted; reverted, they go back to azure with the worker's model. An
experiment's arms split content_planning workflows by workflow id on both replicas, and its results count
each arm's workflows and price their calls.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from contracts import Envelope
from contracts.enums import IntentType, Provider
from contracts.experiments import Arm, bucket
from contracts.messages import GenerationCompleted, GenerationRequested, Usage, UsageRecorded
from contracts.routing import AZURE_WORKER, OPENAI_WORKER
from libs.bus.amqp import AmqpBus
from services.gateway.auth import make_token
from tests.fixtures.waiting import eventually
from tests.integration.stack import Stack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REFRESH_S = 0.5  # ROUTER_BUDGET_REFRESH_S: how stale another replica's copy of the policy may be
ROUTERS = ("router", "router-b")
WORKFLOWS = 12
APPLY, REVERT = "/api/v2/costs/optimization/apply", "/api/v2/costs/optimization/revert"


@pytest.fixture
async def stack(amqp_url: str, postgres_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    env = {
        "GATEWAY_JWT_SECRET": secrets.token_urlsafe(32),
        "GATEWAY_PORT": str(free_port()),
        "ROUTER_BUDGET_REFRESH_S": str(REFRESH_S),
    }
    async with Stack(amqp_url, postgres_dsn, redis_url, tmp_path, env=env) as running:
        await asyncio.gather(running.start("cost_tracker"), *(running.start("router", name=name) for name in ROUTERS))
        await running.start("gateway")
        yield running


class Workers:
    """Answers every generation request, remembering (workflow id, provider, model asked)."""

    def __init__(self, bus: AmqpBus, *, bill: bool = False) -> None:
        self.bus = bus
        self.bill = bill  # also publish usage.recorded, as the real workers do
        self.asked: list[tuple[str, Provider, str | None]] = []

    async def write(self, envelope: Envelope) -> None:
        request = envelope.payload
        assert isinstance(request, GenerationRequested)
        self.asked.append((str(envelope.workflow_id), request.provider, request.model))
        usage = Usage(prompt_tokens=5, completion_tokens=5, total_tokens=10)
        model = request.model or "worker-default"
        answer = GenerationCompleted(provider=request.provider, model=model, content="hi", usage=usage, latency_ms=1)
        if self.bill:
            billed = UsageRecorded(provider=request.provider, model=model, usage=usage,
                                   workflow_type=request.intent.type, generation_id=envelope.id)  # fmt: skip
            await self.bus.publish(envelope.child(billed))
        await self.bus.publish(envelope.child(answer))


@pytest.fixture
async def workers(stack: Stack, amqp_url: str) -> AsyncIterator[Workers]:
    bus = AmqpBus(amqp_url, namespace=stack.namespace)
    await bus.connect()
    found = Workers(bus)
    for worker in (AZURE_WORKER, OPENAI_WORKER):
        await bus.subscribe(worker, {GenerationRequested.TYPE: found.write})
    yield found
    await bus.close(grace_s=1)


def spent(provider: Provider, model: str, kind: IntentType, prompt: int, completion: int) -> Envelope:
    payload = UsageRecorded(
        provider=provider,
        model=model,
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        workflow_type=kind,
        generation_id=uuid.uuid4(),
    )
    envelope = Envelope.new(payload, workflow_id=uuid.uuid4(), user_id="alice")
    return envelope.model_copy(update={"occurred_at": datetime.now(UTC) - timedelta(days=2)})


class Api:
    def __init__(self, session: aiohttp.ClientSession, stack: Stack) -> None:
        self.session = session
        self.url = f"http://127.0.0.1:{stack.env['GATEWAY_PORT']}"
        secret = stack.env["GATEWAY_JWT_SECRET"]
        self.admin = {"Authorization": f"Bearer {make_token(secret, 'ops', role='admin')}"}
        self.alice = {"Authorization": f"Bearer {make_token(secret, 'alice')}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = kwargs.pop("headers", self.admin)
        async with self.session.request(method, f"{self.url}{path}", headers=headers, **kwargs) as response:
            return response.status, await response.json()

    async def planning(self, n: int) -> list[str]:
        """Start `n` content_planning workflows at once; their ids."""
        body = {"type": "content_planning", "data": {"goal": "plan"}}

        async def one() -> str:
            status, answer = await self.call("POST", "/api/v2/campaigns/hybrid", json=body, headers=self.alice)
            assert status == 202, answer
            return str(answer["data"]["workflowId"])

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def stored_version(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM router.routing_policy"))
    finally:
        await conn.close()


def routed_by_policy(stack: Stack, name: str, reason: str = "cost_policy:") -> int:
    """How many generation requests replica `name` sent with a `reason` (its JSON log)."""
    lines = stack.procs[name].log_path.read_text(errors="replace").splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return sum(
        1
        for e in events
        if e.get("event") == "workflow.generation_requested" and str(e.get("reason", "")).startswith(reason)
    )


async def asked_for(workers: Workers, ids: list[str]) -> set[tuple[Provider, str | None]]:
    async def all_asked() -> bool:
        return {wid for wid, _, _ in workers.asked} >= set(ids)

    await eventually(all_asked, timeout=30)
    return {(provider, model) for wid, provider, model in workers.asked if wid in ids}


class TestAppliedPolicy:
    async def test_an_applied_recommendation_routes_every_replica_and_survives_restarts(
        self, stack: Stack, workers: Workers
    ) -> None:
        """Applied: content_planning goes to openai asking gpt-4o-mini on both replicas, and after both restart;
        a stale id is 409; reverted: azure again, with the worker's model."""
        for _ in range(3):
            await workers.bus.publish(spent(Provider.AZURE, "gpt-4o", IntentType.CONTENT_PLANNING, 40_000, 20_000))
            await workers.bus.publish(spent(Provider.OPENAI, "gpt-4o-mini", IntentType.MESSAGE_GENERATION, 1_000, 500))
        async with aiohttp.ClientSession() as session:
            api = Api(session, stack)
            before = await api.planning(2)
            assert await asked_for(workers, before) == {(Provider.AZURE, None)}

            advice: dict[str, Any] = {}

            async def recommended() -> bool:
                _, answer = await api.call("GET", "/api/v2/costs/optimization")
                moves = [r for r in answer["data"]["recommendations"] if r["workflowType"] == "content_planning"]
                advice.update(moves[0] if moves else {})
                return bool(moves) and moves[0]["requests"] == 3

            await eventually(recommended, timeout=20)
            assert (advice["toProvider"], advice["model"]) == ("openai", "gpt-4o-mini")
            status, _ = await api.call(
                "POST", "/api/v2/costs/optimization/apply", json={"recommendationId": str(uuid.uuid4())}
            )
            assert status == 409
            started = time.monotonic()
            status, applied = await api.call(
                "POST", "/api/v2/costs/optimization/apply", json={"recommendationId": advice["id"]}
            )
            assert status == 201, applied
            answered_s = time.monotonic() - started

            async def stored() -> bool:
                return await stored_version(stack) == 1

            await eventually(stored, timeout=10, interval_s=0.005)
            stored_s = time.monotonic() - started
            await asyncio.sleep(REFRESH_S)  # the other replica's copy is at most this old
            after = await api.planning(WORKFLOWS)
            assert await asked_for(workers, after) == {(Provider.OPENAI, "gpt-4o-mini")}
            status, view = await api.call(
                "GET", "/api/v2/campaigns/status", params={"workflowId": after[0]}, headers=api.alice
            )
            assert (status, view["data"]["routingPolicyId"]) == (200, applied["data"]["policyId"])
            assert all(routed_by_policy(stack, name) > 0 for name in ROUTERS), stack.logs()

            for name in ROUTERS:
                await stack.stop(name)
            await asyncio.gather(*(stack.restart(name) for name in ROUTERS))
            restarted = await api.planning(4)
            assert await asked_for(workers, restarted) == {(Provider.OPENAI, "gpt-4o-mini")}

            policy_id = applied["data"]["policyId"]
            status, reverted = await api.call("POST", REVERT, json={"policyId": policy_id})
            assert (status, reverted["data"]["inForce"]) == (200, False)

            async def reverted_stored() -> bool:
                return await stored_version(stack) == 2

            await eventually(reverted_stored, timeout=10)
            await asyncio.sleep(REFRESH_S)
            back = await api.planning(4)
            assert await asked_for(workers, back) == {(Provider.AZURE, None)}
        print(f"\napply answered in {answered_s * 1000:.0f} ms; a router stored it {stored_s * 1000:.0f} ms after")


class TestExperiment:
    async def test_arms_split_workflows_on_both_replicas_and_are_measured(self, stack: Stack, workers: Workers) -> None:
        """Each workflow runs the arm its id hashes to on either replica, asking the arm's model; the results
        count each arm's workflows and price their calls; stopping with an arm promoted makes it the policy."""
        workers.bill = True
        arms = [
            {"name": "big", "provider": "azure", "model": "gpt-4o", "weight": 1},
            {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "promptVariant": "concise", "weight": 1},
        ]
        body = {"name": "planning", "workflowType": "content_planning", "bucketBy": "workflow", "arms": arms}
        async with aiohttp.ClientSession() as session:
            api = Api(session, stack)
            status, created = await api.call("POST", "/api/admin/experiments", json=body)
            assert status == 201, created
            experiment_id = uuid.UUID(created["data"]["experimentId"])

            async def stored() -> bool:
                return await stored_version(stack) == 1

            await eventually(stored, timeout=10)
            await asyncio.sleep(REFRESH_S)
            ids = await api.planning(WORKFLOWS)
            await asked_for(workers, ids)
            rules = [Arm.model_validate({**a, "prompt_variant": a.get("promptVariant", "default")}) for a in arms]
            expected = {wid: bucket(experiment_id, wid, rules) for wid in ids}
            assert {(wid, p, m) for wid, p, m in workers.asked if wid in ids} == {
                (wid, arm.provider, arm.model) for wid, arm in expected.items()
            }
            assert all(routed_by_policy(stack, name, "experiment:") > 0 for name in ROUTERS), stack.logs()
            path = f"/api/admin/experiments/{experiment_id}"
            measured: dict[str, Any] = {}

            async def all_measured() -> bool:
                _, answer = await api.call("GET", f"{path}/results")
                measured.update({a["arm"]: a for a in answer["data"]["arms"]})
                return sum(a["workflows"] for a in measured.values()) == WORKFLOWS

            await eventually(all_measured, timeout=20)
            for name in ("big", "mini"):
                count = sum(arm.name == name for arm in expected.values())
                assert measured[name]["workflows"] == measured[name]["completed"] == count
                assert (measured[name]["totalCost"] > 0) == (count > 0)
            status, stopped = await api.call("POST", f"{path}/stop", json={"promoteArm": "mini"})
            assert (status, stopped["data"]["status"]) == (200, "stopped")
            _, policies = await api.call("GET", "/api/v2/costs/optimization/policies")
            [policy] = policies["data"]["policies"]
            assert (policy["provider"], policy["model"]) == ("openai", "gpt-4o-mini")
