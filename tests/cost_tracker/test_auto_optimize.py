"""The automatic optimisation mode: within a budget rule it applies the best recommendations once the rule's
period spend passes the trigger, never over an admin's own policy, and reverts what it applied when the next
period begins or it is switched off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from contracts.enums import Provider
from tests.cost_tracker.conftest import ADMIN, ALICE, Harness, usage
from tests.cost_tracker.test_policies import NOW, T, apply, history, recommended


async def budget(harness: Harness, **fields: Any) -> str:
    params = {"op": "create", "period": "daily", "limit_usd": "1", "action": "block", "is_global": True, **fields}
    return str((await harness.data("thresholds", params, user=ADMIN))["id"])


async def switch(harness: Harness, **fields: Any) -> Any:
    return await harness.ask("optimize", {"op": "update", **fields}, user=ADMIN)


def spend_today(dollars: str) -> Any:
    """Content planning on azure gpt-4 ($0.01/1K) today."""
    return usage(
        ALICE, Provider.AZURE, "gpt-4", int(float(dollars) * 100_000), 0, workflow_type=T.CONTENT_PLANNING, at=NOW
    )


def automatic(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["workflow_type"], p["provider"]) for p in state["in_force"] if p["automatic"]]


class TestAutomaticMode:
    async def test_it_acts_past_the_trigger_and_reverts_the_next_day(self, harness: Harness) -> None:
        """Off below 50% of the $1 daily rule; at $0.60 content_planning goes to openai (sent to the routers);
        the next day's sweep reverts it."""
        await history(harness)
        rule = await budget(harness)
        state = (await switch(harness, enabled=True, threshold_id=rule, trigger_percent="50")).data
        assert (state["enabled"], state["active"], automatic(state)) == (True, False, [])
        await harness.record(spend_today("0.6"))
        await harness.tracker.sweep()
        state = await harness.data("optimize", {}, user=ADMIN)
        assert (state["active"], automatic(state)) == (True, [("content_planning", "openai")])
        assert [(r.workflow_type, r.provider) for r in harness.policies[-1].rules] == [
            (T.CONTENT_PLANNING, Provider.OPENAI)
        ]
        harness.clock.at = NOW + timedelta(days=1)
        await harness.tracker.sweep()
        state = await harness.data("optimize", {}, user=ADMIN)
        assert (state["active"], automatic(state), harness.policies[-1].rules) == (False, [], [])
        [reverted] = (await harness.data("policies", {}, user=ADMIN))["policies"]
        assert (reverted["automatic"], reverted["reverted_by"]) == (True, "auto-optimize")

    async def test_an_admins_policy_is_left_alone_and_off_reverts_its_own(self, harness: Harness) -> None:
        """With the admin's policy for content_planning in force the mode adds none; switched off, nothing of
        the admin's is reverted."""
        await history(harness)
        advice = await recommended(harness, "switch_provider")
        assert (await apply(harness, advice["id"])).ok
        rule = await budget(harness)
        await harness.record(spend_today("0.9"))
        state = (await switch(harness, enabled=True, threshold_id=rule)).data
        assert (state["active"], automatic(state), len(state["in_force"])) == (True, [], 1)
        state = (await switch(harness, enabled=False)).data
        assert (state["enabled"], [p["applied_by"] for p in state["in_force"]]) == (False, [ADMIN])

    @pytest.mark.parametrize("fields", [{}, {"action": "none"}, {"is_global": False, "user_id": ALICE}])
    async def test_it_acts_only_within_a_budget_rule(self, harness: Harness, fields: dict[str, Any]) -> None:
        """No threshold, one without an action, or a user's: invalid_parameter; a user may not switch it."""
        threshold = None if not fields else await budget(harness, **fields)
        assert (await switch(harness, enabled=True, threshold_id=threshold)).code == "invalid_parameter"
        refused = await harness.ask("optimize", {"op": "update", "enabled": False}, user=ALICE)
        assert refused.code == "forbidden"
