"""Delivery rate limits shared by the rate-limiter (planning slots) and of-sender (the last check).

    limits = settings.limits()                       # from OF_ACCOUNT_LIMIT, OF_ACCOUNT_WINDOW_S, ...
    planner = open_planner(redis_url, limits, prefix="ho:rl:")
    reservation = await planner.reserve(account, recipient, delivery_id)   # the earliest compliant slot
    window = await planner.window(account)                                  # read only: counts, next free
    log = open_send_log(redis_url, limits, prefix="ho:of:")
    check = await log.check(account, recipient, token)                    # allowed now, or when

Both keep their state in Redis (one Lua script per operation, Redis server time, safe with any number of
replicas) or, without REDIS_URL, in this process. window.py holds the arithmetic both implement.

down.py decides what a delivery does while Redis is down (RATE_LIMITER_DOWN_POLICY), for both services.

bucket.py is a per-key token bucket of the same make (the gateway's per-user request limit).
"""

from libs.ratelimit.bucket import (
    MemoryTokenBucket,
    Rate,
    RedisTokenBucket,
    Taken,
    TokenBucket,
    open_token_bucket,
)
from libs.ratelimit.down import DownAction, DownDecision, when_down
from libs.ratelimit.errors import LimiterUnavailable, RateLimitError
from libs.ratelimit.planner import (
    AccountWindow,
    MemoryPlanner,
    RedisPlanner,
    Replanned,
    Reservation,
    SlotPlanner,
    open_planner,
)
from libs.ratelimit.sendlog import Check, MemorySendLog, RedisSendLog, SendLog, SentRecord, open_send_log
from libs.ratelimit.settings import DeliveryLimitSettings, DownPolicy, Limits
from libs.ratelimit.window import earliest_slot, earliest_slot_within, fits

__all__ = [
    "AccountWindow",
    "Check",
    "DeliveryLimitSettings",
    "DownAction",
    "DownDecision",
    "DownPolicy",
    "LimiterUnavailable",
    "Limits",
    "MemoryPlanner",
    "MemorySendLog",
    "MemoryTokenBucket",
    "Rate",
    "RateLimitError",
    "RedisPlanner",
    "RedisSendLog",
    "RedisTokenBucket",
    "Replanned",
    "Reservation",
    "SendLog",
    "SentRecord",
    "SlotPlanner",
    "Taken",
    "TokenBucket",
    "earliest_slot",
    "earliest_slot_within",
    "fits",
    "open_planner",
    "open_send_log",
    "open_token_bucket",
    "when_down",
]
