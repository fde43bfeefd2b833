"""An optional Prometheus scrape endpoint per service process: ``GET /metrics`` on its own port.

OpenTelemetry stays the one source of metrics (libs.telemetry.metrics: workflow_executions,
message_processing_time, circuit_breaker_state, ...); this adds a pull-based reader to the process's
MeterProvider beside the OTLP push, for clusters that scrape with Prometheus. Collection happens per scrape
(nothing is buffered between scrapes) and runs off the event loop, because it walks every instrument and
calls the observable gauges' callbacks synchronously.

    endpoint = MetricsEndpoint()
    port = await endpoint.start(9464)   # after setup_telemetry(); 0 picks a free port
    ...
    await endpoint.stop()               # detaches the reader again

Start it before the services: OpenTelemetry aggregates per reader, so measurements recorded before the
reader was attached are not in its counters and histograms (observable gauges are read at each scrape).

Each endpoint has a private prometheus_client registry, so it serves only this process's OpenTelemetry
instruments (never prometheus_client's default process/platform collectors) and several endpoints in one
process (tests, the embedded mode) do not collide. The response format follows the scraper's Accept header:
Prometheus text by default, OpenMetrics when asked for.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from libs.telemetry import get_logger
from libs.telemetry.errors import TelemetryConfigError

__all__ = ["METRICS_PATH", "MetricsEndpoint"]

log = get_logger(__name__)

METRICS_PATH: Final = "/metrics"
# The port the OpenTelemetry Prometheus exporter registered with Prometheus (its default); deployments
# use it unless they say otherwise.
DEFAULT_METRICS_PORT: Final = 9464


class MetricsEndpoint:
    """A Prometheus reader on the process's MeterProvider and the HTTP server that exposes it."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._reader: PrometheusMetricReader | None = None
        self._provider: MeterProvider | None = None
        self._runner: web.AppRunner | None = None

    async def start(
        self,
        port: int = DEFAULT_METRICS_PORT,
        host: str = "0.0.0.0",  # Prometheus scrapes from outside the pod
        *,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> int:
        """Attach the reader to ``meter_provider`` (default: the global one) and listen; the bound port.

        Raises TelemetryConfigError when there is no SDK MeterProvider to read from (setup_telemetry was
        not called, or OTEL_SDK_DISABLED=true), OSError when the port cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError("the metrics endpoint is already running")
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        if not isinstance(provider, MeterProvider):
            raise TelemetryConfigError(
                "a Prometheus endpoint needs the OpenTelemetry SDK's MeterProvider "
                "(call setup_telemetry first; OTEL_SDK_DISABLED must not be true)"
            )
        reader = PrometheusMetricReader(registry=self._registry)
        provider.add_metric_reader(reader)
        self._reader, self._provider = reader, provider
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._scrape)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            self._detach()
            raise
        self._runner = runner
        bound = int(runner.addresses[0][1]) if runner.addresses else port
        log.info("metrics.endpoint_started", port=bound, path=METRICS_PATH)
        return bound

    async def stop(self) -> None:
        """Stop listening and detach the reader (a no-op when not started)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._detach()

    def _detach(self) -> None:
        if self._reader is not None and self._provider is not None:
            # Also shuts the reader down, which unregisters its collector from our registry.
            self._provider.remove_metric_reader(self._reader)
        self._reader = self._provider = None

    async def _scrape(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await asyncio.to_thread(encoder, self._registry)
        # aiohttp refuses a charset inside content_type=, so the negotiated header is set verbatim.
        return web.Response(body=body, headers={"Content-Type": content_type})
