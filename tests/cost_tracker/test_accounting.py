"""Accounting: each usage.recorded priced exactly once, and the reports summing the same entries."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from contracts import Envelope
from contracts.costs import WorkflowCostReply
from contracts.enums import IntentType, Provider
from contracts.messages import Notify, Usage, WorkflowCancelled, WorkflowCompleted, WorkflowFailed
from contracts.routing import COST_TRACKER
from libs.telemetry.constants import METRIC_WORKFLOW_COST
from services.cost_tracker import accounting
from services.cost_tracker.metrics import METRIC_UNPRICED_CALLS, CostMetrics
from services.cost_tracker.model import WorkflowOutcome, WorkflowSpend
from tests.cost_tracker.conftest import ADMIN, ALICE, BOB, WAIT_S, Harness, eventually, usage


def D(value: str) -> Decimal:
    return Decimal(value)


class TestPricing:
    async def test_costs_are_tokens_times_prices_exactly(self, harness: Harness) -> None:
        """Per provider and model: azure gpt-4 at $0.01/1K, openai gpt-4o-mini at $0.002/1K, gpt-4o at its
        own prompt/completion prices — to the last digit."""
        workflow = uuid.uuid4()
        await harness.record(
            usage(provider=Provider.AZURE, model="gpt-4", prompt=1234, completion=567, workflow_id=workflow),
            usage(provider=Provider.OPENAI, model="gpt-4o-mini", prompt=777, completion=333, workflow_id=workflow),
            usage(provider=Provider.OPENAI, model="gpt-4o", prompt=1001, completion=99, workflow_id=workflow),
        )
        data = await harness.data("campaign", {"workflow_id": str(workflow)})
        costs = [(c["provider"], c["model"], D(c["cost"])) for c in data["calls"]]
        assert costs == [
            ("azure", "gpt-4", D("0.01801")),
            ("openai", "gpt-4o-mini", D("0.00222")),
            ("openai", "gpt-4o", D("0.0034925")),
        ]
        assert D(data["total_cost"]) == D("0.0237225")

    async def test_cached_prompt_tokens_are_billed_at_the_cached_rate(self, harness: Harness) -> None:
        """gpt-4o with 1,000 of 1,200 prompt tokens cached: 200 x $0.0025/1K + 1,000 x $0.00125/1K + 100 x
        $0.01/1K, stored with the entry (the store gives back the same figure)."""
        workflow = uuid.uuid4()
        await harness.record(
            usage(
                provider=Provider.OPENAI, model="gpt-4o", prompt=1200, completion=100, cached=1000, workflow_id=workflow
            )
        )
        [call] = (await harness.data("campaign", {"workflow_id": str(workflow)}))["calls"]
        assert D(call["cost"]) == D("0.00275")
        [entry] = await harness.tracker.store.entries(workflow)
        assert (entry.cached_prompt_tokens, entry.cached_price_per_1k) == (1000, D("0.00125"))

    async def test_an_unknown_model_is_priced_at_its_provider_rate_flagged_and_counted(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A model without a price costs the provider's rate (never $0), is flagged, and counts in the metric."""
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        monkeypatch.setattr(accounting, "get_cost_metrics", lambda: CostMetrics.from_meter(meters.get_meter("t")))
        workflow = uuid.uuid4()
        await harness.record(usage(model="brand-new-model", prompt=1500, completion=500, workflow_id=workflow))
        [call] = (await harness.data("campaign", {"workflow_id": str(workflow)}))["calls"]
        assert (D(call["cost"]), call["price_estimated"], call["price_entry"]) == (D("0.02"), True, "providers.azure")
        stats = await harness.data("stats")
        assert D(stats["estimated_total"]) == D("0.02")
        points = [
            point
            for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
            if metric.name == METRIC_UNPRICED_CALLS
            for point in metric.data.data_points
        ]
        assert [(p.attributes, p.value) for p in points] == [({"provider": "azure", "model": "brand-new-model"}, 1)]

    async def test_locally_counted_tokens_are_marked(self, harness: Harness) -> None:
        """usage.estimated (the provider gave no usage) is kept on the entry."""
        workflow = uuid.uuid4()
        await harness.record(usage(estimated=True, workflow_id=workflow))
        [call] = (await harness.data("campaign", {"workflow_id": str(workflow)}))["calls"]
        assert call["tokens_estimated"] is True


class TestIdempotency:
    async def test_a_redelivered_usage_message_is_counted_once(self, harness: Harness) -> None:
        """The same envelope three times through the bus (redeliveries) adds its cost once."""
        message = usage(prompt=1000, completion=1000)
        for _ in range(3):
            await harness.bus.publish(message)

        async def recorded() -> bool:
            return (await harness.data("stats"))["requests"] >= 1 and harness.bus.depth(COST_TRACKER) == 0

        await eventually(recorded)
        await harness.record(message)  # and once more, straight to the handler
        stats = await harness.data("stats")
        assert (stats["requests"], D(stats["month_total"])) == (1, D("0.02"))

    @pytest.mark.parametrize("user_id", [None, "*", "", "alice bob"])
    async def test_without_a_user_the_message_is_dead_lettered(self, harness: Harness, user_id: str | None) -> None:
        """A usage record nobody can be billed for — no user, or a user id spelling the global scope "*" (on
        PostgreSQL its totals' upsert touched the global row twice and failed) — is kept in the
        dead-letter queue at once, not dropped, guessed or added to the global totals."""
        message = usage().model_copy(update={"user_id": user_id})
        await harness.bus.publish(message)

        letters = []

        async def dead() -> bool:
            letters.extend(await harness.bus.dead_letters(COST_TRACKER))
            return bool(letters)

        await eventually(dead)
        [letter] = letters
        assert f"without a valid user_id ({user_id!r})" in letter.reason
        stats = await harness.data("stats", user=ADMIN)
        assert stats["requests"] == 0


class TestReportsAgree:
    async def test_stats_breakdown_and_campaign_costs_agree(self, harness: Harness) -> None:
        """The month total of stats = the breakdown's total by provider, by model, by day, by type = the sum
        of the month's campaign costs; and each provider's figure matches across them."""
        workflows = [uuid.uuid4() for _ in range(3)]
        await harness.record(
            usage(workflow_id=workflows[0], prompt=100, completion=50),
            usage(workflow_id=workflows[0], provider=Provider.OPENAI, model="gpt-4o-mini", prompt=900, completion=10),
            usage(
                workflow_id=workflows[1],
                model="gpt-4o",
                prompt=3,
                completion=7,
                workflow_type=IntentType.MESSAGE_GENERATION,
            ),
            usage(workflow_id=workflows[2], provider=Provider.OPENAI, model="unpriced", prompt=12345, completion=1),
        )
        stats = await harness.data("stats")
        month = D(stats["month_total"])
        assert month == D("0.00150") + D("0.00182") + D("0.0000775") + D("0.024692")
        for group_by in ("provider", "model", "day", "type"):
            breakdown = await harness.data("breakdown", {"group_by": group_by})
            assert D(breakdown["total"]) == month, group_by
            assert sum(D(g["cost"]) for g in breakdown["groups"]) == month, group_by
            assert breakdown["requests"] == stats["requests"] == 4
        by_provider = {g["key"]: D(g["cost"]) for g in (await harness.data("breakdown"))["groups"]}
        assert by_provider == {k: D(v) for k, v in stats["month_provider_breakdown"].items()}
        campaigns = await harness.data("campaign", {})
        assert (campaigns["count"], D(campaigns["total"])) == (3, month)
        assert sum(D(w["total_cost"]) for w in campaigns["workflows"]) == month
        assert stats["workflows"] == 3
        assert D(stats["average_cost_per_workflow"]) == (month / 3).quantize(D("1e-10"))

    async def test_today_and_month_are_utc_calendar_periods(self, harness: Harness) -> None:
        """Usage of an earlier day this month counts in the month, not today, nor in today's provider split."""
        harness.clock.at = datetime(2026, 3, 15, 12, tzinfo=UTC)
        await harness.record(
            usage(prompt=1000, completion=0, at=datetime(2026, 3, 15, 0, 0, 1, tzinfo=UTC)),
            usage(prompt=2000, completion=0, at=datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC)),
            usage(prompt=4000, completion=0, at=datetime(2026, 2, 28, 23, 0, tzinfo=UTC)),
        )
        stats = await harness.data("stats")
        assert (D(stats["today_total"]), D(stats["month_total"])) == (D("0.01"), D("0.03"))
        assert (stats["today_requests"], stats["requests"]) == (1, 2)
        # providerBreakdown is today's split (summing to todayTotal); the month's is given separately.
        assert {k: D(v) for k, v in stats["provider_breakdown"].items()} == {"azure": D("0.01"), "openai": D(0)}
        assert {k: D(v) for k, v in stats["month_provider_breakdown"].items()} == {"azure": D("0.03"), "openai": D(0)}
        days = await harness.data("breakdown", {"group_by": "day", "start": "2026-03-13T00:00:00Z"})
        assert [(g["key"], D(g["cost"])) for g in days["groups"]] == [
            ("2026-03-13", D(0)),
            ("2026-03-14", D("0.02")),
            ("2026-03-15", D("0.01")),
        ]

    async def test_daily_breakdown_split_by_provider_and_by_model(self, harness: Harness) -> None:
        """groupBy day with splitBy lists every day with the same parts — every provider, or every model with
        costs in the range — each day's parts summing to its cost, a zero where nothing was spent."""
        harness.clock.at = datetime(2026, 3, 15, 12, tzinfo=UTC)
        await harness.record(
            usage(prompt=2000, completion=0, at=datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC)),
            usage(prompt=1000, completion=0, at=datetime(2026, 3, 15, 0, 0, 1, tzinfo=UTC)),
            usage(
                provider=Provider.OPENAI, model="gpt-4o-mini", prompt=1000, completion=0,
                at=datetime(2026, 3, 15, 1, tzinfo=UTC),
            ),
        )  # fmt: skip
        start = "2026-03-13T00:00:00Z"
        by_provider = await harness.data("breakdown", {"group_by": "day", "split_by": "provider", "start": start})
        by_model = await harness.data("breakdown", {"group_by": "day", "split_by": "model", "start": start})
        assert (by_provider["split_by"], by_model["split_by"]) == ("provider", "model")
        mini = D(by_model["groups"][2]["cost"]) - D("0.01")
        assert mini > 0
        assert [[(p["key"], D(p["cost"]), p["requests"]) for p in g["parts"]] for g in by_provider["groups"]] == [
            [("azure", D("0"), 0), ("openai", D("0"), 0)],
            [("azure", D("0.02"), 1), ("openai", D("0"), 0)],
            [("azure", D("0.01"), 1), ("openai", mini, 1)],
        ]
        assert [[(p["key"], D(p["cost"])) for p in g["parts"]] for g in by_model["groups"]] == [
            [("gpt-4", D("0")), ("gpt-4o-mini", D("0"))],
            [("gpt-4", D("0.02")), ("gpt-4o-mini", D("0"))],
            [("gpt-4", D("0.01")), ("gpt-4o-mini", mini)],
        ]
        for group in by_provider["groups"] + by_model["groups"]:
            assert sum(D(p["cost"]) for p in group["parts"]) == D(group["cost"])
        plain = await harness.data("breakdown", {"group_by": "day", "start": start})
        assert plain["split_by"] is None and all(g["parts"] is None for g in plain["groups"])


class TestOutcomes:
    async def test_campaign_cost_is_settled_once_the_final_usage_and_the_end_are_in(self, harness: Harness) -> None:
        """Settled needs the workflow's end and the usage the router reported for its last generation."""
        workflow = uuid.uuid4()
        first = usage(workflow_id=workflow, prompt=10, completion=5)
        final = Usage(prompt_tokens=20, completion_tokens=8, total_tokens=28)
        end = WorkflowCompleted(provider=Provider.AZURE, content="x", duration_ms=12.0, usage=final)
        await harness.record(first)
        await harness.tracker.accounting.on_workflow_end(Envelope.new(end, workflow_id=workflow, user_id=ALICE))
        view = await harness.data("campaign", {"workflow_id": str(workflow)})
        assert (view["status"], view["settled"]) == ("completed", False)
        await harness.record(usage(workflow_id=workflow, prompt=20, completion=8))
        view = await harness.data("campaign", {"workflow_id": str(workflow)})
        assert (view["settled"], D(view["total_cost"])) == (True, D("0.00043"))

    async def test_an_end_with_notify_tells_the_requester_the_recorded_cost(self, harness: Harness) -> None:
        """workflow.completed with `notify` sends the workflow's recorded cost (settled, its total) to the
        requester's cost correlation id, as the reply to the cost query would have."""
        workflow = uuid.uuid4()
        final = Usage(prompt_tokens=20, completion_tokens=8, total_tokens=28)
        await harness.record(usage(workflow_id=workflow, prompt=20, completion=8))
        async with harness.bus.expecting("cost") as (reply_to, (told,)):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            end = WorkflowCompleted(provider=Provider.AZURE, content="x", duration_ms=1.0, usage=final, notify=notify)
            await harness.tracker.accounting.on_workflow_end(Envelope.new(end, workflow_id=workflow, user_id=ALICE))
            reply = (await asyncio.wait_for(told, 5.0)).payload
        assert isinstance(reply, WorkflowCostReply) and reply.data is not None
        assert (reply.data.workflow_id, reply.data.settled, reply.data.total_cost) == (workflow, True, D("0.00028"))

    async def test_a_usage_with_notify_tells_the_cost_recorded_so_far(self, harness: Harness) -> None:
        """usage.recorded with `notify` (the text a ?wait=true workflow ends with) sends the workflow's cost once
        it is recorded: every entry so far, this one among them, not settled (the end is not known here);
        told again when the same message is redelivered (recorded once)."""
        workflow = uuid.uuid4()
        await harness.record(usage(workflow_id=workflow, prompt=100, completion=0))  # an earlier billed attempt
        async with harness.bus.expecting("cost", "again") as (reply_to, (told, again)):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            final = usage(workflow_id=workflow, prompt=20, completion=8, notify=notify)
            await harness.record(final)
            reply = (await asyncio.wait_for(told, WAIT_S)).payload
            notify = notify.model_copy(update={"cost_correlation_id": "again"})
            await harness.record(
                final.model_copy(update={"payload": final.payload.model_copy(update={"notify": notify})})
            )
            replayed = (await asyncio.wait_for(again, WAIT_S)).payload
        assert isinstance(reply, WorkflowCostReply) and reply.data is not None
        assert (reply.data.workflow_id, reply.data.settled, reply.data.requests) == (workflow, False, 2)
        assert reply.data.total_cost == D("0.00128")
        assert [(c.prompt_tokens, c.completion_tokens) for c in reply.data.calls or ()] == [(100, 0), (20, 8)]
        assert isinstance(replayed, WorkflowCostReply) and replayed.data == reply.data

    async def test_the_cost_is_told_while_the_outcome_is_still_being_written(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With `notify`, the requester hears the settled cost while the outcome's write is held (not after it
        returns); once the write goes on, the end's handling finishes with the outcome stored."""
        workflow = uuid.uuid4()
        await harness.record(usage(workflow_id=workflow, prompt=20, completion=8))
        store = harness.tracker.store
        record_outcome, writing, release = store.record_outcome, asyncio.Event(), asyncio.Event()

        async def held(outcome: WorkflowOutcome) -> WorkflowSpend | None:
            writing.set()
            await release.wait()
            return await record_outcome(outcome)

        monkeypatch.setattr(store, "record_outcome", held)
        async with harness.bus.expecting("cost") as (reply_to, (told,)):
            notify = Notify(reply_to=reply_to, end_correlation_id="end", cost_correlation_id="cost")
            final = Usage(prompt_tokens=20, completion_tokens=8, total_tokens=28)
            end = WorkflowCompleted(provider=Provider.AZURE, content="x", duration_ms=1.0, usage=final, notify=notify)
            envelope = Envelope.new(end, workflow_id=workflow, user_id=ALICE)
            handling = asyncio.create_task(harness.tracker.accounting.on_workflow_end(envelope))
            try:
                await asyncio.wait({told}, timeout=WAIT_S)
                assert told.done(), "the cost was not told while the outcome was being written"
                assert writing.is_set() and not handling.done()
            finally:
                release.set()
                await asyncio.wait_for(handling, WAIT_S)
        reply = told.result().payload
        assert isinstance(reply, WorkflowCostReply) and reply.data is not None
        assert (reply.data.workflow_id, reply.data.settled, reply.data.total_cost) == (workflow, True, D("0.00028"))
        stored = await store.outcomes([workflow])
        assert stored[workflow].status == "completed"

    async def test_a_failed_workflow_is_settled_with_what_it_billed(self, harness: Harness) -> None:
        """A failed workflow's billed attempts are its cost; nothing more will come."""
        workflow = uuid.uuid4()
        await harness.record(usage(workflow_id=workflow, prompt=100, completion=0))
        error = {"type": "azure_timeout", "message": "t", "retryable": True}
        failed = WorkflowFailed.model_validate({"error": error, "duration_ms": 5.0})
        await harness.tracker.accounting.on_workflow_end(Envelope.new(failed, workflow_id=workflow, user_id=ALICE))
        view = await harness.data("campaign", {"workflow_id": str(workflow)})
        assert (view["status"], view["settled"], D(view["total_cost"])) == ("failed", True, D("0.001"))

    async def test_a_cancelled_workflow_is_settled_as_cancelled(self, harness: Harness) -> None:
        """workflow.cancelled ends a workflow like the others: status cancelled, settled with what it billed."""
        workflow = uuid.uuid4()
        await harness.record(usage(workflow_id=workflow, prompt=100, completion=0))
        cancelled = WorkflowCancelled(
            workflow_id=workflow, account_id=ALICE, cancelled_at=datetime.now(UTC), duration_ms=7.0
        )
        await harness.tracker.accounting.on_workflow_end(Envelope.new(cancelled, workflow_id=workflow, user_id=ALICE))
        view = await harness.data("campaign", {"workflow_id": str(workflow)})
        assert (view["status"], view["settled"], D(view["total_cost"])) == ("cancelled", True, D("0.001"))

    async def test_the_end_records_the_workflow_cost_once_with_the_latest_provider(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failed workflow's WorkflowCost is the sum of its entries under the provider of the latest one;
        a redelivered end records nothing more."""
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        monkeypatch.setattr(accounting, "get_cost_metrics", lambda: CostMetrics.from_meter(meters.get_meter("t")))
        workflow = uuid.uuid4()
        early, late = datetime(2030, 1, 1, 10, tzinfo=UTC), datetime(2030, 1, 1, 11, tzinfo=UTC)
        await harness.record(usage(workflow_id=workflow, prompt=100, completion=0, at=early))
        await harness.record(usage(provider=Provider.OPENAI, model="gpt-4o-mini", workflow_id=workflow, at=late))
        error = {"type": "openai_timeout", "message": "t", "retryable": True}
        failed = WorkflowFailed.model_validate({"error": error, "duration_ms": 5.0})
        end = Envelope.new(failed, workflow_id=workflow, user_id=ALICE)
        await harness.tracker.accounting.on_workflow_end(end)
        await harness.tracker.accounting.on_workflow_end(end)
        data = reader.get_metrics_data()
        assert data is not None
        [cost] = [
            point
            for metric in data.resource_metrics[0].scope_metrics[0].metrics
            if metric.name == METRIC_WORKFLOW_COST
            for point in metric.data.data_points
        ]
        assert isinstance(cost, HistogramDataPoint)
        total = D((await harness.data("campaign", {"workflow_id": str(workflow)}))["total_cost"])
        assert (cost.attributes, cost.count) == ({"provider": "openai"}, 1)
        assert cost.sum == pytest.approx(float(total)) and total > 0


class TestVisibility:
    async def test_one_user_never_sees_anothers_costs(self, harness: Harness) -> None:
        """Bob's stats, breakdown, campaigns, forecast and optimization hold none of Alice's costs; asking
        for her by name is refused; her workflow is not found for him."""
        workflow = uuid.uuid4()
        await harness.record(usage(ALICE, workflow_id=workflow, prompt=5000, completion=5000))
        await harness.record(usage(BOB, prompt=1000, completion=0))
        stats = await harness.data("stats", user=BOB)
        assert (stats["user_id"], D(stats["month_total"]), stats["requests"]) == (BOB, D("0.01"), 1)
        assert D((await harness.data("breakdown", user=BOB))["total"]) == D("0.01")
        assert [w["user_id"] for w in (await harness.data("campaign", {}, user=BOB))["workflows"]] == [BOB]
        assert D((await harness.data("optimization", user=BOB))["total_cost"]) == D("0.01")
        refused = await harness.ask("stats", {"user_id": ALICE}, user=BOB)
        assert (refused.ok, refused.code) == (False, "forbidden")
        hidden = await harness.ask("campaign", {"workflow_id": str(workflow)}, user=BOB)
        assert (hidden.ok, hidden.code) == (False, "not_found")

    async def test_an_admin_sees_everyone_or_filters_by_user(self, harness: Harness) -> None:
        """Without user_id an admin's stats cover everyone; with it, that user only."""
        await harness.record(usage(ALICE, prompt=1000, completion=0), usage(BOB, prompt=3000, completion=0))
        assert D((await harness.data("stats", user="admin"))["month_total"]) == D("0.04")
        assert D((await harness.data("stats", {"user_id": BOB}, user="admin"))["month_total"]) == D("0.03")
