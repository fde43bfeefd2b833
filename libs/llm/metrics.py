"""Provider-call instruments: calls and their duration by provider and outcome, tokens by provider and kind,
and the content gate's violations by provider, rule and what followed.

They sit beside the workflow instruments (libs.telemetry.metrics) under the same instrumentation scope and come
from the global meter, so they forward to the real provider once `setup_telemetry` installed it. Attribute
values stay low-cardinality: a provider name, "ok" or an ErrorType value, "prompt" or "completion", a rule
name of the content rules file and one of three actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter

from contracts.messages import Usage
from libs.llm import constants as c
from libs.telemetry import constants as tc
from libs.telemetry.metrics import cached_instruments

OUTCOME_OK = "ok"


@dataclass(frozen=True)
class LLMMetrics:
    calls: Counter  # attrs: provider, outcome
    call_duration: Histogram  # ms; attrs: provider, outcome
    tokens: Counter  # attrs: provider, kind
    content_violations: Counter  # attrs: provider, rule, action

    @classmethod
    def from_meter(cls, meter: Meter) -> LLMMetrics:
        return cls(
            calls=meter.create_counter(c.METRIC_LLM_CALLS, unit="{call}", description="LLM provider calls"),
            call_duration=meter.create_histogram(
                c.METRIC_LLM_CALL_DURATION,
                unit="ms",
                description="Duration of one LLM provider call",
                explicit_bucket_boundaries_advisory=tc.DURATION_BUCKETS_MS,
            ),
            tokens=meter.create_counter(c.METRIC_LLM_TOKENS, unit="{token}", description="Tokens billed"),
            content_violations=meter.create_counter(
                c.METRIC_CONTENT_VIOLATIONS, unit="{text}", description="Generated texts that broke a content rule"
            ),
        )

    def record_violation(self, *, provider: str, rule: str, action: str) -> None:
        """One text the content gate refused (`action`: constants.VIOLATION_*)."""
        attributes = {tc.METRIC_ATTR_PROVIDER: provider, c.METRIC_ATTR_RULE: rule, c.METRIC_ATTR_ACTION: action}
        self.content_violations.add(1, attributes)

    def record_call(self, *, provider: str, outcome: str, duration_ms: float, usage: Usage | None) -> None:
        """One provider call; `usage` when tokens were billed."""
        attributes = {tc.METRIC_ATTR_PROVIDER: provider, c.METRIC_ATTR_OUTCOME: outcome}
        self.calls.add(1, attributes)
        self.call_duration.record(duration_ms, attributes)
        if usage is not None:
            self.tokens.add(
                usage.prompt_tokens, {tc.METRIC_ATTR_PROVIDER: provider, c.METRIC_ATTR_TOKEN_KIND: "prompt"}
            )
            self.tokens.add(
                usage.completion_tokens, {tc.METRIC_ATTR_PROVIDER: provider, c.METRIC_ATTR_TOKEN_KIND: "completion"}
            )


get_llm_metrics = cached_instruments(LLMMetrics.from_meter)
"""The process's provider-call instruments, created on first use from the global meter."""
