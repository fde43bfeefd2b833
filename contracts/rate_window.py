"""One creator account's sending window, read from the rate-limiter's slot plan (it reserves nothing):

    gateway ── rate.window.query ──▶ rate-limiter (its query lane) ── rate.window.reply ──▶ gateway

The reply counts the account's planned slots as the reservations left them (libs.ratelimit): those in the
rolling window ending now (and in the rolling hour, when the hourly cap is set), and those planned later,
and says when one more send would fit every limit of the account. The gateway's camelCase answer is derived
from these classes (services/gateway/window_schemas.py), so each field is declared once, here.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from contracts.envelope import Message, register
from contracts.ids import USER_ID_MAX_LENGTH
from contracts.messages import Part


class AccountLimits(Part):
    """The limits an account's sends are planned within, safety margin included."""

    account_limit: int = Field(ge=1, description="sends per account in any rolling window")
    window_s: float = Field(gt=0, description="that rolling window, s")
    hourly_limit: int | None = Field(default=None, ge=1, description="sends in any rolling hour; null: no cap")
    hour_s: float | None = Field(default=None, gt=0, description="that rolling hour, s; null: no cap")


@register
class RateWindowQuery(Message):
    TYPE = "rate.window.query"
    account_id: str = Field(min_length=1, max_length=USER_ID_MAX_LENGTH)


@register
class RateWindow(Message):
    """The account's window now, or `error` when the slot plan could not be read."""

    TYPE = "rate.window.reply"
    account_id: str
    at: AwareDatetime = Field(description="when the plan was read (the limiter's clock)")
    limits: AccountLimits
    in_window: int = Field(default=0, ge=0, description="slots planned in the rolling window ending now")
    in_hour: int | None = Field(
        default=None, ge=0, description="slots planned in the rolling hour ending now; null: no hourly cap"
    )
    planned_ahead: int = Field(default=0, ge=0, description="slots planned later than now: not sent yet")
    next_free_at: AwareDatetime | None = Field(
        default=None, description="the earliest time one more send fits (`at`: free now); null with `error`"
    )
    error: str | None = None  # why the plan could not be read (the limiter's Redis is down): no counts then
