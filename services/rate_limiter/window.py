"""rate.window.query → rate.window.reply: an account's window as the slot plan holds it, read, never reserved
(what the gateway's GET /api/admin/accounts/{accountId}/window and the console's Delivery page show)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.rate_window import AccountLimits, RateWindow
from libs.ratelimit import LimiterUnavailable, Limits, SlotPlanner
from libs.ratelimit.settings import MS
from libs.telemetry import get_logger

log = get_logger(__name__)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / MS, UTC)


def account_limits(limits: Limits) -> AccountLimits:
    hourly = limits.hourly_limit or None
    return AccountLimits(
        account_limit=limits.account_limit,
        window_s=limits.window_ms / MS,
        hourly_limit=hourly,
        hour_s=limits.hour_ms / MS if hourly else None,
    )


async def read_window(planner: SlotPlanner, account: str, unavailable: str) -> RateWindow:
    """`account`'s window in `planner`'s plan; its `error` says `unavailable` is down when it cannot be read."""
    limits = planner.limits
    try:
        window = await planner.window(account)
    except LimiterUnavailable as exc:
        log.warning("rate_limiter.window_unread", reason=str(exc))
        return RateWindow(
            account_id=account,
            at=datetime.now(UTC),
            limits=account_limits(limits),
            error=f"{unavailable} is unavailable; try again",
        )
    return RateWindow(
        account_id=account,
        at=_at(window.now_ms),
        limits=account_limits(limits),
        in_window=window.in_last(limits.window_ms),
        in_hour=window.in_last(limits.hour_ms) if limits.hourly_limit else None,
        planned_ahead=window.planned_ahead,
        next_free_at=_at(window.next_free_ms(limits)),
    )
