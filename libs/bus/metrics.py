"""The bus's instruments: every handled message by queue (count, handler time, failures) and the depth of
each service's dead-letter queue.

    get_bus_metrics().record_message(queue="router", duration_ms=3.1, failed=False)   # Consumer.handle does this
    get_bus_metrics().register_dead_letter_depth(lambda: {"router": 3})              # DeadLetterDepth does this
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter

from libs.telemetry import constants as tc
from libs.telemetry.metrics import CallbackGauge, Readings, cached_instruments

DeadLetterDepthCallback = Readings
"""Returns {service: messages in its dead-letter queue}; called at each collection (must not block)."""


@dataclass(frozen=True)
class BusMetrics:
    messages_processed: Counter  # every handled message, failed or not; attrs: queue
    message_errors: Counter  # messages whose handler raised; attrs: queue
    message_processing_time: Histogram  # ms; attrs: queue
    dead_letters: CallbackGauge  # messages in each service's DLQ; attrs: service

    @classmethod
    def from_meter(cls, meter: Meter) -> BusMetrics:
        """All instruments created on `meter` (tests pass a meter of a private MeterProvider)."""
        return cls(
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
            dead_letters=CallbackGauge(
                meter,
                tc.METRIC_BUS_DEAD_LETTERS,
                attribute=tc.METRIC_ATTR_SERVICE,
                unit="{message}",
                description="Messages in each service's dead-letter queue (last read by libs.bus.dead_letters)",
            ),
        )

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
        self.dead_letters.register(callback)

    def unregister_dead_letter_depth(self, callback: DeadLetterDepthCallback) -> None:
        self.dead_letters.unregister(callback)


get_bus_metrics = cached_instruments(BusMetrics.from_meter)
"""The process's bus instruments, created on first use from the global meter."""
