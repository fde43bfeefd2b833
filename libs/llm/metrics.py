"""Provider-call instruments: calls and their duration by provider, model and outcome, tokens by provider, model
and kind, and the content gate's violations by provider, rule and what followed. Beside these (the original
plan's names), the same calls on the OpenTelemetry GenAI semantic conventions' client metrics,
gen_ai.client.operation.duration (s) and gen_ai.client.token.usage, with their attributes
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/), for the dashboards that speak them.

They sit beside the workflow instruments (libs.telemetry.metrics) under the same instrumentation scope and come
from the global meter, so they forward to the real provider once `setup_telemetry` installed it. Attribute
values stay low-cardinality: a provider name, "ok" or an ErrorType value, "prompt" or "completion", a rule
name of the content rules file and one of three actions, a model name of the deployment's few.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter
from opentelemetry.util.types import AttributeValue

from contracts.messages import Usage
from libs.llm import constants as c
from libs.telemetry import constants as tc
from libs.telemetry.metrics import cached_instruments

OUTCOME_OK = "ok"


@dataclass(frozen=True)
class LLMMetrics:
    calls: Counter  # attrs: provider, model, outcome
    call_duration: Histogram  # ms; attrs: provider, model, outcome
    tokens: Counter  # attrs: provider, model, kind
    content_violations: Counter  # attrs: provider, rule, action
    genai_duration: Histogram  # s; attrs: gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model, ...
    genai_tokens: Histogram  # tokens per call; attrs: the same and gen_ai.token.type

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
            genai_duration=meter.create_histogram(
                c.METRIC_GENAI_OPERATION_DURATION,
                unit="s",
                description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=c.GENAI_DURATION_BUCKETS_S,
            ),
            genai_tokens=meter.create_histogram(
                c.METRIC_GENAI_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used",
                explicit_bucket_boundaries_advisory=c.GENAI_TOKEN_BUCKETS,
            ),
        )

    def record_violation(self, *, provider: str, rule: str, action: str) -> None:
        """One text the content gate refused (`action`: constants.VIOLATION_*)."""
        attributes = {tc.METRIC_ATTR_PROVIDER: provider, c.METRIC_ATTR_RULE: rule, c.METRIC_ATTR_ACTION: action}
        self.content_violations.add(1, attributes)

    def record_call(
        self,
        *,
        provider: str,
        model: str,
        outcome: str,
        duration_ms: float,
        usage: Usage | None,
        response_model: str | None = None,
    ) -> None:
        """One provider call of `model` (the model asked for); `usage` when tokens were billed, `response_model`
        when the provider answered (the model version it names)."""
        attributes = {tc.METRIC_ATTR_PROVIDER: provider, c.METRIC_ATTR_MODEL: model, c.METRIC_ATTR_OUTCOME: outcome}
        self.calls.add(1, attributes)
        self.call_duration.record(duration_ms, attributes)
        genai: dict[str, AttributeValue] = {
            c.GENAI_OPERATION_NAME: c.GENAI_OPERATION_CHAT,
            c.GENAI_PROVIDER_NAME: c.GENAI_PROVIDERS.get(provider, provider),
            c.GENAI_REQUEST_MODEL: model,
        }
        if response_model:
            genai[c.GENAI_RESPONSE_MODEL] = response_model
        failed = {**genai, tc.ATTR_ERROR_TYPE: outcome} if outcome != OUTCOME_OK else genai
        self.genai_duration.record(duration_ms / 1000, failed)
        if usage is None:
            return
        for kind, genai_kind, count in (
            ("prompt", c.GENAI_TOKEN_INPUT, usage.prompt_tokens),
            ("completion", c.GENAI_TOKEN_OUTPUT, usage.completion_tokens),
        ):
            kind_attributes = {
                tc.METRIC_ATTR_PROVIDER: provider,
                c.METRIC_ATTR_MODEL: model,
                c.METRIC_ATTR_TOKEN_KIND: kind,
            }
            self.tokens.add(count, kind_attributes)
            self.genai_tokens.record(count, {**genai, c.GENAI_TOKEN_TYPE: genai_kind})


get_llm_metrics = cached_instruments(LLMMetrics.from_meter)
"""The process's provider-call instruments, created on first use from the global meter."""
