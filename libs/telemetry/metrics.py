"""Metric instruments, each set owned by the module that records it, made once per process from the global meter:

    libs.bus.metrics               messages handled (count, time, errors) and the dead-letter depth gauge
    libs.ratelimit.metrics         deliveries pushed to a later slot
    libs.llm.metrics               provider calls, tokens and content-rule violations
    services.router.metrics        workflows finished (count, duration), failed, refused, delivery reports,
                                   and the circuit breakers' state
    services.cost_tracker.metrics  money recorded, unpriced calls and each workflow's cost
    services.gateway.metrics       HTTP requests (http.server.request.duration)
    services.of_sender.metrics     platform sends per account and outcome

Each declares `get_x = cached_instruments(X.from_meter)`. The names and attributes — the original plan's, which
dashboards and alerts rely on — stay in libs.telemetry.constants. `get_x()` may run before `setup_telemetry`:
the API's proxy instruments forward to the real provider once it is installed. Attribute values stay
low-cardinality (provider, queue, scope) — ids belong on spans and logs, never on metrics.
"""

import threading
from collections.abc import Callable
from typing import TypeVar

from opentelemetry import metrics
from opentelemetry.metrics import Meter

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
