"""rate-limiter settings: the shared delivery limits and down policy (libs.ratelimit.settings:
OF_ACCOUNT_LIMIT, OF_ACCOUNT_WINDOW_S, OF_ACCOUNT_HOURLY_LIMIT, OF_RECIPIENT_MIN_INTERVAL_S, OF_SAFETY_MARGIN_S,
RATE_LIMITER_DOWN_POLICY, RATE_LIMITER_DOWN_RETRY_S, RATE_LIMITER_DOWN_MAX_HOLD_S,
RATE_LIMITER_BYPASS_ACCOUNT_LIMIT), plus

RATE_LIMITER_KEY_PREFIX=ho:rl:        Redis keys of the slot plan
"""

from __future__ import annotations

from pydantic import Field

from libs.ratelimit import DeliveryLimitSettings
from libs.ratelimit.constants import PLANNER_PREFIX


class RateLimiterSettings(DeliveryLimitSettings):
    rate_limiter_key_prefix: str = Field(default=PLANNER_PREFIX, min_length=1)
