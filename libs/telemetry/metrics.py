"""Metric instruments, each set owned by the module that records it, made once per process from the global meter:

    libs.bus.metrics               messages handled (count, time, errors) and the dead-letter depth gauge
    libs.ratelimit.metrics         deliveries pushed to a later slot
    libs.llm.metrics               provider calls, tokens and content-rule violations
    services.router.metrics        workflows finished (count, duration), failed, refused, delivery reports,
                                   and the circuit breakers' state
    services.cost_tracker.metrics  money recorded, unpriced calls and each workflow's cost
    services.gateway.metrics       HTTP requests (http.server.request.duration)
    services.of_sender.metrics     platform sends per account and outcome

Each declares `get_x = cached_instruments(X.from_meter)`; a gauge read from callbacks registered later (the
dead-letter depth, the circuit state) is a `CallbackGauge`. The names and attributes — the original plan's, which
dashboards and alerts rely on — stay in libs.telemetry.constants. `get_x()` may run before `setup_telemetry`:
the API's proxy instruments forward to the real provider once it is installed. Attribute values stay
low-cardinality (provider, queue, scope) — ids belong on spans and logs, never on metrics.
"""

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from libs.telemetry import constants as c

T = TypeVar("T")


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


Readings = Callable[[], Mapping[str, int]]
"""Returns {attribute value: reading} (e.g. {service: depth}); called at each collection (must not block)."""


class CallbackGauge:
    """An observable gauge fed by callbacks registered after it exists (OpenTelemetry takes a gauge's callbacks
    at its creation): each reports {attribute value: reading}, labelled with `attribute`."""

    def __init__(self, meter: Meter, name: str, *, attribute: str, unit: str, description: str) -> None:
        self._attribute = attribute
        self._callbacks: list[Readings] = []
        meter.create_observable_gauge(name, callbacks=[self._observe], unit=unit, description=description)

    def register(self, callback: Readings) -> None:
        self._callbacks.append(callback)

    def unregister(self, callback: Readings) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        # Runs on the metric reader's thread: iterate over a copy in case one registers meanwhile.
        for callback in list(self._callbacks):
            for key, value in callback().items():
                yield Observation(value, {self._attribute: key})
