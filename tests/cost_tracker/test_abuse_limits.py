"""Abuse limits: the default daily budget of users without one, at most N thresholds per user,
a user's thresholds alerting in-app only, and alert delivery limited per scope — on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from contracts.enums import BudgetAction
from tests.cost_tracker.conftest import ADMIN, ALICE, BOB, Harness, eventually
from tests.cost_tracker.test_limits import spend

NOON = datetime(2026, 5, 20, 12, tzinfo=UTC)


@pytest.fixture
async def hook_url() -> AsyncIterator[str]:
    """A webhook that accepts everything (so Slack counts as a configured channel)."""

    async def accept(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture
def settings_overrides(hook_url: str) -> dict[str, Any]:
    return {
        "cost_default_user_daily_budget_usd": "1",
        "cost_max_thresholds_per_user": 3,
        "cost_alert_scope_hourly_limit": 2,
        "slack_webhook_url": hook_url,
    }


async def create(harness: Harness, user: str, **fields: Any) -> Any:
    params = {"op": "create", "period": "daily", "limit_usd": "5", **fields}
    return await harness.ask("thresholds", params, user=user)


class TestDefaultDailyBudget:
    async def test_a_user_without_a_budget_is_blocked_past_the_default(self, harness: Harness) -> None:
        """Alice has no threshold: past $1 today a block budget.status (limit 1) and an in-app alert."""
        harness.clock.at = NOON
        await harness.record(spend(ALICE, "0.6"))
        assert harness.budgets == []
        await harness.record(spend(ALICE, "0.6"))
        await eventually(lambda: _sent(harness, 1))
        [status] = harness.budgets
        assert (status.scope_user_id, status.action, status.limit_usd) == (ALICE, BudgetAction.BLOCK, Decimal(1))
        [alert] = (await harness.data("alerts", {}))["alerts"]
        assert alert["deliveries"] == [] and Decimal(alert["limit_usd"]) == 1
        assert (await harness.data("thresholds", {}))["thresholds"] == []  # the default is not a stored threshold

    async def test_an_own_daily_budget_replaces_the_default(self, harness: Harness) -> None:
        """Bob's own $5 daily budget (an admin's) applies instead of the default: $2 spent is allowed."""
        harness.clock.at = NOON
        assert (await create(harness, ADMIN, user_id=BOB, action="block")).ok
        await harness.record(spend(BOB, "2"))
        assert harness.budgets == []
        await harness.record(spend(BOB, "3"))
        await eventually(lambda: _sent(harness, 1))
        assert harness.budgets[0].limit_usd == Decimal(5)

    async def test_the_next_day_lifts_the_default_block(self, harness: Harness) -> None:
        """Blocked by the default today; the first sweep of tomorrow allows again."""
        harness.clock.at = NOON
        await harness.record(spend(ALICE, "1"))
        await eventually(lambda: _sent(harness, 1))
        harness.clock.at = NOON + timedelta(days=1)
        await harness.tracker.sweep()
        await eventually(lambda: _sent(harness, 2))
        assert [s.action for s in harness.budgets] == [BudgetAction.BLOCK, BudgetAction.ALLOW]

    async def test_the_global_scope_has_no_default(self, harness: Harness) -> None:
        """Everyone's spend together is not one user: the default never blocks the global scope."""
        harness.clock.at = NOON
        await harness.record(spend(ALICE, "0.9"), spend(BOB, "0.9"))
        assert harness.budgets == []


class TestThresholdLimits:
    async def test_at_most_n_thresholds_per_user(self, harness: Harness) -> None:
        """Alice's fourth threshold is refused (forbidden, naming the limit; an admin's for her too); Bob and
        global ones are not affected."""
        for _ in range(3):
            assert (await create(harness, ALICE)).ok
        refused = await create(harness, ALICE)
        assert refused.code == "forbidden" and "COST_MAX_THRESHOLDS_PER_USER" in (refused.error or "")
        assert (await create(harness, ADMIN, user_id=ALICE)).code == "forbidden"
        assert (await create(harness, BOB)).ok
        assert (await create(harness, ADMIN, is_global=True)).ok

    async def test_a_users_thresholds_alert_in_app_only(self, harness: Harness) -> None:
        """A user may not name channels (create or update) and gets none by default; an admin may."""
        refused = await create(harness, ALICE, notification_channels=["slack"])
        assert refused.code == "forbidden"
        created = await create(harness, ALICE)
        assert created.ok and created.data["notification_channels"] == []
        update = {"op": "update", "threshold_id": created.data["id"], "notification_channels": ["email"]}
        assert (await harness.ask("thresholds", update)).code == "forbidden"
        by_admin = await create(harness, ADMIN, user_id=ALICE, notification_channels=["slack"])
        assert by_admin.ok and by_admin.data["notification_channels"] == ["slack"]


class TestAlertRate:
    async def test_a_scope_past_its_hourly_alerts_is_alerted_in_app_only(self, harness: Harness) -> None:
        """Four global thresholds crossed at once: two alerts go to Slack, the later two are stored with
        their delivery skipped as rate limited."""
        harness.clock.at = NOON
        for limit in ("1", "2", "3", "4"):
            assert (await create(harness, ADMIN, is_global=True, limit_usd=limit, notification_channels=["slack"])).ok
        await harness.record(spend(ALICE, "0.5"), spend(BOB, "0.5"), spend("carol", "0.5"), spend("dave", "2.5"))
        alerts = (await harness.data("alerts", {}, user=ADMIN))["alerts"]
        global_alerts = sorted((a for a in alerts if a["user_id"] is None), key=lambda a: Decimal(a["limit_usd"]))
        assert len(global_alerts) == 4
        skipped = [a["deliveries"][0] for a in global_alerts if a["deliveries"][0]["status"] == "skipped"]
        assert len(skipped) == 2 and all("rate limited" in d["last_error"] for d in skipped)

    async def test_the_window_is_an_hour(self, harness: Harness) -> None:
        """An hour after the last alerts, the scope's next alert is delivered again."""
        harness.clock.at = NOON
        for limit in ("1", "2", "3"):
            assert (await create(harness, ADMIN, is_global=True, limit_usd=limit, notification_channels=["slack"])).ok
        await harness.record(spend(ALICE, "0.9"), spend(BOB, "1.2"))  # global $1 and $2 crossed: the limit
        harness.clock.at = NOON + timedelta(hours=1, seconds=1)
        await harness.record(spend("carol", "0.9", at=harness.clock.at))
        alerts = (await harness.data("alerts", {}, user=ADMIN))["alerts"]
        third = next(a for a in alerts if a["user_id"] is None and Decimal(a["limit_usd"]) == 3)
        assert third["deliveries"][0]["status"] != "skipped"


async def _sent(harness: Harness, n: int) -> bool:
    return len(harness.budgets) >= n
