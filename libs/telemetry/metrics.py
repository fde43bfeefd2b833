"""The platform's metric instruments, with the original plan's names, created once from the global meter.

    m = get_metrics()
    m.record_workflow(provider="azure", success=True, duration_ms=812.0, cost_usd=Decimal("0.0042"))
    m.record_message(queue="generation.requested", duration_ms=3.1, failed=False)
    m.record_throttle(scope="account")
    register_circuit_state(lambda: {"azure": CIRCUIT_OPEN, "openai": CIRCUIT_CLOSED})
    m.register_dead_letter_depth(lambda: {"router": 3})  # libs.bus.dead_letters.DeadLetterDepth does this

Instruments come from the global meter provider. `get_metrics()` may run before `setup_telemetry`: the
API's proxy instruments forward to the real provider once it is installed. Attribute values stay
low-cardinality (provider, queue, scope) — ids belong on spans and logs, never on metrics.
Money is `Decimal` everywhere else; a metric is an approximation, so it is converted to float here.
"""

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.util.types import AttributeValue

from libs.telemetry import constants as c

CircuitStateCallback = Callable[[], Mapping[str, int]]
"""Returns {provider: CIRCUIT_CLOSED | CIRCUIT_HALF_OPEN | CIRCUIT_OPEN}; called at each collection."""

DeadLetterDepthCallback = Callable[[], Mapping[str, int]]
"""Returns {service: messages in its dead-letter queue}; called at each collection (must not block)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Metrics:
    """The instruments. Prefer the `record_*` helpers: they keep attribute names consistent."""

    workflow_executions: Counter  # attrs: provider, success
    workflow_duration: Histogram  # ms; attrs: provider, success
    workflow_cost: Histogram  # USD per workflow; attrs: provider
    messages_processed: Counter  # every handled message, failed or not; attrs: queue
    message_errors: Counter  # messages whose handler raised; attrs: queue
    message_processing_time: Histogram  # ms; attrs: queue
    rate_limiter_throttles: Counter  # deliveries pushed to a later slot; attrs: scope (account|recipient)
    _circuit_callbacks: list[CircuitStateCallback] = field(default_factory=list, repr=False)
    _dead_letter_callbacks: list[DeadLetterDepthCallback] = field(default_factory=list, repr=False)

    @classmethod
    def from_meter(cls, meter: Meter) -> "Metrics":
        """All instruments created on `meter` (tests pass a meter of a private MeterProvider)."""
        instance = cls(
            workflow_executions=meter.create_counter(
                c.METRIC_WORKFLOW_EXECUTIONS, unit="{workflow}", description="Workflows finished"
            ),
            workflow_duration=meter.create_histogram(
                c.METRIC_WORKFLOW_DURATION,
                unit="ms",
                description="Workflow duration from acceptance to completion or failure",
                explicit_bucket_boundaries_advisory=c.DURATION_BUCKETS_MS,
            ),
            workflow_cost=meter.create_histogram(
                c.METRIC_WORKFLOW_COST,
                unit="{USD}",
                description="LLM cost of one workflow",
                explicit_bucket_boundaries_advisory=c.COST_BUCKETS_USD,
            ),
            messages_processed=meter.create_counter(
                c.METRIC_MESSAGES_PROCESSED, unit="{message}", description="Messages handled"
            ),
            message_errors=meter.create_counter(
                c.METRIC_MESSAGE_ERRORS, unit="{message}", description="Messages whose handler failed"
            ),
            message_processing_time=meter.create_histogram(
                c.METRIC_MESSAGE_PROCESSING_TIME,
                unit="ms",
                description="Handler time per message",
                explicit_bucket_boundaries_advisory=c.DURATION_BUCKETS_MS,
            ),
            rate_limiter_throttles=meter.create_counter(
                c.METRIC_RATE_LIMITER_THROTTLES,
                unit="{delivery}",
                description="Deliveries delayed to a later slot by a rate limit",
            ),
        )
        # Observable instruments take their callbacks at creation, so one gauge fans out to the callbacks
        # registered later by each circuit breaker.
        meter.create_observable_gauge(
            c.METRIC_CIRCUIT_BREAKER_STATE,
            callbacks=[instance._observe_circuits],
            unit="1",
            description="Circuit breaker state per provider: 0 closed, 1 half-open, 2 open",
        )
        meter.create_observable_gauge(
            c.METRIC_BUS_DEAD_LETTERS,
            callbacks=[instance._observe_dead_letters],
            unit="{message}",
            description="Messages in each service's dead-letter queue (last read by libs.bus.dead_letters)",
        )
        return instance

    def record_workflow(
        self, *, provider: str, success: bool, duration_ms: float, cost_usd: Decimal | float | None = None
    ) -> None:
        """One finished workflow: execution count, duration and (when known) cost."""
        attributes: dict[str, AttributeValue] = {
            c.METRIC_ATTR_PROVIDER: provider,
            c.METRIC_ATTR_SUCCESS: success,
        }
        self.workflow_executions.add(1, attributes)
        self.workflow_duration.record(duration_ms, attributes)
        if cost_usd is not None:
            self.workflow_cost.record(float(cost_usd), {c.METRIC_ATTR_PROVIDER: provider})

    def record_message(self, *, queue: str, duration_ms: float, failed: bool) -> None:
        """One handled message on `queue`."""
        attributes = {c.METRIC_ATTR_QUEUE: queue}
        self.messages_processed.add(1, attributes)
        self.message_processing_time.record(duration_ms, attributes)
        if failed:
            self.message_errors.add(1, attributes)

    def record_throttle(self, *, scope: str) -> None:
        """A delivery the rate limiter pushed to a later slot; `scope` is "account" or "recipient"."""
        self.rate_limiter_throttles.add(1, {c.METRIC_ATTR_SCOPE: scope})

    def register_circuit_state(self, callback: CircuitStateCallback) -> None:
        """Report `callback()`'s {provider: state} on the circuit_breaker_state gauge from now on."""
        self._circuit_callbacks.append(callback)

    def register_dead_letter_depth(self, callback: DeadLetterDepthCallback) -> None:
        """Report `callback()`'s {service: depth} on the bus_dead_letters gauge until unregistered."""
        self._dead_letter_callbacks.append(callback)

    def unregister_dead_letter_depth(self, callback: DeadLetterDepthCallback) -> None:
        if callback in self._dead_letter_callbacks:
            self._dead_letter_callbacks.remove(callback)

    def _observe_dead_letters(self, _: CallbackOptions) -> Iterable[Observation]:
        for callback in list(self._dead_letter_callbacks):
            for service, depth in callback().items():
                yield Observation(depth, {c.METRIC_ATTR_SERVICE: service})

    def _observe_circuits(self, _: CallbackOptions) -> Iterable[Observation]:
        # Runs on the metric reader's thread; iterate over a copy in case a breaker registers meanwhile.
        for callback in list(self._circuit_callbacks):
            for provider, state in callback().items():
                yield Observation(state, {c.METRIC_ATTR_PROVIDER: provider})


def cached_instruments(build: Callable[[Meter], T]) -> Callable[[], T]:
    """A getter of the process's instruments that `build` makes on the global meter, made once, on first use
    (each module that owns instruments declares `get_x = cached_instruments(X.from_meter)`). Locked: two
    threads asking at once must not create two sets, whose observable gauges would both report."""
    lock = threading.Lock()
    made: list[T] = []

    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(build(metrics.get_meter(c.INSTRUMENTATION_NAME)))
        return made[0]

    return get


get_metrics = cached_instruments(Metrics.from_meter)
"""The process's platform instruments, created on first use from the global meter."""


def register_circuit_state(callback: CircuitStateCallback) -> None:
    """Report `callback()`'s {provider: state} on the process's circuit_breaker_state gauge."""
    get_metrics().register_circuit_state(callback)
