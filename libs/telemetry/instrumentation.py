"""The official OpenTelemetry instrumentations of the libraries our services talk through.

asyncpg (database spans), redis (cache and rate-limit spans), the aiohttp client (platform API and
provider calls, with `traceparent` injected into the outgoing request) and aiobotocore (SQS, SNS, SES and
Secrets Manager client spans, from the AiobotocoreInstrumentor the pinned botocore instrumentation package
ships; trace context still travels in our own SQS message attributes). Enabled once per process by the
runtime; the standard `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS` (comma list: asyncpg, redis, aiohttp-client,
aiobotocore) turns any of them off. Their calls outside any trace (polls, sweeps) are not recorded
(libs.telemetry.sampling).

The aiohttp client's spans record the URL through `span_url` (the instrumentation's url_filter): a webhook URL
is a secret (the Slack webhook was in every alert's span as `http.url`), so the path of a secret-bearing URL
and every query value are redacted before the library sees the URL.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import yarl
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.botocore import AiobotocoreInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.redis import RedisInstrumentor

from libs.telemetry.constants import SECRET_PATH_HOSTS, URL_REDACTED

_INSTRUMENTORS: dict[str, type[BaseInstrumentor]] = {
    "asyncpg": AsyncPGInstrumentor,
    "redis": RedisInstrumentor,
    "aiohttp-client": AioHttpClientInstrumentor,
    "aiobotocore": AiobotocoreInstrumentor,
}
_INSTRUMENT_OPTIONS: dict[str, dict[str, Any]] = {"aiohttp-client": {"url_filter": lambda url: span_url(url)}}
_lock = threading.Lock()
_secret_urls: set[tuple[str, int | None, str]] = set()


def register_secret_url(url: str) -> None:
    """Spans never show `url`'s path (a webhook URL a service was configured with, wherever it is hosted)."""
    parsed = yarl.URL(url)
    _secret_urls.add((parsed.host or "", parsed.port, parsed.path))


def span_url(url: yarl.URL) -> str:
    """`url` as client spans record it: without credentials, every query value and, for a secret-bearing URL
    (SECRET_PATH_HOSTS, or registered), the path."""
    url = url.with_user(None).with_fragment(None)
    if url.query:
        url = url.with_query({key: URL_REDACTED for key in url.query})
    if (url.host or "") in SECRET_PATH_HOSTS or (url.host or "", url.port, url.path) in _secret_urls:
        url = url.with_path(f"/{URL_REDACTED}")
    return str(url)


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
            instrumentor.instrument(**_INSTRUMENT_OPTIONS.get(name, {}))
            enabled.append(name)
    return enabled


def uninstrument_libraries(names: list[str]) -> None:
    """Undo `instrument_libraries` (a service run inside another program, e.g. a test, leaves it as it was)."""
    with _lock:
        for name in names:
            instrumentor = _INSTRUMENTORS[name]()
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
