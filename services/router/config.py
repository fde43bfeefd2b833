"""The router's settings, from environment variables (names are the upper-cased field names).

ROUTER_WORKFLOW_DEADLINE_S=120        a workflow not finished by then fails (a request may ask for less)
ROUTER_MAX_ATTEMPTS=4                 generation requests per workflow, all providers together
ROUTER_FALLBACK_MATRIX='{"azure_timeout": {"delay_s": 2}}'   rows or fields over the defaults
AZURE_TIMEOUT_S=45  OPENAI_TIMEOUT_S=30                      per call, sent to the workers
ROUTER_BREAKER_FAILURE_THRESHOLD=5  ROUTER_BREAKER_OPEN_S=30  ROUTER_BREAKER_PROBE_TIMEOUT_S=120
ROUTER_BUDGET_REFRESH_S=5             how stale another replica's budget decisions may be seen here
ROUTER_PROCESSED_RETENTION_H=72       how long handled message ids are kept for de-duplication
ROUTER_DELIVERY_GRACE_S=300           a delivering workflow fails when a delivery is not finished this long
                                      after its scheduled slot (retries and a 429's re-queue fit inside)
ROUTER_DEADLINE_SWEEP_S=1             how often each replica looks for running workflows past their deadline
                                      (a workflow fails at most this long after its deadline)
CAMPAIGN_GENERATION_CONCURRENCY=8     a personalized campaign's texts being generated at once

The feature flags (libs.flags, FLAGS_* and HYBRID_ORCHESTRATOR_ENABLED): while the kill switch is off, or a
delivering workflow's account is paused, its deadline does not fail it (engine.on_deadline holds it).

Completion webhooks (services/router/webhooks.py):
WEBHOOK_SECRET=<at least 32 bytes>    HMAC-SHA256 key of X-Signature. Unset: no webhook is sent (an unsigned
                                      one is unverifiable); each is dead-lettered with the reason instead, to
                                      be replayed once a secret is configured
WEBHOOK_TIMEOUT_S=10                  one POST, connection to last byte of the answer
WEBHOOK_MAX_ATTEMPTS=12               POSTs per webhook before it is dead-lettered (~1 h with the defaults)
WEBHOOK_RETRY_BASE_S=5                delay before the 2nd POST, doubling per attempt (jittered, capped)
WEBHOOK_ALLOW_LOCAL_HTTP=false        accept http:// callback URLs to localhost/127.0.0.1/::1 (the embedded
                                      mode turns it on); otherwise https only
"""

from __future__ import annotations

from pydantic import Field, field_validator

from contracts.enums import Provider
from libs.callbacks import WebhookSecret
from libs.flags import FlagSettings
from libs.llm.constants import DEFAULT_AZURE_TIMEOUT_S, DEFAULT_OPENAI_TIMEOUT_S
from services.router.constants import MAX_DEADLINE_S
from services.router.fallback import RuleOverride, check_scenarios


class RouterSettings(FlagSettings):
    router_workflow_deadline_s: float = Field(default=120.0, gt=0, le=MAX_DEADLINE_S)
    router_max_attempts: int = Field(default=4, ge=1, description="generation requests per workflow")
    router_fallback_matrix: dict[str, RuleOverride] = Field(
        default_factory=dict, description="JSON: {scenario: {fallback?, max_retries?, delay_s?}}"
    )
    azure_timeout_s: float = Field(default=DEFAULT_AZURE_TIMEOUT_S, gt=0)
    openai_timeout_s: float = Field(default=DEFAULT_OPENAI_TIMEOUT_S, gt=0)
    router_breaker_failure_threshold: int = Field(default=5, ge=1, description="consecutive failures")
    router_breaker_open_s: float = Field(default=30.0, gt=0, description="open before a probe is let through")
    # A probe whose result never comes (a lost message) must not keep the circuit half-open forever; past
    # the workflow deadline its result no longer matters anyway.
    router_breaker_probe_timeout_s: float = Field(default=120.0, gt=0)
    router_budget_refresh_s: float = Field(default=5.0, ge=0)
    router_processed_retention_h: float = Field(default=72.0, gt=0)
    router_delivery_grace_s: float = Field(default=300.0, gt=0, description="after a delivery's slot, s")
    router_deadline_sweep_s: float = Field(default=1.0, gt=0, le=60, description="overdue workflows scan, s")
    campaign_generation_concurrency: int = Field(default=8, ge=1, le=1000, description="texts in flight")

    @field_validator("router_fallback_matrix")
    @classmethod
    def _known_scenarios(cls, value: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
        check_scenarios(value)  # a typo in a scenario name must stop the start, not be ignored
        return value

    def timeout_for(self, provider: Provider) -> float:
        """The per-call timeout the worker of `provider` gets."""
        return self.azure_timeout_s if provider is Provider.AZURE else self.openai_timeout_s

    # --- completion webhooks (services/router/webhooks.py) ---------------------------------------------------
    webhook_secret: WebhookSecret = Field(
        default=None, description="HMAC-SHA256 key of X-Signature (at least 32 bytes); unset: webhooks not sent"
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60, description="one POST, s")
    webhook_max_attempts: int = Field(default=12, ge=1, le=50, description="POSTs before the dead-letter queue")
    webhook_retry_base_s: float = Field(default=5.0, gt=0, description="delay before the 2nd POST, doubling, s")
    webhook_allow_local_http: bool = Field(default=False, description="http:// to localhost only (embedded mode)")
