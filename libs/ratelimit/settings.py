"""The platform's limits and the policy when Redis is down, from the environment (both delivery services).

OF_ACCOUNT_LIMIT=10                  sends per creator account in any rolling window
OF_ACCOUNT_WINDOW_S=60               that window
OF_RECIPIENT_MIN_INTERVAL_S=45       spacing between two sends to the same fan (the seed's value)
OF_SAFETY_MARGIN_S=1                 added to the window and the spacing: absorbs clock skew between our
                                     Redis and the platform, and the jitter between the last check and the
                                     request's arrival, so a tight plan never lands over the platform's limit
RATE_LIMITER_DOWN_POLICY=hold        Redis unreachable: hold deliveries (retry every RATE_LIMITER_DOWN_RETRY_S,
                                     fail them after RATE_LIMITER_DOWN_MAX_HOLD_S), or bypass_with_warning:
                                     go on with an in-process limit of RATE_LIMITER_BYPASS_ACCOUNT_LIMIT sends
                                     per account and window per replica
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field

from libs.config import CommonSettings

MS = 1000


class DownPolicy(StrEnum):
    HOLD = "hold"
    BYPASS_WITH_WARNING = "bypass_with_warning"


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits in integer milliseconds, margins included: what the planner and the last check enforce."""

    account_limit: int
    window_ms: int
    recipient_gap_ms: int

    @classmethod
    def of(cls, limit: int, window_s: float, gap_s: float, margin_s: float = 0.0) -> Limits:
        return cls(limit, round((window_s + margin_s) * MS), round((gap_s + margin_s) * MS))

    @property
    def horizon_ms(self) -> int:
        """How far back a send still matters to any limit."""
        return max(self.window_ms, self.recipient_gap_ms)


class DeliveryLimitSettings(CommonSettings):
    of_account_limit: int = Field(default=10, ge=1, description="sends per account in any rolling window")
    of_account_window_s: float = Field(default=60.0, gt=0, description="the rolling window, s")
    of_recipient_min_interval_s: float = Field(default=45.0, ge=0, description="spacing per fan, s")
    of_safety_margin_s: float = Field(default=1.0, ge=0, description="added to the window and the spacing, s")
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
            self.of_account_limit, self.of_account_window_s, self.of_recipient_min_interval_s, self.of_safety_margin_s
        )

    def bypass_limits(self) -> Limits:
        """The conservative in-process limits of bypass_with_warning (each replica applies its own)."""
        return Limits.of(
            min(self.rate_limiter_bypass_account_limit, self.of_account_limit),
            self.of_account_window_s,
            self.of_recipient_min_interval_s,
            self.of_safety_margin_s,
        )
