"""Cost forecast for the next 7 and 30 days from the daily history, in Decimal arithmetic.

Method (named in the answer):
- `linear_trend` (at least FORECAST_MIN_TREND_DAYS days of history): ordinary least squares of the daily
  cost on the day number; the forecast of a window is the sum of the line's values over its days (a day
  below zero counts as zero). The interval is the OLS prediction interval of that sum (normal
  approximation, z = 1.96): Var = s2 * (h + h^2/n + (sum(t - tm))^2 / Sxx), s2 the residual variance.
- `daily_mean` (fewer days): h * the mean daily cost, Var = s2 * (h + h^2/n).
- `weekly_season` (at least FORECAST_MIN_SEASON_DAYS days: three of each weekday): least squares of the
  daily cost on the day number and the weekday (x = [1, t, tuesday?, ..., sunday?], Monday the base), so a
  campaign-heavy weekend is forecast on weekends instead of smeared over the week. Var of a window's sum =
  s2 * (h + g' (X'X)^-1 g), g the sum of the window's x; each weekday's effect is its distance from the
  week's average day, w'b, with Var = s2 * w' (X'X)^-1 w.
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

from contracts.costs import ForecastWindow, WeekdayEffect
from services.cost_tracker.constants import (
    FORECAST_MIN_SEASON_DAYS,
    FORECAST_MIN_TREND_DAYS,
    FORECAST_QUANTUM,
    FORECAST_Z,
)

ZERO = Decimal(0)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Matrix = tuple[tuple[Decimal, ...], ...]


@dataclass(frozen=True, slots=True)
class Fit:
    method: Literal["linear_trend", "daily_mean", "no_history", "weekly_season"]
    days: int  # history days the fit used
    intercept: Decimal  # the line's value on the first history day (weekly_season: a Monday's level)
    slope: Decimal  # per day
    variance: Decimal  # of one day's cost around the fit
    mean: Decimal
    # weekly_season: the weekday of day 0, each weekday's offset from Monday, and (X'X)^-1.
    first_weekday: int = 0
    season: tuple[Decimal, ...] = (ZERO,) * 7
    inverse: Matrix = ()

    def predict(self, t: int) -> Decimal:
        """The fitted cost of day number `t` (0: the first history day; `days`: today), never below zero."""
        level = self.intercept + self.slope * t + self.season[(self.first_weekday + t) % 7]
        return max(ZERO, level)

    def window(self, horizon: int) -> ForecastWindow:
        """The next `horizon` days, starting today (day number `days`)."""
        if self.days == 0:
            return ForecastWindow(days=horizon, total=ZERO, lower=ZERO, upper=ZERO)
        if self.method == "weekly_season":
            g = [sum(column) for column in zip(*(self._x(self.days + i) for i in range(horizon)), strict=True)]
            total = sum((self.predict(self.days + i) for i in range(horizon)), ZERO)
            return _window(horizon, total, self.variance * (Decimal(horizon) + _quadratic(self.inverse, g)))
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
        return _window(horizon, total, self.variance * spread)

    def weekday_effects(self) -> list[WeekdayEffect] | None:
        """weekly_season: each weekday's distance from the week's average day, with its 95% interval."""
        if self.method != "weekly_season":
            return None
        effects = []
        for day, name in enumerate(WEEKDAYS):
            # w selects season[day] - mean(season); season[0] (Monday) is the base, 0 by construction.
            w = [ZERO, ZERO, *((Decimal(k == day) - Decimal(1) / 7) for k in range(1, 7))]
            effect = self.season[day] - sum(self.season, ZERO) / 7
            margin = FORECAST_Z * (self.variance * _quadratic(self.inverse, w)).sqrt()
            lower, upper = quantized(effect - margin), quantized(effect + margin)
            effects.append(WeekdayEffect(weekday=name, effect=quantized(effect), lower=lower, upper=upper))
        return effects

    def _x(self, t: int) -> list[Decimal]:
        return _features(t, (self.first_weekday + t) % 7)


def _window(horizon: int, total: Decimal, variance: Decimal) -> ForecastWindow:
    margin = FORECAST_Z * max(ZERO, variance).sqrt()
    return ForecastWindow(
        days=horizon,
        total=quantized(total),
        lower=quantized(max(ZERO, total - margin)),
        upper=quantized(total + margin),
    )


def daily_series(costs: dict[date, Decimal], start: date, end: date) -> list[tuple[date, Decimal]]:
    """Every day from `start` to `end` (exclusive) with its cost (zero when none)."""
    return [(start + timedelta(days=i), costs.get(start + timedelta(days=i), ZERO)) for i in range((end - start).days)]


def fit(series: Sequence[Decimal], first_day: date | None = None) -> Fit:
    """The fit of a daily series (leading days without costs already trimmed by the caller) whose first day
    is `first_day` (None: no weekly season)."""
    n = len(series)
    if n == 0:
        return Fit("no_history", 0, ZERO, ZERO, ZERO, ZERO)
    if first_day is not None and n >= FORECAST_MIN_SEASON_DAYS:
        return fit_weekly(series, first_day.weekday())
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


def fit_weekly(series: Sequence[Decimal], first_weekday: int) -> Fit:
    """Least squares of the series on [1, t, tuesday?, ..., sunday?] (day 0 falls on `first_weekday`)."""
    n = len(series)
    rows = [_features(t, (first_weekday + t) % 7) for t in range(n)]
    k = len(rows[0])
    xtx = [[sum((row[i] * row[j] for row in rows), ZERO) for j in range(k)] for i in range(k)]
    xty = [sum((row[i] * y for row, y in zip(rows, series, strict=True)), ZERO) for i in range(k)]
    inverse = _inverse(xtx)
    beta = [sum((inverse[i][j] * xty[j] for j in range(k)), ZERO) for i in range(k)]
    residuals = sum(
        (
            (y - sum((b * x for b, x in zip(beta, row, strict=True)), ZERO)) ** 2
            for row, y in zip(rows, series, strict=True)
        ),
        ZERO,
    )
    return Fit(
        "weekly_season", n, beta[0], beta[1], residuals / (n - k), sum(series, ZERO) / n,
        first_weekday=first_weekday, season=(ZERO, *beta[2:]), inverse=inverse,
    )  # fmt: skip


def _features(t: int, weekday: int) -> list[Decimal]:
    """[1, t, then one indicator per weekday but Monday]."""
    return [Decimal(1), Decimal(t), *(Decimal(weekday == day) for day in range(1, 7))]


def _inverse(matrix: list[list[Decimal]]) -> Matrix:
    """The inverse of a square, invertible matrix (Gauss-Jordan with partial pivoting)."""
    k = len(matrix)
    rows = [[*row, *(Decimal(i == j) for j in range(k))] for i, row in enumerate(matrix)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        head = rows[col][col]
        rows[col] = [v / head for v in rows[col]]
        for r in range(k):
            if r != col and rows[r][col]:
                factor = rows[r][col]
                rows[r] = [v - factor * p for v, p in zip(rows[r], rows[col], strict=True)]
    return tuple(tuple(row[k:]) for row in rows)


def _quadratic(matrix: Matrix, v: Sequence[Decimal]) -> Decimal:
    """v' M v."""
    return sum((v[i] * matrix[i][j] * v[j] for i in range(len(v)) for j in range(len(v))), ZERO)


def trimmed(series: list[tuple[date, Decimal]]) -> list[tuple[date, Decimal]]:
    """`series` from its first day with a cost (days before a user's first workflow say nothing)."""
    for i, (_, cost) in enumerate(series):
        if cost > 0:
            return series[i:]
    return []


def quantized(value: Decimal) -> Decimal:
    """A forecast figure, rounded to FORECAST_QUANTUM."""
    return value.quantize(FORECAST_QUANTUM)
