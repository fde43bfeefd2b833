"""Forecast and optimization, computed from the recorded daily history."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts import Envelope
from contracts.enums import IntentType, Provider
from services.cost_tracker import forecast as fc
from tests.cost_tracker.conftest import ALICE, BOB, Harness, usage

TODAY = datetime(2026, 6, 30, 15, tzinfo=UTC)


def on_day(days_ago: int, dollars: Decimal, user: str = ALICE) -> Envelope:
    """Azure gpt-4 usage costing exactly `dollars` ($0.01 per 1K tokens), `days_ago` days before today."""
    at = TODAY.replace(hour=10) - timedelta(days=days_ago)
    return usage(user, prompt=int(dollars * 100_000), completion=0, at=at)


class TestForecast:
    async def test_an_exact_trend_is_extrapolated_with_no_spread(self, harness: Harness) -> None:
        """Daily costs 1, 1.5, ..., 5.5 over ten days: the line continues (7 days: 52.5, 30 days: 397.5)
        and, with no residual, the interval is the forecast itself."""
        harness.clock.at = TODAY
        await harness.record(*(on_day(10 - t, Decimal(1) + Decimal("0.5") * t) for t in range(10)))
        data = await harness.data("forecast")
        assert (data["method"], data["history_days"], Decimal(data["trend_per_day"])) == (
            "linear_trend",
            10,
            Decimal("0.5"),
        )
        assert Decimal(data["next_7_days"]["total"]) == Decimal("52.5")
        assert Decimal(data["next_30_days"]["total"]) == Decimal("397.5")
        for window in ("next_7_days", "next_30_days"):
            assert data[window]["lower"] == data[window]["total"] == data[window]["upper"]
        assert len(data["history"]) == 28 and data["history"][-1]["date"] == "2026-06-29"

    async def test_a_noisy_trend_matches_an_independent_least_squares_fit(self, harness: Harness) -> None:
        """Slope, level and the 95% prediction interval of the 7-day sum agree with statistics' OLS."""
        harness.clock.at = TODAY
        costs = [
            Decimal(v) for v in ("2.1", "2.9", "2.4", "3.8", "3.1", "4.6", "3.9", "5.2", "4.4", "5.9", "5.1", "6.3")
        ]
        await harness.record(*(on_day(len(costs) - t, c) for t, c in enumerate(costs)))
        data = await harness.data("forecast")
        xs, ys = list(range(len(costs))), [float(c) for c in costs]
        slope, intercept = statistics.linear_regression(xs, ys)
        n, h = len(xs), 7
        residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True)) / (n - 2)
        mean_x = sum(xs) / n
        sxx = sum((x - mean_x) ** 2 for x in xs)
        future = range(n, n + h)
        total = sum(intercept + slope * t for t in future)
        margin = 1.96 * math.sqrt(residual * (h + h * h / n + sum(t - mean_x for t in future) ** 2 / sxx))
        window = data["next_7_days"]
        assert math.isclose(float(data["trend_per_day"]), slope, abs_tol=1e-6)
        assert math.isclose(float(window["total"]), total, abs_tol=1e-5)
        assert math.isclose(float(window["lower"]), total - margin, abs_tol=1e-5)
        assert math.isclose(float(window["upper"]), total + margin, abs_tol=1e-5)

    async def test_a_short_history_uses_the_daily_mean(self, harness: Harness) -> None:
        """Three days (1, 2, 3): 7 days forecast 14, interval 14 ± 1.96·√(1·(7 + 49/3))."""
        harness.clock.at = TODAY
        await harness.record(on_day(3, Decimal(1)), on_day(2, Decimal(2)), on_day(1, Decimal(3)))
        data = await harness.data("forecast")
        margin = 1.96 * math.sqrt(7 + 49 / 3)
        window = data["next_7_days"]
        assert (data["method"], Decimal(window["total"])) == ("daily_mean", Decimal(14))
        assert math.isclose(float(window["upper"]), 14 + margin, abs_tol=1e-5)
        assert math.isclose(float(window["lower"]), 14 - margin, abs_tol=1e-5)

    async def test_no_history_forecasts_nothing(self, harness: Harness) -> None:
        """Without costs in the lookback (today's do not count yet) every figure is zero."""
        harness.clock.at = TODAY
        await harness.record(on_day(0, Decimal(5)), on_day(40, Decimal(5)))
        data = await harness.data("forecast")
        assert data["method"] == "no_history"
        assert {Decimal(v) for v in data["next_30_days"].values() if isinstance(v, str)} == {Decimal(0)}

    async def test_each_user_forecasts_from_their_own_history(self, harness: Harness) -> None:
        """Bob's forecast ignores Alice's costs."""
        harness.clock.at = TODAY
        await harness.record(on_day(1, Decimal(9)), on_day(1, Decimal(1), BOB))
        data = await harness.data("forecast", user=BOB)
        assert Decimal(data["next_7_days"]["total"]) == Decimal(7)


# A weekly pattern (Monday first; it sums to zero): the weekend's campaigns cost more than the week's.
PATTERN = [Decimal(v) for v in ("-0.50", "-0.60", "-0.40", "-0.30", "0.20", "0.90", "0.70")]


def seasonal(day: datetime) -> Decimal:
    """The synthetic cost of `day`: 2 + 0.05 per day since June 2 + its weekday's effect, without noise."""
    t = (day.date() - TODAY.date()).days + 28
    return Decimal(2) + Decimal("0.05") * t + PATTERN[day.weekday()]


def noise(t: int) -> Decimal:
    """Deterministic noise of day `t`: -0.05 to 0.05."""
    return Decimal((t * 7919) % 11 - 5) / 100


class TestWeeklySeason:
    async def test_three_weeks_of_history_give_each_weekday_its_effect(self, harness: Harness) -> None:
        """28 days of trend + weekly pattern + noise: method weekly_season, every weekday's true effect inside
        its interval, and the next 7 days' true cost inside the 7-day window's interval."""
        harness.clock.at = TODAY
        days = [TODAY - timedelta(days=28 - t) for t in range(28)]
        await harness.record(*(on_day(28 - t, seasonal(day) + noise(t)) for t, day in enumerate(days)))
        data = await harness.data("forecast")
        assert (data["method"], data["history_days"]) == ("weekly_season", 28)
        effects = data["weekly_effect"]
        assert [e["weekday"] for e in effects][:2] == ["monday", "tuesday"]
        for effect, true in zip(effects, PATTERN, strict=True):
            assert Decimal(effect["lower"]) <= true <= Decimal(effect["upper"]), effect
            assert abs(Decimal(effect["effect"]) - true) < Decimal("0.1"), effect
        week = sum(seasonal(TODAY + timedelta(days=i)) for i in range(7))
        window = data["next_7_days"]
        assert Decimal(window["lower"]) <= week <= Decimal(window["upper"])
        assert abs(Decimal(window["total"]) - week) < Decimal("0.2")

    def test_on_seasonal_data_it_errs_less_than_the_linear_trend(self) -> None:
        """The same history, each of the next 14 days forecast: the weekly fit's mean absolute error is under
        a fifth of the linear trend's (which smears the weekend over the week)."""
        days = [TODAY - timedelta(days=28 - t) for t in range(28)]
        series = [seasonal(day) + noise(t) for t, day in enumerate(days)]
        weekly, linear = fc.fit(series, days[0].date()), fc.fit(series)
        assert (weekly.method, linear.method) == ("weekly_season", "linear_trend")
        future = [(28 + i, seasonal(TODAY + timedelta(days=i))) for i in range(14)]
        weekly_error = sum(abs(weekly.predict(t) - truth) for t, truth in future) / 14
        linear_error = sum(abs(linear.predict(t) - truth) for t, truth in future) / 14
        assert weekly_error * 5 < linear_error, (weekly_error, linear_error)

    async def test_fewer_than_three_weeks_keep_the_trend_line(self, harness: Harness) -> None:
        """20 days of history: linear_trend, no weekday effects (one odd day would be its weekday's effect)."""
        harness.clock.at = TODAY
        await harness.record(*(on_day(20 - t, seasonal(TODAY - timedelta(days=20 - t))) for t in range(20)))
        data = await harness.data("forecast")
        assert (data["method"], data["weekly_effect"]) == ("linear_trend", None)


class TestOptimization:
    async def test_moving_a_type_to_the_cheaper_provider_is_priced_from_history(self, harness: Harness) -> None:
        """content_planning on azure (gpt-4, $0.01/1K) re-priced at openai's most used model (gpt-4o-mini,
        $0.002/1K): the saving is exactly the difference; openai work is never advised to move to azure."""
        harness.clock.at = TODAY
        await harness.record(
            usage(prompt=60_000, completion=40_000, at=TODAY - timedelta(days=3)),
            usage(prompt=10_000, completion=0, at=TODAY - timedelta(days=2)),
            usage(
                provider=Provider.OPENAI,
                model="gpt-4o-mini",
                prompt=5_000,
                completion=5_000,
                workflow_type=IntentType.MESSAGE_GENERATION,
                at=TODAY - timedelta(days=1),
            ),
        )
        data = await harness.data("optimization")
        [move] = [r for r in data["recommendations"] if r["kind"] == "switch_provider"]
        assert (move["workflow_type"], move["from_provider"], move["to_provider"], move["model"]) == (
            "content_planning",
            "azure",
            "openai",
            "gpt-4o-mini",
        )
        assert (Decimal(move["current_cost"]), Decimal(move["projected_cost"])) == (Decimal("1.1"), Decimal("0.22"))
        assert (Decimal(move["estimated_saving"]), Decimal(move["saving_percent"])) == (Decimal("0.88"), Decimal(80))
        assert move["requests"] == 2
        assert (Decimal(data["potential_saving"]), Decimal(data["total_cost"])) == (Decimal("0.88"), Decimal("1.12"))

    async def test_models_without_a_price_are_pointed_out(self, harness: Harness) -> None:
        """Calls priced at a provider's rate get a price_missing recommendation naming the model."""
        harness.clock.at = TODAY
        await harness.record(
            usage(provider=Provider.OPENAI, model="o9-preview", prompt=1000, completion=0, at=TODAY - timedelta(days=1))
        )
        data = await harness.data("optimization")
        [missing] = [r for r in data["recommendations"] if r["kind"] == "price_missing"]
        assert (missing["model"], missing["from_provider"], missing["requests"]) == ("o9-preview", "openai", 1)
        assert Decimal(missing["current_cost"]) == Decimal("0.002")
