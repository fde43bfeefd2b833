"""The delivery limiters' instrument: deliveries pushed to a later slot, by what limited them (the
rate-limiter's plan: account, account_hour, recipient; the of-sender's last check: last_check)."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Meter

from libs.telemetry import constants as tc
from libs.telemetry.metrics import cached_instruments

THROTTLE_SCOPES = ("account", "account_hour", "recipient", "last_check")


@dataclass(frozen=True)
class RateLimitMetrics:
    throttles: Counter  # attrs: scope

    @classmethod
    def from_meter(cls, meter: Meter) -> RateLimitMetrics:
        instance = cls(
            throttles=meter.create_counter(
                tc.METRIC_RATE_LIMITER_THROTTLES,
                unit="{delivery}",
                description="Deliveries delayed to a later slot by a rate limit",
            )
        )
        # Every scope's series from the start, at 0: a dashboard or an increase() over a quiet limiter then
        # reads 0, not "no data" (the Prometheus practice of initialising known label sets).
        for scope in THROTTLE_SCOPES:
            instance.throttles.add(0, {tc.METRIC_ATTR_SCOPE: scope})
        return instance

    def record_throttle(self, *, scope: str) -> None:
        """A delivery pushed to a later slot because of `scope`."""
        self.throttles.add(1, {tc.METRIC_ATTR_SCOPE: scope})


get_ratelimit_metrics = cached_instruments(RateLimitMetrics.from_meter)
"""The process's rate-limit instruments, created on first use from the global meter."""
