"""The of-sender's instrument: platform sends per creator account and outcome.

    get_sender_metrics().record_send(account="creator-1", outcome=SEND_SENT)

Outcomes: sent (the platform accepted it), rate_limited (a 429), failed (any other failed request, an unknown
outcome included), held (a delivery the flags hold — kill switch off, account paused — counted once when the
hold begins, not at each recheck). `account` is the one id on a metric: creator accounts are few (the users
who run campaigns, not their fans), and "which account is being throttled" is the question the delivery
dashboard answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import Counter, Meter

from libs.telemetry.metrics import cached_instruments

METRIC_PLATFORM_SENDS: Final = "platform_sends"
ATTR_ACCOUNT: Final = "account"
ATTR_OUTCOME: Final = "outcome"
SEND_SENT: Final = "sent"
SEND_FAILED: Final = "failed"
SEND_RATE_LIMITED: Final = "rate_limited"
SEND_HELD: Final = "held"


@dataclass(frozen=True)
class SenderMetrics:
    sends: Counter  # attrs: account, outcome

    @classmethod
    def from_meter(cls, meter: Meter) -> SenderMetrics:
        return cls(
            sends=meter.create_counter(
                METRIC_PLATFORM_SENDS, unit="{send}", description="Platform send requests and holds, by account"
            )
        )

    def record_send(self, *, account: str, outcome: str) -> None:
        self.sends.add(1, {ATTR_ACCOUNT: account, ATTR_OUTCOME: outcome})


get_sender_metrics = cached_instruments(SenderMetrics.from_meter)
"""The process's of-sender instruments, created on first use from the global meter."""
