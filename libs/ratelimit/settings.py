"""The platform's limits and the policy when Redis is down, from the environment (both delivery services).

OF_ACCOUNT_LIMIT=10                  sends per creator account in any rolling window
OF_ACCOUNT_WINDOW_S=60               that window
OF_ACCOUNT_HOURLY_LIMIT=0            sends per creator account in any rolling hour, on top of the window; 0: no
                                     hourly cap. The platform's gateway counts per hour too, but we know no
                                     figure for it, and a default below a deployment's real traffic would
                                     silently slow every account (and cap the bench's lifted limits): so the
                                     cap is off until set, and should be set to the platform's hourly figure
OF_RECIPIENT_MIN_INTERVAL_S=45       spacing between two sends to the same fan (the original plan's)
OF_SAFETY_MARGIN_S=1                 added to the window, the hour and the spacing: absorbs clock skew between our
                                     Redis and the platform, and the jitter between the last check and the
                                     request's arrival, so a tight plan never lands over the platform's limit
RATE_LIMITER_DOWN_POLICY=hold        Redis unreachable: hold deliveries (retry every RATE_LIMITER_DOWN_RETRY_S,
                                     fail them after RATE_LIMITER_DOWN_MAX_HOLD_S), or bypass_with_warning:
                                     go on with an in-process limit of RATE_LIMITER_BYPASS_ACCOUNT_LIMIT sends
                                     per account and window per replica (and the same share of the hourly cap)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field

from libs.config import CommonSettings

MS = 1000
HOUR_S = 3600.0  # the platform's second rolling window, whose limit is OF_ACCOUNT_HOURLY_LIMIT


class DownPolicy(StrEnum):
    HOLD = "hold"
    BYPASS_WITH_WARNING = "bypass_with_warning"


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits in integer milliseconds, margins included: what the planner and the last check enforce."""

    account_limit: int
    window_ms: int
    recipient_gap_ms: int
    hourly_limit: int = 0  # sends per account in any `hour_ms`; 0: no hourly cap
    hour_ms: int = round(HOUR_S * MS)

    @classmethod
    def of(cls, limit: int, window_s: float, gap_s: float, margin_s: float = 0.0, *, hourly_limit: int = 0) -> Limits:
        return cls(
            limit,
            round((window_s + margin_s) * MS),
            round((gap_s + margin_s) * MS),
            hourly_limit,
            round((HOUR_S + margin_s) * MS),
        )

    @property
    def account_windows(self) -> tuple[tuple[int, int], ...]:
        """Every (limit, window ms) an account's sends must respect: the window, then the hour if capped."""
        window = (self.account_limit, self.window_ms)
        return (window, (self.hourly_limit, self.hour_ms)) if self.hourly_limit else (window,)

    @property
    def account_span_ms(self) -> int:
        """How far back an account's sends still count (its widest window)."""
        return max(window for _, window in self.account_windows)

    @property
    def horizon_ms(self) -> int:
        """How far back a send still matters to any limit."""
        return max(self.account_span_ms, self.recipient_gap_ms)


class DeliveryLimitSettings(CommonSettings):
    of_account_limit: int = Field(default=10, ge=1, description="sends per account in any rolling window")
    of_account_window_s: float = Field(default=60.0, gt=0, description="the rolling window, s")
    of_account_hourly_limit: int = Field(
        default=0, ge=0, description="sends per account in any rolling hour; 0: no hourly cap"
    )
    of_recipient_min_interval_s: float = Field(default=45.0, ge=0, description="spacing per fan, s")
    of_safety_margin_s: float = Field(default=1.0, ge=0, description="added to the windows and the spacing, s")
    rate_limiter_down_policy: DownPolicy = Field(default=DownPolicy.HOLD)
    rate_limiter_down_retry_s: float = Field(default=2.0, gt=0, description="re-check delay while Redis is down")
    rate_limiter_down_max_hold_s: float = Field(
        default=600.0, gt=0, description="a delivery held this long while Redis is down fails, with the reason"
    )
    rate_limiter_bypass_account_limit: int = Field(
        default=1, ge=1, description="bypass_with_warning: sends per account and window, per replica"
    )

    def limits(self) -> Limits:
        return Limits.of(
            self.of_account_limit,
            self.of_account_window_s,
            self.of_recipient_min_interval_s,
            self.of_safety_margin_s,
            hourly_limit=self.of_account_hourly_limit,
        )

    def bypass_limits(self) -> Limits:
        """The conservative in-process limits of bypass_with_warning (each replica applies its own): the
        bypass limit per window, and of the hourly cap the same share as the bypass is of the window's limit
        (at least 1: 0 would mean no cap)."""
        account_limit = min(self.rate_limiter_bypass_account_limit, self.of_account_limit)
        hourly_limit = self.of_account_hourly_limit
        if hourly_limit:
            hourly_limit = max(1, hourly_limit * account_limit // self.of_account_limit)
        return Limits.of(
            account_limit,
            self.of_account_window_s,
            self.of_recipient_min_interval_s,
            self.of_safety_margin_s,
            hourly_limit=hourly_limit,
        )
