"""libs.runtime.metrics_http: the optional Prometheus scrape endpoint serves the process's OpenTelemetry
instruments with the original plan's names, negotiates the format, and detaches cleanly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider

from libs.bus.metrics import BusMetrics
from libs.runtime.metrics_http import METRICS_PATH, MetricsEndpoint
from libs.telemetry import CIRCUIT_OPEN, TelemetryConfigError
from services.router.metrics import RouterMetrics


@pytest.fixture
def provider() -> MeterProvider:
    """A private SDK MeterProvider, so the test never touches the process's global one."""
    return MeterProvider()


@pytest.fixture
async def endpoint(provider: MeterProvider) -> AsyncIterator[tuple[MetricsEndpoint, str]]:
    endpoint = MetricsEndpoint()
    port = await endpoint.start(0, "127.0.0.1", meter_provider=provider)
    yield endpoint, f"http://127.0.0.1:{port}{METRICS_PATH}"
    await endpoint.stop()


async def scrape(url: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers["Content-Type"], await response.text()


class TestMetricsEndpoint:
    async def test_serves_the_seed_metrics(
        self, provider: MeterProvider, endpoint: tuple[MetricsEndpoint, str]
    ) -> None:
        """Counters, histograms and the circuit gauge recorded after start appear in the Prometheus text."""
        router = RouterMetrics.from_meter(provider.get_meter("test"))
        router.register_circuit_state(lambda: {"azure": CIRCUIT_OPEN})
        router.record_workflow(provider="azure", success=True, duration_ms=812.0)
        BusMetrics.from_meter(provider.get_meter("test")).record_message(
            queue="ho.router", duration_ms=3.0, failed=True
        )
        status, content_type, body = await scrape(endpoint[1])
        assert status == 200
        assert content_type.startswith("text/plain")
        lines = body.splitlines()
        assert any(
            line.startswith("workflow_executions_total{") and 'provider="azure"' in line and line.endswith(" 1.0")
            for line in lines
        )
        assert any(line.startswith("message_errors_total{") and 'queue="ho.router"' in line for line in lines)
        assert any(line.startswith("workflow_duration_milliseconds_bucket{") for line in lines)
        assert any(
            line.startswith("circuit_breaker_state{") and line.endswith(f" {CIRCUIT_OPEN:.1f}") for line in lines
        )

    async def test_openmetrics_on_request(self, endpoint: tuple[MetricsEndpoint, str]) -> None:
        """A scraper asking for OpenMetrics gets it (with its # EOF terminator)."""
        status, content_type, body = await scrape(endpoint[1], "application/openmetrics-text; version=1.0.0")
        assert status == 200
        assert content_type.startswith("application/openmetrics-text")
        assert body.rstrip().endswith("# EOF")

    async def test_stop_detaches_the_reader(self, provider: MeterProvider) -> None:
        """After stop the port is closed and the provider no longer feeds the endpoint (start works again)."""
        endpoint = MetricsEndpoint()
        port = await endpoint.start(0, "127.0.0.1", meter_provider=provider)
        await endpoint.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await scrape(f"http://127.0.0.1:{port}{METRICS_PATH}")
        port = await endpoint.start(0, "127.0.0.1", meter_provider=provider)
        status, _, _ = await scrape(f"http://127.0.0.1:{port}{METRICS_PATH}")
        await endpoint.stop()
        assert status == 200

    async def test_needs_the_sdk(self) -> None:
        """Without an SDK MeterProvider (OTEL_SDK_DISABLED) starting is a configuration error."""
        with pytest.raises(TelemetryConfigError, match="MeterProvider"):
            await MetricsEndpoint().start(0, "127.0.0.1", meter_provider=NoOpMeterProvider())

    async def test_a_busy_port_leaves_nothing_attached(self, provider: MeterProvider) -> None:
        """When the port is taken, start raises OSError and can be retried on another port."""
        first = MetricsEndpoint()
        port = await first.start(0, "127.0.0.1", meter_provider=provider)
        second = MetricsEndpoint()
        try:
            with pytest.raises(OSError):
                await second.start(port, "127.0.0.1", meter_provider=provider)
            other = await second.start(0, "127.0.0.1", meter_provider=provider)
            assert other != port
        finally:
            await second.stop()
            await first.stop()
