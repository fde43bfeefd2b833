"""of-sender settings: the platform API (docs/architecture.md#delivery-safety), retries, and the shared delivery limits.

ONLYFANS_API_URL=https://…            unset: the platform simulator the runner passed (embedded mode)
ONLYFANS_API_TOKEN=…                  Authorization: Bearer …
ONLYFANS_TIMEOUT_S=10                 one HTTP call
OF_MAX_RETRIES=3                      5xx / timeouts / connection failures: retries after the first attempt,
                                      with backoff OF_RETRY_BASE_S · 2^(n-1) (full jitter on the upper half,
                                      at most OF_RETRY_CAP_S, at least the platform's Retry-After); then the
                                      delivery fails and its approval is dead-lettered with the reason
                                      (a timeout or a dropped connection is looked up first: see below)
OF_RATE_LIMITED_MAX_RETRIES=0         the fallback matrix's onlyfans_rate_limited row (queue, 0, 45 s): the
OF_RATE_LIMITED_DELAY_S=45            first platform 429 always re-queues the send, OF_RATE_LIMITED_MAX_RETRIES
                                      more may, the next fails it; the delay is at least the Retry-After
OF_LOOKUP_DELAY_S=5                   a send whose outcome is unknown (timeout, connection dropped, the sender
                                      died mid-request) is looked up on the platform no sooner than this after
                                      it went out — the platform must not take a request later than that
OF_LOOKUP_MAX_S=600                   a look-up failing for this long after the send: the delivery fails (its
                                      approval dead-lettered) instead of being sent blindly
OF_SENDER_KEY_PREFIX=ho:of:           Redis keys of the send log
plus OF_ACCOUNT_LIMIT, OF_ACCOUNT_WINDOW_S, OF_RECIPIENT_MIN_INTERVAL_S, OF_SAFETY_MARGIN_S and the
RATE_LIMITER_DOWN_* policy (libs.ratelimit.settings), shared with the rate-limiter, and the feature flags'
HYBRID_ORCHESTRATOR_ENABLED and FLAGS_* (libs.flags.settings): the kill switch and the paused accounts hold
sends (sender.py).
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.config import ConfigError
from libs.flags import FlagSettings
from libs.ratelimit import DeliveryLimitSettings
from libs.ratelimit.constants import SEND_LOG_PREFIX
from services.of_sender.constants import DB_SCHEMA


class OfSenderSettings(DeliveryLimitSettings, FlagSettings):
    onlyfans_api_url: str | None = Field(default=None, description="unset: the runner's platform simulator")
    onlyfans_api_token: SecretStr | None = Field(default=None)
    onlyfans_timeout_s: float = Field(default=10.0, gt=0)
    of_max_retries: int = Field(default=3, ge=0, description="5xx/timeouts: retries after the first attempt")
    of_retry_base_s: float = Field(default=1.0, gt=0)
    of_retry_cap_s: float = Field(default=30.0, gt=0)
    of_rate_limited_max_retries: int = Field(default=0, ge=0)
    of_rate_limited_delay_s: float = Field(default=45.0, ge=0)
    of_lookup_delay_s: float = Field(default=5.0, ge=0, description="unknown outcome: look up no sooner than this")
    of_lookup_max_s: float = Field(default=600.0, gt=0, description="look-ups failing this long: fail the delivery")
    of_sender_key_prefix: str = Field(default=SEND_LOG_PREFIX, min_length=1)
    of_sender_db_schema: str = Field(default=DB_SCHEMA, min_length=1)


class PlatformConfigError(ConfigError):
    """The platform API is not configured (no ONLYFANS_API_URL and no simulator), or only half of it: one
    line naming the variable, exit 2."""
