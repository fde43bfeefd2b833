"""Cost forecast for the next 7 and 30 days from the daily history, in Decimal arithmetic.

Method (named in the answer):
- `linear_trend` (at least FORECAST_MIN_TREND_DAYS days of history): ordinary least squares of the daily
  cost on the day number; the forecast of a window is the sum of the line's values over its days (a day
  below zero counts as zero). The interval is the OLS prediction interval of that sum (normal
  approximation, z = 1.96): Var = s2 * (h + h^2/n + (sum(t - tm))^2 / Sxx), s2 the residual variance.
- `daily_mean` (fewer days): h * the mean daily cost, Var = s2 * (h + h^2/n).
- `no_history`: nothing was spent in the lookback; everything is zero.

The history runs from the first day with costs in the lookback to yesterday (today is not over), with
days without costs as zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from contracts.costs import ForecastWindow
from services.cost_tracker.constants import FORECAST_MIN_TREND_DAYS, FORECAST_QUANTUM, FORECAST_Z

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Fit:
    method: Literal["linear_trend", "daily_mean", "no_history"]
    days: int  # history days the fit used
    intercept: Decimal  # the line's value on the first history day
    slope: Decimal  # per day
    variance: Decimal  # of one day's cost around the fit
    mean: Decimal

    def window(self, horizon: int) -> ForecastWindow:
        """The next `horizon` days, starting today (day number `days`)."""
        if self.days == 0:
            return ForecastWindow(days=horizon, total=ZERO, lower=ZERO, upper=ZERO)
        n = Decimal(self.days)
        h = Decimal(horizon)
        future = [Decimal(self.days + i) for i in range(horizon)]
        total = sum((max(ZERO, self.intercept + self.slope * t) for t in future), ZERO)
        spread = h + h * h / n
        if self.method == "linear_trend":
            mean_t = (n - 1) / 2
            sxx = sum(((Decimal(t) - mean_t) ** 2 for t in range(self.days)), ZERO)
            offset = sum((t - mean_t for t in future), ZERO)
            spread += offset * offset / sxx
        margin = FORECAST_Z * (self.variance * spread).sqrt()
        return ForecastWindow(
            days=horizon,
            total=quantized(total),
            lower=quantized(max(ZERO, total - margin)),
            upper=quantized(total + margin),
        )


def daily_series(costs: dict[date, Decimal], start: date, end: date) -> list[tuple[date, Decimal]]:
    """Every day from `start` to `end` (exclusive) with its cost (zero when none)."""
    return [(start + timedelta(days=i), costs.get(start + timedelta(days=i), ZERO)) for i in range((end - start).days)]


def fit(series: Sequence[Decimal]) -> Fit:
    """The fit of a daily series (leading days without costs already trimmed by the caller)."""
    n = len(series)
    if n == 0:
        return Fit("no_history", 0, ZERO, ZERO, ZERO, ZERO)
    mean = sum(series, ZERO) / n
    if n < FORECAST_MIN_TREND_DAYS:
        variance = sum(((y - mean) ** 2 for y in series), ZERO) / (n - 1) if n > 1 else ZERO
        return Fit("daily_mean", n, mean, ZERO, variance, mean)
    mean_t = Decimal(n - 1) / 2
    sxx = sum(((Decimal(t) - mean_t) ** 2 for t in range(n)), ZERO)
    sxy = sum(((Decimal(t) - mean_t) * (y - mean) for t, y in enumerate(series)), ZERO)
    slope = sxy / sxx
    intercept = mean - slope * mean_t
    residuals = sum(((y - intercept - slope * t) ** 2 for t, y in enumerate(series)), ZERO)
    return Fit("linear_trend", n, intercept, slope, residuals / (n - 2), mean)


def trimmed(series: list[tuple[date, Decimal]]) -> list[tuple[date, Decimal]]:
    """`series` from its first day with a cost (days before a user's first workflow say nothing)."""
    for i, (_, cost) in enumerate(series):
        if cost > 0:
            return series[i:]
    return []


def quantized(value: Decimal) -> Decimal:
    """A forecast figure, rounded to FORECAST_QUANTUM."""
    return value.quantize(FORECAST_QUANTUM)
