"""The sampler every process's tracer provider uses: the configured one, minus root CLIENT spans.

The library instrumentations (asyncpg, redis, aiohttp client, aiobotocore) open a CLIENT span for every call,
inside a trace or not. Outside one, the call is housekeeping — the router's deadline sweep and purge, the
cost-tracker's threshold sweep, the feature flags' refresh, an SQS long poll, the dead-letter depth read —
and each would be a trace of one span, every second, in every service. Inside a trace (a handler, a request,
a sweep that found a workflow to fail: libs.telemetry.messaging.workflow_span) the span is recorded as the
configured sampler decides. Why: docs/decisions/0018-client-spans-only-inside-a-trace.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class ChildClientSpansOnly(Sampler):
    """`delegate`'s decision, except that a CLIENT span without a valid parent is dropped."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"ChildClientSpansOnly{{{self.delegate.get_description()}}}"
