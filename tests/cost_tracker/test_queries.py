"""The cost requests (contracts.costs): parameter validation, who may see and change what, and threshold /
alert management."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import Envelope
from contracts.errors import MalformedMessage
from tests.cost_tracker.conftest import ADMIN, ALICE, BOB, Harness, cost_request, usage

NOON = datetime(2026, 5, 20, 12, tzinfo=UTC)


class TestParameters:
    @pytest.mark.parametrize(
        ("kind", "params", "complaint"),
        [
            ("breakdown", {"group_by": "color"}, "group_by"),
            ("breakdown", {"start": "2026-05-01T00:00:00"}, "timezone"),
            # an OverflowError here once dead-lettered the query (the gateway answered 503 after 5 s)
            ("breakdown", {"end": "0001-01-01T00:00:00+01:00"}, "end\n  Value error, out of range"),
            ("alerts", {"end": "9999-12-31T23:00:00Z"}, "end\n  Value error, must be between"),
            ("campaign", {"workflow_id": "not-a-uuid"}, "workflow_id"),
            ("campaign", {"limit": 0}, "limit"),
            ("stats", {"user_id": "*"}, "user_id"),
            ("forecast", {"lookback_days": 1000}, "lookback_days"),
            ("thresholds", {"op": "create", "period": "weekly", "limit_usd": "1"}, "period"),
            ("thresholds", {"op": "create", "period": "daily", "limit_usd": "-1"}, "limit_usd"),
            (
                "thresholds",
                {"op": "create", "period": "daily", "limit_usd": "1", "notification_channels": ["fax"]},
                "notification_channels",
            ),
            (
                "thresholds",
                {"op": "create", "period": "daily", "limit_usd": "1", "is_global": True, "user_id": "a"},
                "global",
            ),
            ("alerts", {"op": "update", "alert_id": str(uuid.uuid4())}, "acknowledged"),
        ],
    )
    def test_a_request_with_a_bad_parameter_cannot_be_built(
        self, kind: str, params: dict[str, Any], complaint: str
    ) -> None:
        """The contract refuses every malformed or out-of-range parameter, naming it (the gateway builds
        the request from the HTTP query, so this is its 400; a consumer would refuse the same on decode)."""
        with pytest.raises(ValidationError, match=complaint):
            cost_request(kind, params, ADMIN)

    def test_a_malformed_request_on_the_bus_is_refused_at_decode(self) -> None:
        """Bytes that are not a valid request (an unknown group_by) never reach the handler: MalformedMessage."""
        query = cost_request("breakdown", {}, ALICE)
        body = json.loads(Envelope.new(query, user_id=ALICE).encode())
        body["payload"]["group_by"] = "color"
        with pytest.raises(MalformedMessage):
            Envelope.decode(json.dumps(body).encode())

    @pytest.mark.parametrize(
        ("params", "complaint"),
        [
            ({"start": "2026-05-02T00:00:00Z", "end": "2026-05-01T00:00:00Z"}, "start must be before end"),
            ({"start": "2024-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "at most 366 days"),
        ],
    )
    async def test_a_range_the_cost_tracker_cannot_answer_is_refused(
        self, harness: Harness, params: dict[str, Any], complaint: str
    ) -> None:
        """A range that ends before it starts, or spans more than 366 days, answers invalid_parameter."""
        reply = await harness.ask("breakdown", params, user=ADMIN)
        assert (reply.ok, reply.code) == (False, "invalid_parameter")
        assert complaint in (reply.error or ""), reply.error


async def create(harness: Harness, user: str, **fields: Any) -> Any:
    return await harness.ask("thresholds", {"op": "create", "period": "daily", "limit_usd": "5", **fields}, user=user)


class TestThresholds:
    async def test_a_user_manages_their_own_thresholds(self, harness: Harness) -> None:
        """Alice creates one for herself (no channels: a user's alert in-app), sees it, edits it; Bob sees
        nothing of it."""
        created = await create(harness, ALICE, severity="critical", name="daily cap")
        assert created.ok, created.error
        data = created.data
        assert (data["user_id"], data["created_by"], data["action"]) == (ALICE, ALICE, "none")
        assert data["notification_channels"] == [] and Decimal(data["limit_usd"]) == 5
        updated = await harness.data(
            "thresholds", {"op": "update", "threshold_id": data["id"], "limit_usd": "7.5", "enabled": False}
        )
        assert (Decimal(updated["limit_usd"]), updated["enabled"], updated["name"]) == (
            Decimal("7.5"),
            False,
            "daily cap",
        )
        listed = await harness.data("thresholds", {})
        assert [t["id"] for t in listed["thresholds"]] == [data["id"]]
        assert listed["summary"] == {
            "total": 1,
            "enabled": 0,
            "by_period": {"daily": 1},
            "by_severity": {"critical": 1},
            "by_action": {"none": 1},
        }
        assert (await harness.data("thresholds", {}, user=BOB))["thresholds"] == []
        hidden = await harness.ask(
            "thresholds", {"op": "update", "threshold_id": data["id"], "enabled": True}, user=BOB
        )
        assert (hidden.ok, hidden.code) == (False, "not_found")

    async def test_global_and_other_users_thresholds_are_for_admins(self, harness: Harness) -> None:
        """A user may not set a global threshold or one for someone else; an admin may, and lists them all."""
        assert (await create(harness, ALICE, is_global=True)).code == "forbidden"
        assert (await create(harness, ALICE, user_id=BOB)).code == "forbidden"
        assert (await create(harness, ADMIN, is_global=True)).ok
        assert (await create(harness, ADMIN, user_id=BOB, action="block")).ok
        assert len((await harness.data("thresholds", {}, user=ADMIN))["thresholds"]) == 2
        assert [
            t["user_id"] for t in (await harness.data("thresholds", {"user_id": BOB}, user=ADMIN))["thresholds"]
        ] == [BOB]

    async def test_the_global_scope_is_no_user(self, harness: Harness) -> None:
        """A user called "*" (the global scope's spelling) can neither set a "personal" budget that blocks
        everyone nor read everyone's spend: the requester must be a user id (refused by the cost-tracker), and
        so must an admin's user_id (refused by the contract)."""
        assert (await create(harness, "*", action="block")).code == "invalid_parameter"
        assert (await harness.ask("stats", user="*")).code == "invalid_parameter"
        for kind, params in (("thresholds", {"op": "create", "period": "daily", "limit_usd": "5"}), ("stats", {})):
            with pytest.raises(ValidationError, match="user_id"):
                cost_request(kind, {**params, "user_id": "*"}, ADMIN)
        assert (await harness.data("thresholds", {}, user=ADMIN))["thresholds"] == []

    async def test_a_budget_set_by_an_admin_cannot_be_lifted_by_its_user(self, harness: Harness) -> None:
        """Bob sees the block budget an admin set on him, but may not disable it."""
        created = (await create(harness, ADMIN, user_id=BOB, action="block")).data
        [seen] = (await harness.data("thresholds", {}, user=BOB))["thresholds"]
        assert seen["id"] == created["id"]
        refused = await harness.ask(
            "thresholds", {"op": "update", "threshold_id": created["id"], "enabled": False}, user=BOB
        )
        assert (refused.ok, refused.code) == (False, "forbidden")

    async def test_a_redelivered_create_makes_one_threshold(self, harness: Harness) -> None:
        """The same request handled twice (a redelivery) stores one threshold and answers it both times."""
        query = cost_request("thresholds", {"op": "create", "period": "daily", "limit_usd": "3"}, ALICE)
        envelope = Envelope.new(query, user_id=ALICE)
        first = await harness.tracker.queries.on_request(envelope)
        second = await harness.tracker.queries.on_request(envelope)
        assert first == second
        assert len((await harness.data("thresholds", {}))["thresholds"]) == 1


class TestAlerts:
    async def test_an_admin_raises_an_alert_and_its_user_acknowledges_it(self, harness: Harness) -> None:
        """A manual alert about Alice carries her current spend; she sees and acknowledges it; Bob cannot."""
        harness.clock.at = NOON
        await harness.record(usage(ALICE, prompt=150_000, completion=0, at=NOON))
        assert (
            await harness.ask("alerts", {"op": "create", "limit_usd": "1", "message": "x"}, user=ALICE)
        ).code == "forbidden"
        raised = await harness.data(
            "alerts",
            {"op": "create", "user_id": ALICE, "limit_usd": "1", "message": "Spending spike", "severity": "critical"},
            user=ADMIN,
        )
        assert (raised["kind"], raised["user_id"], Decimal(raised["spent_usd"])) == ("manual", ALICE, Decimal("1.5"))
        assert raised["message"].startswith("Spending spike") and raised["created_by"] == ADMIN
        assert {d["status"] for d in raised["deliveries"]} == {"skipped"}  # no channel configured
        assert (
            await harness.ask("alerts", {"op": "update", "alert_id": raised["id"], "acknowledged": True}, user=BOB)
        ).code == "not_found"
        acked = await harness.data("alerts", {"op": "update", "alert_id": raised["id"], "acknowledged": True})
        assert (acked["acknowledged"], acked["acknowledged_by"]) == (True, ALICE)
        listed = await harness.data("alerts", {"acknowledged": False})
        assert listed["alerts"] == [] and listed["summary"]["total"] == 0
        everything = await harness.data("alerts", {})
        assert everything["summary"] == {"total": 1, "unacknowledged": 0, "by_severity": {"critical": 1}}
        assert (await harness.data("alerts", {}, user=BOB))["alerts"] == []
