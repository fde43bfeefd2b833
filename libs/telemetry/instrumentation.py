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
    """Instrument every library not disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS; returns their names."""
    disabled = {n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    enabled: list[str] = []
    with _lock:
        for name, cls in _INSTRUMENTORS.items():
            if name in disabled:
                continue
            instrumentor = cls()
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()
            enabled.append(name)
    return enabled
