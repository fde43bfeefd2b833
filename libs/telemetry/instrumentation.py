"""The official OpenTelemetry instrumentations of the libraries our services talk through.

asyncpg (database spans), redis (cache and rate-limit spans) and the aiohttp client (platform API and
provider calls, with `traceparent` injected into the outgoing request). Enabled once per process by the
runtime; the standard `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS` (comma list: asyncpg, redis, aiohttp-client)
turns any of them off. aiobotocore has no official instrumentation (the botocore one patches the sync
client only), so SQS calls carry trace context in message attributes but get no client spans of their own.
"""

from __future__ import annotations

import os
import threading

from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.redis import RedisInstrumentor

_INSTRUMENTORS: dict[str, type[BaseInstrumentor]] = {
    "asyncpg": AsyncPGInstrumentor,
    "redis": RedisInstrumentor,
    "aiohttp-client": AioHttpClientInstrumentor,
}
_lock = threading.Lock()


def instrument_libraries() -> list[str]:
    """Instrument every library not disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS and not instrumented
    yet; returns the names this call instrumented (for `uninstrument_libraries`)."""
    disabled = {n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    enabled: list[str] = []
    with _lock:
        for name, cls in _INSTRUMENTORS.items():
            instrumentor = cls()
            if name in disabled or instrumentor.is_instrumented_by_opentelemetry:
                continue
            instrumentor.instrument()
            enabled.append(name)
    return enabled


def uninstrument_libraries(names: list[str]) -> None:
    """Undo `instrument_libraries` (a service run inside another program, e.g. a test, leaves it as it was)."""
    with _lock:
        for name in names:
            instrumentor = _INSTRUMENTORS[name]()
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
