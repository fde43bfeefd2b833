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
"""

from __future__ import annotations

from pydantic import Field, field_validator

from contracts.enums import Provider
from libs.config import CommonSettings
from services.router.constants import MAX_DEADLINE_S
from services.router.fallback import RuleOverride, check_scenarios


class RouterSettings(CommonSettings):
    router_workflow_deadline_s: float = Field(default=120.0, gt=0, le=MAX_DEADLINE_S)
    router_max_attempts: int = Field(default=4, ge=1, description="generation requests per workflow")
    router_fallback_matrix: dict[str, RuleOverride] = Field(
        default_factory=dict, description="JSON: {scenario: {fallback?, max_retries?, delay_s?}}"
    )
    azure_timeout_s: float = Field(default=45.0, gt=0)
    openai_timeout_s: float = Field(default=30.0, gt=0)
    router_breaker_failure_threshold: int = Field(default=5, ge=1, description="consecutive failures")
    router_breaker_open_s: float = Field(default=30.0, gt=0, description="open before a probe is let through")
    # A probe whose result never comes (a lost message) must not keep the circuit half-open forever; past
    # the workflow deadline its result no longer matters anyway.
    router_breaker_probe_timeout_s: float = Field(default=120.0, gt=0)
    router_budget_refresh_s: float = Field(default=5.0, ge=0)
    router_processed_retention_h: float = Field(default=72.0, gt=0)
    router_delivery_grace_s: float = Field(default=300.0, gt=0, description="after a delivery's slot, s")
    router_deadline_sweep_s: float = Field(default=1.0, gt=0, le=60, description="overdue workflows scan, s")

    @field_validator("router_fallback_matrix")
    @classmethod
    def _known_scenarios(cls, value: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
        check_scenarios(value)  # a typo in a scenario name must stop the start, not be ignored
        return value

    def timeout_for(self, provider: Provider) -> float:
        """The per-call timeout the worker of `provider` gets."""
        return self.azure_timeout_s if provider is Provider.AZURE else self.openai_timeout_s
