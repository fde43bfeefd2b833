"""Thresholds as the original plan has them: hourly and per-request types, thresholds on one provider's spend,
and a user's own alert destinations (their webhook, their e-mail) besides the operators' channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from contracts import Envelope
from contracts.enums import BudgetAction, CostPeriod, Provider
from libs.callbacks import H_EVENT_ID, H_EVENT_TYPE, H_SIGNATURE, signature_matches
from tests.cost_tracker.conftest import ADMIN, ALICE, BOB, Harness, cost_request, eventually, usage
from tests.cost_tracker.test_channels import REGION, SENDER, Aws, aws  # noqa: F401 (the aws fixture)

NOON = datetime(2026, 5, 20, 12, tzinfo=UTC)
SECRET = "s" * 32


def spend(dollars: str, *, at: datetime, user: str = ALICE, provider: Provider = Provider.AZURE) -> Envelope:
    """A call of `user` costing exactly `dollars` (azure gpt-4 $0.01, openai gpt-4o-mini $0.002 per 1K tokens)."""
    if provider is Provider.AZURE:
        return usage(user, prompt=int(Decimal(dollars) * 100_000), completion=0, at=at)
    return usage(user, Provider.OPENAI, "gpt-4o-mini", prompt=int(Decimal(dollars) * 500_000), completion=0, at=at)


async def threshold(harness: Harness, *, user: str = ADMIN, **fields: Any) -> dict[str, Any]:
    params = {"op": "create", "severity": "warning", **fields}
    return dict(await harness.data("thresholds", params, user=user))


async def alerts(harness: Harness) -> list[dict[str, Any]]:
    """Every alert of NOON's month, oldest first."""
    month = {"start": NOON.replace(day=1, hour=0), "end": NOON + timedelta(days=1)}
    return list(reversed((await harness.data("alerts", month, user=ADMIN))["alerts"]))


class TestHourly:
    async def test_an_hourly_threshold_alerts_once_an_hour(self, harness: Harness) -> None:
        """$1.20 within 12:00-13:00 crosses $1 once; the next hour's $1.20 raises the next hour's alert."""
        harness.clock.at = NOON
        await threshold(harness, user=ALICE, period="hourly", limit_usd="1")
        for minute in (5, 10, 15):
            await harness.record(spend("0.4", at=NOON + timedelta(minutes=minute)))
        harness.clock.at = NOON + timedelta(hours=1, minutes=30)
        for minute in (35, 40, 45):
            await harness.record(spend("0.4", at=NOON + timedelta(hours=1, minutes=minute)))
        found = await alerts(harness)
        assert [(a["period"], a["period_started_at"], Decimal(a["spent_usd"])) for a in found] == [
            ("hourly", "2026-05-20T12:00:00Z", Decimal("1.2")),
            ("hourly", "2026-05-20T13:00:00Z", Decimal("1.2")),
        ]

    async def test_an_hourly_block_is_lifted_when_the_hour_ends(self, harness: Harness) -> None:
        """An hourly block budget is published as budget.status (period hourly) and lifted by the next hour's sweep."""
        harness.clock.at = NOON
        await threshold(harness, user_id=ALICE, period="hourly", limit_usd="1", action="block")
        await harness.record(spend("1.5", at=NOON))
        await eventually(lambda: _has(harness, 1))
        harness.clock.at = NOON + timedelta(minutes=59)
        await harness.tracker.sweep()
        assert {s.action for s in harness.budgets} == {BudgetAction.BLOCK}
        harness.clock.at = NOON + timedelta(hours=1, seconds=1)
        await harness.tracker.sweep()
        await eventually(lambda: _has(harness, 2))
        lifted = harness.budgets[-1]
        assert (lifted.period, lifted.action, lifted.spent_usd) == (CostPeriod.HOURLY, BudgetAction.ALLOW, Decimal(0))


async def _has(harness: Harness, n: int) -> bool:
    return len(harness.budgets) >= n


class TestPerRequest:
    async def test_each_call_over_the_limit_raises_its_own_alert(self, harness: Harness) -> None:
        """Calls of $0.30, $0.70, $0.90 against $0.50 per request: two alerts, each the call's own cost; a
        redelivered call none more."""
        harness.clock.at = NOON
        await threshold(harness, user=ALICE, period="per_request", limit_usd="0.5")
        calls = [spend(dollars, at=NOON + timedelta(seconds=i)) for i, dollars in enumerate(("0.3", "0.7", "0.9"))]
        await harness.record(*calls, calls[2])
        found = sorted(await alerts(harness), key=lambda a: Decimal(a["spent_usd"]))  # raised at the same time
        assert [(a["period"], Decimal(a["spent_usd"]), Decimal(a["limit_usd"])) for a in found] == [
            ("per_request", Decimal("0.7"), Decimal("0.5")),
            ("per_request", Decimal("0.9"), Decimal("0.5")),
        ]
        assert "azure (gpt-4)" in found[0]["message"]

    async def test_a_global_per_request_threshold_watches_every_user(self, harness: Harness) -> None:
        """An admin's global $1 per request: Bob's $2 call alerts, naming Bob."""
        harness.clock.at = NOON
        await threshold(harness, is_global=True, period="per_request", limit_usd="1")
        await harness.record(spend("0.5", at=NOON), spend("2", at=NOON, user=BOB))
        [alert] = await alerts(harness)
        assert alert["user_id"] is None and "user bob" in alert["message"]


class TestPerProvider:
    async def test_only_the_named_providers_spend_counts(self, harness: Harness) -> None:
        """A global daily $0.05 on openai: $1 on azure alerts nothing; $0.06 on openai alerts once."""
        harness.clock.at = NOON
        created = await threshold(harness, is_global=True, period="daily", limit_usd="0.05", provider="openai")
        assert created["provider"] == "openai"
        await harness.record(spend("1", at=NOON))
        assert await alerts(harness) == []
        await harness.record(*(spend("0.03", at=NOON, provider=Provider.OPENAI) for _ in range(2)))
        [alert] = await alerts(harness)
        assert Decimal(alert["spent_usd"]) == Decimal("0.06") and "daily openai spend" in alert["message"]

    async def test_a_provider_threshold_created_below_the_spend_alerts_at_once(self, harness: Harness) -> None:
        """Alice's $0.50 hourly on azure, created after $0.80 of azure spend this hour: alerted on creation."""
        harness.clock.at = NOON + timedelta(minutes=30)
        await harness.record(spend("0.8", at=NOON + timedelta(minutes=1)))
        await threshold(harness, user=ALICE, period="hourly", limit_usd="0.5", provider="azure")
        [alert] = await alerts(harness)
        assert (alert["period"], Decimal(alert["spent_usd"]), alert["user_id"]) == ("hourly", Decimal("0.8"), ALICE)

    @pytest.mark.parametrize(
        "fields",
        [{"period": "per_request", "action": "block"}, {"period": "daily", "provider": "azure", "action": "downgrade"}],
    )
    def test_a_budget_is_on_every_providers_spend_over_a_period(self, fields: dict[str, Any]) -> None:
        """A per-request or one provider's threshold with an action is refused by the contract (a 400)."""
        with pytest.raises(ValidationError, match="alerts only"):
            cost_request("thresholds", {"op": "create", "limit_usd": "1", **fields}, ADMIN)

    async def test_an_edit_cannot_turn_a_per_request_threshold_into_a_budget(self, harness: Harness) -> None:
        """Setting block on an existing per-request threshold is refused and changes nothing."""
        created = await threshold(harness, period="per_request", limit_usd="1")
        reply = await harness.ask(
            "thresholds", {"op": "update", "threshold_id": created["id"], "action": "block"}, user=ADMIN
        )
        assert reply.code == "invalid_parameter"
        listed = (await harness.data("thresholds", {}, user=ADMIN))["thresholds"]
        assert [t["action"] for t in listed] == ["none"]


@dataclass
class Receiver:
    """A user's webhook receiver: records each POST's headers and exact body."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/alerts", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    found.url = f"http://{host}:{port}/alerts"
    yield found
    await runner.cleanup()


class TestUserDestination:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"webhook_secret": SECRET, "webhook_allow_local_http": True}

    async def test_a_users_alert_is_posted_to_their_webhook_signed(self, harness: Harness, receiver: Receiver) -> None:
        """Alice sets her webhook; her own threshold's crossing is POSTed there once, signed, with the alert's id."""
        harness.clock.at = NOON
        stored = await harness.data("destination", {"op": "update", "webhook_url": receiver.url})
        assert (stored["user_id"], stored["webhook_url"], stored["email"]) == (ALICE, receiver.url, None)
        await threshold(harness, user=ALICE, period="daily", limit_usd="1")
        await harness.record(spend("1.5", at=NOON))
        await eventually(lambda: _received(receiver, 1))
        [(headers, body)] = receiver.received
        [alert] = await alerts(harness)
        assert signature_matches(SECRET.encode(), body, headers[H_SIGNATURE])
        assert (headers[H_EVENT_ID], headers[H_EVENT_TYPE]) == (alert["id"], "cost.alert")
        sent = orjson.loads(body)
        assert (sent["alertId"], sent["userId"], Decimal(sent["spentUsd"])) == (alert["id"], ALICE, Decimal("1.5"))
        assert (sent["periodStart"], sent["periodStartedAt"]) == ("2026-05-20", "2026-05-20T00:00:00+00:00")
        await eventually(lambda: _delivered(harness, "user_webhook"))

    async def test_only_the_user_or_an_admin_reads_and_sets_it(self, harness: Harness, receiver: Receiver) -> None:
        """Bob may not read or set Alice's destinations (forbidden); an admin may; a plain-http or credentialed
        URL elsewhere than this machine is refused; leaving a destination out removes it."""
        await harness.data("destination", {"op": "update", "webhook_url": receiver.url, "email": "a@example.com"})
        assert (await harness.ask("destination", {"user_id": ALICE}, user=BOB)).code == "forbidden"
        other = {"op": "update", "user_id": ALICE, "email": "b@example.com"}
        assert (await harness.ask("destination", other, user=BOB)).code == "forbidden"
        assert (await harness.data("destination", {"user_id": ALICE}, user=ADMIN))["email"] == "a@example.com"
        for url in ("http://hooks.example.com/x", "https://user:pw@hooks.example.com/x"):
            refused = await harness.ask("destination", {"op": "update", "webhook_url": url})
            assert refused.code == "invalid_parameter" and "webhook URL" in (refused.error or "")
        cleared = await harness.data("destination", {"op": "update", "email": "a@example.com"})
        assert (cleared["webhook_url"], cleared["email"]) == (None, "a@example.com")

    async def test_an_operators_global_alert_never_goes_to_a_user(self, harness: Harness, receiver: Receiver) -> None:
        """A global threshold's alert has no user: Alice's webhook gets nothing from it."""
        harness.clock.at = NOON
        await harness.data("destination", {"op": "update", "webhook_url": receiver.url})
        await threshold(harness, is_global=True, period="daily", limit_usd="1", notification_channels=[])
        await harness.record(spend("1.5", at=NOON))
        [alert] = await alerts(harness)
        assert alert["deliveries"] == []
        await asyncio.sleep(0.2)
        assert receiver.received == []


async def _received(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


async def _delivered(harness: Harness, channel: str) -> bool:
    found = [d for a in await alerts(harness) for d in a["deliveries"] if d["channel"] == channel]
    return bool(found) and all(d["status"] == "sent" for d in found)


@pytest.mark.integration
class TestUserEmail:
    @pytest.fixture
    def settings_overrides(self, aws: Aws) -> dict[str, Any]:  # noqa: F811 (the fixture imported above)
        return {"ses_from_email": SENDER, "aws_region": REGION, "cost_alerts_aws_endpoint_url": aws.endpoint}

    async def test_a_users_alert_is_emailed_to_their_address(self, harness: Harness, aws: Aws) -> None:  # noqa: F811
        """Alice's own e-mail address gets her threshold's alert (SES, moto's server): one e-mail, delivery sent."""
        harness.clock.at = NOON
        await harness.data("destination", {"op": "update", "email": "alice@example.com"})
        await threshold(harness, user=ALICE, period="daily", limit_usd="1")
        await harness.record(spend("1.5", at=NOON))
        await eventually(lambda: _delivered(harness, "user_email"))
        assert await aws.emails_sent() == 1
