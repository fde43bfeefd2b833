"""The router's instruments: finished workflows (count and duration, by provider and success) and the state
of each provider's circuit breaker.

    get_router_metrics().record_workflow(provider="azure", success=True, duration_ms=812.0)
    register_circuit_state(lambda: {"azure": CIRCUIT_OPEN, "openai": CIRCUIT_CLOSED})   # service.py does this
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.util.types import AttributeValue

from libs.telemetry import constants as tc
from libs.telemetry.metrics import cached_instruments

CircuitStateCallback = Callable[[], Mapping[str, int]]
"""Returns {provider: CIRCUIT_CLOSED | CIRCUIT_HALF_OPEN | CIRCUIT_OPEN}; called at each collection."""


@dataclass(frozen=True)
class RouterMetrics:
    workflow_executions: Counter  # attrs: provider, success
    workflow_duration: Histogram  # ms; attrs: provider, success
    _circuit_callbacks: list[CircuitStateCallback] = field(default_factory=list, repr=False)

    @classmethod
    def from_meter(cls, meter: Meter) -> RouterMetrics:
        """All instruments created on `meter` (tests pass a meter of a private MeterProvider)."""
        instance = cls(
            workflow_executions=meter.create_counter(
                tc.METRIC_WORKFLOW_EXECUTIONS, unit="{workflow}", description="Workflows finished"
            ),
            workflow_duration=meter.create_histogram(
                tc.METRIC_WORKFLOW_DURATION,
                unit="ms",
                description="Workflow duration from acceptance to completion or failure",
                explicit_bucket_boundaries_advisory=tc.DURATION_BUCKETS_MS,
            ),
        )
        # An observable gauge takes its callbacks at creation: this one fans out to the breakers' callbacks.
        meter.create_observable_gauge(
            tc.METRIC_CIRCUIT_BREAKER_STATE,
            callbacks=[instance._observe_circuits],
            unit="1",
            description="Circuit breaker state per provider: 0 closed, 1 half-open, 2 open",
        )
        return instance

    def record_workflow(self, *, provider: str, success: bool, duration_ms: float) -> None:
        """One finished workflow: its count and duration."""
        attributes: dict[str, AttributeValue] = {tc.METRIC_ATTR_PROVIDER: provider, tc.METRIC_ATTR_SUCCESS: success}
        self.workflow_executions.add(1, attributes)
        self.workflow_duration.record(duration_ms, attributes)

    def register_circuit_state(self, callback: CircuitStateCallback) -> None:
        """Report `callback()`'s {provider: state} on the circuit_breaker_state gauge from now on."""
        self._circuit_callbacks.append(callback)

    def _observe_circuits(self, _: CallbackOptions) -> Iterable[Observation]:
        # Runs on the metric reader's thread: iterate over a copy in case a breaker registers meanwhile.
        for callback in list(self._circuit_callbacks):
            for provider, state in callback().items():
                yield Observation(state, {tc.METRIC_ATTR_PROVIDER: provider})


get_router_metrics = cached_instruments(RouterMetrics.from_meter)
"""The process's router instruments, created on first use from the global meter."""


def register_circuit_state(callback: CircuitStateCallback) -> None:
    """Report `callback()`'s {provider: state} on the process's circuit_breaker_state gauge."""
    get_router_metrics().register_circuit_state(callback)
