"""The bus's instruments: every handled message by queue (count, handler time, failures) and the depth of
each service's dead-letter queue.

    get_bus_metrics().record_message(queue="router", duration_ms=3.1, failed=False)   # Consumer.handle does this
    get_bus_metrics().register_dead_letter_depth(lambda: {"router": 3})              # DeadLetterDepth does this
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

from libs.telemetry import constants as tc
from libs.telemetry.metrics import cached_instruments

DeadLetterDepthCallback = Callable[[], Mapping[str, int]]
"""Returns {service: messages in its dead-letter queue}; called at each collection (must not block)."""


@dataclass(frozen=True)
class BusMetrics:
    messages_processed: Counter  # every handled message, failed or not; attrs: queue
    message_errors: Counter  # messages whose handler raised; attrs: queue
    message_processing_time: Histogram  # ms; attrs: queue
    _dead_letter_callbacks: list[DeadLetterDepthCallback] = field(default_factory=list, repr=False)

    @classmethod
    def from_meter(cls, meter: Meter) -> BusMetrics:
        """All instruments created on `meter` (tests pass a meter of a private MeterProvider)."""
        instance = cls(
            messages_processed=meter.create_counter(
                tc.METRIC_MESSAGES_PROCESSED, unit="{message}", description="Messages handled"
            ),
            message_errors=meter.create_counter(
                tc.METRIC_MESSAGE_ERRORS, unit="{message}", description="Messages whose handler failed"
            ),
            message_processing_time=meter.create_histogram(
                tc.METRIC_MESSAGE_PROCESSING_TIME,
                unit="ms",
                description="Handler time per message",
                explicit_bucket_boundaries_advisory=tc.DURATION_BUCKETS_MS,
            ),
        )
        # An observable gauge takes its callbacks at creation: this one fans out to those registered later.
        meter.create_observable_gauge(
            tc.METRIC_BUS_DEAD_LETTERS,
            callbacks=[instance._observe_dead_letters],
            unit="{message}",
            description="Messages in each service's dead-letter queue (last read by libs.bus.dead_letters)",
        )
        return instance

    def record_message(self, *, queue: str, duration_ms: float, failed: bool) -> None:
        """One handled message on `queue`."""
        attributes = {tc.METRIC_ATTR_QUEUE: queue}
        self.messages_processed.add(1, attributes)
        self.message_processing_time.record(duration_ms, attributes)
        # 0 on success: each queue's error series exists from its first message (an error ratio reads 0, not
        # "no data").
        self.message_errors.add(1 if failed else 0, attributes)

    def register_dead_letter_depth(self, callback: DeadLetterDepthCallback) -> None:
        """Report `callback()`'s {service: depth} on the bus_dead_letters gauge until unregistered."""
        self._dead_letter_callbacks.append(callback)

    def unregister_dead_letter_depth(self, callback: DeadLetterDepthCallback) -> None:
        if callback in self._dead_letter_callbacks:
            self._dead_letter_callbacks.remove(callback)

    def _observe_dead_letters(self, _: CallbackOptions) -> Iterable[Observation]:
        # Runs on the metric reader's thread: iterate over a copy in case a reader registers meanwhile.
        for callback in list(self._dead_letter_callbacks):
            for service, depth in callback().items():
                yield Observation(depth, {tc.METRIC_ATTR_SERVICE: service})


get_bus_metrics = cached_instruments(BusMetrics.from_meter)
"""The process's bus instruments, created on first use from the global meter."""
