"""The router's instruments: finished workflows (count and duration, by provider and success), failed ones by
error type and whether their deadline ended them, workflows refused (a budget's block), the deliveries the
of-sender reports (a campaign's progress) and the state of each provider's circuit breaker.

    get_router_metrics().record_workflow(provider="azure", success=True, duration_ms=812.0)
    get_router_metrics().record_failure(error_type="azure_timeout", deadline=True)
    get_router_metrics().record_refusal(reason="cost_limit_exceeded")
    get_router_metrics().record_delivery_report(state="completed")
    register_circuit_state(lambda: {"azure": CIRCUIT_OPEN, "openai": CIRCUIT_CLOSED})   # service.py does this
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import Counter, Histogram, Meter
from opentelemetry.util.types import AttributeValue

from libs.telemetry import constants as tc
from libs.telemetry.metrics import CallbackGauge, Readings, cached_instruments

METRIC_WORKFLOW_FAILURES: Final = "workflow_failures"
METRIC_WORKFLOW_REFUSALS: Final = "workflow_refusals"
METRIC_CAMPAIGN_DELIVERIES: Final = "campaign_deliveries"
ATTR_ERROR_TYPE: Final = "error_type"  # an ErrorType value
ATTR_DEADLINE: Final = "deadline"  # True when the deadline sweep failed the workflow
ATTR_REASON: Final = "reason"
REFUSAL_BUDGET: Final = "cost_limit_exceeded"  # ErrorType.COST_LIMIT_EXCEEDED: a budget blocks
ATTR_STATE: Final = "state"

CircuitStateCallback = Readings
"""Returns {provider: CIRCUIT_CLOSED | CIRCUIT_HALF_OPEN | CIRCUIT_OPEN}; called at each collection."""


@dataclass(frozen=True)
class RouterMetrics:
    workflow_executions: Counter  # attrs: provider, success
    workflow_duration: Histogram  # ms; attrs: provider, success
    workflow_failures: Counter  # attrs: error_type, deadline
    workflow_refusals: Counter  # attrs: reason (an ErrorType value)
    campaign_deliveries: Counter  # attrs: state (scheduled, completed, failed)
    circuit_state: CallbackGauge  # 0 closed, 1 half-open, 2 open; attrs: provider

    @classmethod
    def from_meter(cls, meter: Meter) -> RouterMetrics:
        """All instruments created on `meter` (tests pass a meter of a private MeterProvider)."""
        instance = cls(
            circuit_state=CallbackGauge(
                meter,
                tc.METRIC_CIRCUIT_BREAKER_STATE,
                attribute=tc.METRIC_ATTR_PROVIDER,
                unit="1",
                description="Circuit breaker state per provider: 0 closed, 1 half-open, 2 open",
            ),
            workflow_executions=meter.create_counter(
                tc.METRIC_WORKFLOW_EXECUTIONS, unit="{workflow}", description="Workflows finished"
            ),
            workflow_duration=meter.create_histogram(
                tc.METRIC_WORKFLOW_DURATION,
                unit="ms",
                description="Workflow duration from acceptance to completion or failure",
                explicit_bucket_boundaries_advisory=tc.DURATION_BUCKETS_MS,
            ),
            workflow_failures=meter.create_counter(
                METRIC_WORKFLOW_FAILURES, unit="{workflow}", description="Workflows failed, by error type and deadline"
            ),
            workflow_refusals=meter.create_counter(
                METRIC_WORKFLOW_REFUSALS, unit="{workflow}", description="Workflows refused at acceptance"
            ),
            campaign_deliveries=meter.create_counter(
                METRIC_CAMPAIGN_DELIVERIES,
                unit="{delivery}",
                description="Delivery reports recorded: each delivery scheduled, then completed or failed",
            ),
        )
        # A budget's block is rare: its series exists from the start at 0, so an alert's increase() has a base.
        instance.workflow_refusals.add(0, {ATTR_REASON: REFUSAL_BUDGET})
        return instance

    def record_workflow(self, *, provider: str, success: bool, duration_ms: float) -> None:
        """One finished workflow: its count and duration."""
        attributes: dict[str, AttributeValue] = {tc.METRIC_ATTR_PROVIDER: provider, tc.METRIC_ATTR_SUCCESS: success}
        self.workflow_executions.add(1, attributes)
        self.workflow_duration.record(duration_ms, attributes)

    def record_failure(self, *, error_type: str, deadline: bool) -> None:
        """One failed workflow: its error type, and whether the deadline sweep failed it."""
        self.workflow_failures.add(1, {ATTR_ERROR_TYPE: error_type, ATTR_DEADLINE: deadline})

    def record_refusal(self, *, reason: str) -> None:
        """One workflow refused when it was asked for (cost_limit_exceeded: a budget blocks)."""
        self.workflow_refusals.add(1, {ATTR_REASON: reason})

    def record_delivery_report(self, *, state: str) -> None:
        """One delivery report recorded (not a duplicate)."""
        self.campaign_deliveries.add(1, {ATTR_STATE: state})

    def register_circuit_state(self, callback: CircuitStateCallback) -> None:
        """Report `callback()`'s {provider: state} on the circuit_breaker_state gauge from now on."""
        self.circuit_state.register(callback)


get_router_metrics = cached_instruments(RouterMetrics.from_meter)
"""The process's router instruments, created on first use from the global meter."""


def register_circuit_state(callback: CircuitStateCallback) -> None:
    """Report `callback()`'s {provider: state} on the process's circuit_breaker_state gauge."""
    get_router_metrics().register_circuit_state(callback)
