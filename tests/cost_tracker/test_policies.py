"""Optimisation that acts: a switch_provider recommendation applied is stored as its workflow type's routing
policy and sent to the routers as routing.policy (a versioned whole set); stale or unknown ids are conflicts,
reverting sends the set without it, and the sweep sends it again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import Envelope
from contracts.costs import RoutingPolicy
from contracts.enums import IntentType, Provider
from services.cost_tracker.optimization import recommendation_id
from services.cost_tracker.pg_store import PostgresStore
from services.cost_tracker.store import CostStore
from tests.cost_tracker.conftest import ADMIN, ALICE, Harness, cost_request, eventually, usage

NOW = datetime(2026, 5, 20, 12, tzinfo=UTC)
T = IntentType


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"cost_budget_republish_s": 0.05}


@pytest.fixture
def sent(harness: Harness) -> list[RoutingPolicy]:
    """The routing.policy messages the routers receive."""
    return harness.policies


async def history(harness: Harness) -> None:
    """content_planning on azure gpt-4 ($0.01/1K) and message_generation on openai gpt-4o-mini ($0.002/1K),
    last week: moving content_planning to openai saves; the reverse does not."""
    harness.clock.at = NOW
    week_ago = NOW - timedelta(days=7)
    await harness.record(
        usage(ALICE, Provider.AZURE, "gpt-4", 10_000, 5_000, workflow_type=T.CONTENT_PLANNING, at=week_ago),
        usage(ALICE, Provider.OPENAI, "gpt-4o-mini", 10_000, 5_000, workflow_type=T.MESSAGE_GENERATION, at=week_ago),
        usage(ALICE, Provider.AZURE, "unpriced-model", 1_000, 0, workflow_type=T.CONTENT_PLANNING, at=week_ago),
    )


async def recommended(harness: Harness, kind: str) -> dict[str, Any]:
    found = (await harness.data("optimization", {}, user=ADMIN))["recommendations"]
    return next(r for r in found if r["kind"] == kind)


async def apply(harness: Harness, recommendation: str, *, user: str = ADMIN) -> Any:
    return await harness.ask("policies", {"op": "apply", "recommendation_id": recommendation}, user=user)


class TestApply:
    async def test_an_applied_recommendation_routes_its_type_on_every_router(
        self, harness: Harness, sent: list[RoutingPolicy]
    ) -> None:
        """Applying content_planning azure → openai stores the policy in force and sends version 1 with its rule."""
        await history(harness)
        advice = await recommended(harness, "switch_provider")
        assert (advice["workflow_type"], advice["to_provider"], advice["model"]) == (
            "content_planning",
            "openai",
            "gpt-4o-mini",
        )
        reply = await apply(harness, advice["id"])
        assert reply.ok, reply.error
        policy = reply.data
        assert (policy["provider"], policy["model"], policy["in_force"]) == ("openai", "gpt-4o-mini", True)
        assert policy["recommendation_id"] == advice["id"] and policy["applied_by"] == ADMIN
        await eventually(lambda: _count(sent, 1))
        [message] = sent
        assert message.version == 1
        assert [(r.workflow_type, r.provider, r.model) for r in message.rules] == [
            (T.CONTENT_PLANNING, Provider.OPENAI, "gpt-4o-mini")
        ]

    async def test_an_unknown_or_stale_recommendation_is_a_conflict(
        self, harness: Harness, sent: list[RoutingPolicy]
    ) -> None:
        """A made-up id, and the id of advice not given (message_generation to azure costs more): conflict, and
        nothing is sent."""
        await history(harness)
        not_given = recommendation_id("switch_provider", T.MESSAGE_GENERATION, Provider.OPENAI, Provider.AZURE, "gpt-4")
        for stale in (uuid.uuid4(), not_given):
            reply = await apply(harness, str(stale))
            assert reply.code == "conflict" and "no longer recommended" in (reply.error or "")
        assert (await harness.data("policies", {}, user=ALICE))["version"] == 0
        await asyncio.sleep(0.05)
        assert sent == []

    async def test_a_price_missing_recommendation_routes_nothing(self, harness: Harness) -> None:
        """A price_missing recommendation's id answers invalid_parameter."""
        await history(harness)
        advice = await recommended(harness, "price_missing")
        reply = await apply(harness, advice["id"])
        assert reply.code == "invalid_parameter"

    async def test_only_an_admin_applies_and_reverts(self, harness: Harness) -> None:
        """Alice may list the policies but not apply or revert one (forbidden)."""
        await history(harness)
        advice = await recommended(harness, "switch_provider")
        assert (await apply(harness, advice["id"], user=ALICE)).code == "forbidden"
        revert = {"op": "revert", "policy_id": str(uuid.uuid4())}
        assert (await harness.ask("policies", revert, user=ALICE)).code == "forbidden"
        assert (await harness.ask("policies", revert, user=ADMIN)).code == "not_found"
        assert (await harness.data("policies", {}, user=ALICE))["policies"] == []


class TestRevert:
    async def test_revert_sends_the_set_without_it_and_the_sweep_sends_it_again(
        self, harness: Harness, sent: list[RoutingPolicy], store: CostStore, request: pytest.FixtureRequest
    ) -> None:
        """Apply (v1), the same apply redelivered (nothing changes), revert (v2, no rules), revert again (still
        v2); the list shows it reverted; the sweep re-sends v2; on PostgreSQL a new store reads the same."""
        await history(harness)
        advice = await recommended(harness, "switch_provider")
        request_id = uuid.uuid4()
        query = {"op": "apply", "recommendation_id": advice["id"]}
        first = await _ask_as(harness, query, request_id)
        again = await _ask_as(harness, query, request_id)
        assert first["policy_id"] == again["policy_id"]
        reverted = await harness.data("policies", {"op": "revert", "policy_id": first["policy_id"]}, user=ADMIN)
        await harness.data("policies", {"op": "revert", "policy_id": first["policy_id"]}, user=ADMIN)
        assert (reverted["in_force"], reverted["reverted_by"]) == (False, ADMIN)
        listed = await harness.data("policies", {}, user=ADMIN)
        assert (listed["version"], [p["in_force"] for p in listed["policies"]]) == (2, [False])
        await eventually(lambda: _count(sent, 2))
        await asyncio.sleep(0.06)  # past COST_BUDGET_REPUBLISH_S
        await harness.tracker.sweep()
        await eventually(lambda: _count(sent, 3))
        assert [(m.version, len(m.rules)) for m in sent] == [(1, 1), (2, 0), (2, 0)]
        if isinstance(store, PostgresStore):
            fresh = PostgresStore(request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("pg_schema"))
            await fresh.start()
            version, stored = await fresh.policies()
            await fresh.close()
            assert (version, [p.id for p in stored]) == (2, [uuid.UUID(first["policy_id"])])

    async def test_a_second_policy_of_a_type_replaces_the_first(self, harness: Harness) -> None:
        """Two applies of the same advice (two requests): the second is in force, the first reverted by it."""
        await history(harness)
        advice = await recommended(harness, "switch_provider")
        one = (await apply(harness, advice["id"])).data
        two = (await apply(harness, advice["id"])).data
        listed = await harness.data("policies", {}, user=ADMIN)
        assert [(p["policy_id"], p["in_force"]) for p in listed["policies"]] == [
            (two["policy_id"], True),
            (one["policy_id"], False),
        ]
        assert listed["version"] == 2


async def _ask_as(harness: Harness, params: dict[str, Any], envelope_id: uuid.UUID) -> Any:
    """An admin's request with a given envelope id (a redelivery carries the same one)."""
    query = cost_request("policies", params, ADMIN)
    envelope = Envelope.new(query, user_id=ADMIN).model_copy(update={"id": envelope_id})
    reply = await harness.bus.request(envelope, timeout=5)
    assert reply.payload.code is None, reply.payload.error  # type: ignore[attr-defined]
    return reply.payload.data.model_dump(mode="json")  # type: ignore[attr-defined]


async def _count(found: list[RoutingPolicy], n: int) -> bool:
    return len(found) >= n
