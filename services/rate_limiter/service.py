"""The rate-limiter as a service: the slot planner (Redis when REDIS_URL is set, else in this process) and
its handler, declared for libs.runtime (own process or embedded)."""

from __future__ import annotations

from contracts.routing import RATE_LIMITER
from libs.ratelimit import MemoryPlanner, open_planner
from libs.runtime import Runtime, Service
from libs.telemetry import get_logger
from services.rate_limiter.config import RateLimiterSettings
from services.rate_limiter.limiter import Limiter

log = get_logger(__name__)


async def create(runtime: Runtime) -> Service:
    settings = runtime.settings_as(RateLimiterSettings)
    limits = settings.limits()
    planner = open_planner(settings.redis_url, limits, prefix=settings.rate_limiter_key_prefix)
    limiter = Limiter(runtime.bus, planner, settings, bypass_planner=MemoryPlanner(settings.bypass_limits()))
    log.info(
        "rate_limiter.configured",
        account_limit=limits.account_limit,
        window_ms=limits.window_ms,
        hourly_limit=limits.hourly_limit,
        recipient_gap_ms=limits.recipient_gap_ms,
        planner="redis" if settings.redis_url else "memory",
        down_policy=settings.rate_limiter_down_policy.value,
    )
    return Service(
        name=RATE_LIMITER,
        handlers=limiter.handlers(),
        on_stop=[planner.close],
        checks={"planner": planner.ping},
    )
