"""What a delivery does while a limiter's Redis is down (RATE_LIMITER_DOWN_POLICY), decided in one place for
the rate-limiter (planning a slot) and the of-sender (the last check).

The decision depends only on the policy and on how long the delivery has been held so far:

    bypass_with_warning ─────────────────────────────► BYPASS   this replica's conservative in-process limits
    hold, held < RATE_LIMITER_DOWN_MAX_HOLD_S ───────► HOLD     ask again RATE_LIMITER_DOWN_RETRY_S later
    hold, held ≥ RATE_LIMITER_DOWN_MAX_HOLD_S ───────► GIVE_UP  fail the delivery, with the reason

Each service keeps the time its hold began where its delivery lives (the rate-limiter in the re-published
request, the of-sender in its record) and reports a hold to the router once, when it begins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts.enums import ErrorType
from contracts.messages import ErrorInfo
from libs.ratelimit.settings import DeliveryLimitSettings, DownPolicy


class DownAction(StrEnum):
    BYPASS = "bypass"
    HOLD = "hold"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class DownDecision:
    action: DownAction
    held_s: float = 0.0  # how long the delivery has been held so far
    retry_s: float = 0.0  # HOLD: ask Redis again this much later
    begins: bool = False  # HOLD: the hold begins now (the router hears of it once, not at every re-check)

    def error(self, limiter: str, cause: Exception) -> ErrorInfo:
        """What the router is told of a HOLD (retryable, with its retry delay) or a GIVE_UP (final); marked
        `limiter_down`, which is what the router reads into the rate limiter's state.
        `limiter`: what was unreachable, in words ("the rate limiter's Redis")."""
        if self.action is DownAction.GIVE_UP:
            message = f"{limiter} was unreachable for {self.held_s:.0f}s, delivery given up: {cause}"
            return ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message=message, retryable=False, limiter_down=True)
        return ErrorInfo(
            type=ErrorType.PROVIDER_UNAVAILABLE,
            message=f"held: {limiter} is unreachable ({cause})",
            retryable=True,
            retry_after_s=self.retry_s,
            limiter_down=True,
        )


def when_down(settings: DeliveryLimitSettings, held_since: datetime | None, now: datetime) -> DownDecision:
    """What to do with a delivery whose limiter's Redis is unreachable; `held_since`: when its hold began
    (None: it was not held yet)."""
    if settings.rate_limiter_down_policy is DownPolicy.BYPASS_WITH_WARNING:
        return DownDecision(DownAction.BYPASS)
    held_s = max(0.0, (now - held_since).total_seconds()) if held_since is not None else 0.0
    if held_s >= settings.rate_limiter_down_max_hold_s:
        return DownDecision(DownAction.GIVE_UP, held_s)
    return DownDecision(DownAction.HOLD, held_s, settings.rate_limiter_down_retry_s, begins=held_since is None)
