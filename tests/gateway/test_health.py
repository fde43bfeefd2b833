"""GET /api/health/hybrid-orchestrator: bus, in-process and remote checks aggregated into one verdict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from libs.bus import BusConnectionError
from libs.bus.memory import MemoryBus
from libs.runtime.health import HealthServer
from tests.gateway.conftest import HEALTH, Harness, MakeGateway

StartReadyz = Callable[..., Awaitable[str]]


class DownBus(MemoryBus):
    async def ping(self) -> None:
        raise BusConnectionError("connection refused")


async def _ok() -> None:
    return None


async def _down() -> None:
    raise ConnectionError("refused")


async def _hangs() -> None:
    await asyncio.sleep(30)


@pytest.fixture
async def readyz() -> AsyncIterator[StartReadyz]:
    """Start libs.runtime.health servers (what every service runs) with given checks; yield their URL maker."""
    servers: list[HealthServer] = []

    async def start(**checks: Callable[[], Awaitable[None]]) -> str:
        server = HealthServer(dict(checks))
        port = await server.start(0, host="127.0.0.1")
        servers.append(server)
        return f"http://127.0.0.1:{port}/readyz"

    yield start
    for server in servers:
        await server.stop()


async def _health(
    gw: Harness, *, user: str | None = "ops", role: str | None = "admin"
) -> tuple[int, dict[str, object]]:
    """The health answer, by default as an admin sees it (error strings and remote details)."""
    answer = await gw.client.call("GET", HEALTH, user=user, role=role)
    return answer.status, answer.body["data"]


class TestLocal:
    async def test_all_passing_is_healthy(self, gw: Harness) -> None:
        """Only the bus, and it answers: 200 healthy, no token needed."""
        status, data = await _health(gw, user=None)
        assert (status, data["status"]) == (200, "healthy")
        assert data["checks"]["bus"]["status"] == "ok"  # type: ignore[index]

    async def test_bus_down_is_unhealthy(self, make_gateway: MakeGateway) -> None:
        """A failing bus ping: 503 unhealthy with the reason."""
        gw = await make_gateway(bus=DownBus())
        status, data = await _health(gw)
        assert (status, data["status"]) == (503, "unhealthy")
        bus = data["checks"]["bus"]  # type: ignore[index]
        assert bus["status"] == "failed" and bus["critical"] and "connection refused" in bus["error"]

    @pytest.mark.parametrize(
        ("name", "verdict", "http"),
        [
            ("router.database", "unhealthy", 503),
            ("database", "unhealthy", 503),
            ("azure-worker.provider", "degraded", 200),
            ("redis", "degraded", 200),
        ],
    )
    async def test_failing_in_process_check(self, gw: Harness, name: str, verdict: str, http: int) -> None:
        """The embedded mode's checks: database failing → unhealthy; provider or redis → degraded."""
        gw.runtime.shared.health_checks = {name: _down, "openai-worker.provider": _ok}
        status, data = await _health(gw)
        assert (status, data["status"]) == (http, verdict)
        assert data["checks"][name]["status"] == "failed"  # type: ignore[index]
        assert data["checks"]["openai-worker.provider"]["status"] == "ok"  # type: ignore[index]

    async def test_a_hanging_check_fails_in_bounded_time(self, gw: Harness) -> None:
        """A check that never returns is cut off (2 s) and reported, not waited for."""
        gw.runtime.shared.health_checks = {"redis": _hangs}
        status, data = await asyncio.wait_for(_health(gw), 5)
        assert (status, data["status"]) == (200, "degraded")


class TestRemote:
    async def test_ready_services_are_healthy(self, make_gateway: MakeGateway, readyz: StartReadyz) -> None:
        """Remote /readyz answering 200: ok, with the service's own checks as details."""
        router = await readyz(database=_ok)
        gw = await make_gateway(gateway_health_urls=f"router={router}")
        status, data = await _health(gw)
        assert (status, data["status"]) == (200, "healthy")
        assert data["checks"]["router"]["details"] == {"database": "ok"}  # type: ignore[index]

    async def test_remote_database_down_is_unhealthy(self, make_gateway: MakeGateway, readyz: StartReadyz) -> None:
        """A service whose own database check fails makes the system unhealthy, even a non-critical service."""
        cost = await readyz(database=_down)
        gw = await make_gateway(gateway_health_urls=f"cost-tracker={cost}")
        status, data = await _health(gw)
        assert (status, data["status"]) == (503, "unhealthy")
        assert "refused" in data["checks"]["cost-tracker"]["details"]["database"]  # type: ignore[index]

    async def test_remote_provider_down_is_degraded(self, make_gateway: MakeGateway, readyz: StartReadyz) -> None:
        """A worker whose provider check fails only degrades the system."""
        worker = await readyz(provider=_down)
        gw = await make_gateway(gateway_health_urls=f"azure-worker={worker}")
        status, data = await _health(gw)
        assert (status, data["status"]) == (200, "degraded")

    @pytest.mark.parametrize(
        ("name", "verdict", "http"), [("azure-worker", "degraded", 200), ("router", "unhealthy", 503)]
    )
    async def test_unreachable_service(self, make_gateway: MakeGateway, name: str, verdict: str, http: int) -> None:
        """Nothing listening: a worker is a degradation, the router an outage."""
        gw = await make_gateway(gateway_health_urls=f"{name}=http://127.0.0.1:9/readyz")
        status, data = await _health(gw)
        assert (status, data["status"]) == (http, verdict)
        assert data["checks"][name]["status"] == "failed"  # type: ignore[index]


class TestExposure:
    @pytest.mark.parametrize(("user", "role"), [(None, None), ("alice", None)])
    async def test_without_an_admins_token_no_internal_error_is_shown(
        self, make_gateway: MakeGateway, readyz: StartReadyz, user: str | None, role: str | None
    ) -> None:
        """Anyone (and any user) gets the verdict and which checks failed, never their error strings or a
        remote service's own checks (host names, driver messages); an admin gets them."""
        cost = await readyz(database=_down)
        gw = await make_gateway(bus=DownBus(), gateway_health_urls=f"cost-tracker={cost}")
        status, data = await _health(gw, user=user, role=role)
        assert (status, data["status"]) == (503, "unhealthy")
        checks = data["checks"]
        assert checks["bus"] == {**checks["bus"], "status": "failed", "critical": True, "error": "failed"}  # type: ignore[index]
        assert checks["cost-tracker"].get("details") is None and checks["cost-tracker"]["error"] == "failed"  # type: ignore[index, union-attr]
        assert "refused" not in str(data)
        _, admin = await _health(gw)
        assert "connection refused" in admin["checks"]["bus"]["error"]  # type: ignore[index]
        assert "refused" in admin["checks"]["cost-tracker"]["details"]["database"]  # type: ignore[index]

    async def test_a_bad_token_is_no_error_on_health(self, gw: Harness) -> None:
        """Health needs no token: a bad one answers like none, not 401."""
        answer = await gw.client.call("GET", HEALTH, token="not-a-jwt")
        assert answer.status == 200 and answer.body["data"]["status"] == "healthy"


class TestSummaries:
    async def test_the_plans_names_sum_up_every_source(self, gw: Harness) -> None:
        """database, orchestrator, azureProvider and openaiProvider each sum up the checks of that name from
        every service: the worker's calls and the router's circuit both speak for a provider."""
        gw.runtime.shared.health_checks = {
            "router.database": _ok,
            "cost-tracker.database": _ok,
            "router.orchestrator": _ok,
            "router.azureProvider": _down,
            "azure-worker.azureProvider": _ok,
            "router.openaiProvider": _ok,
        }
        status, data = await _health(gw)
        assert (status, data["status"]) == (200, "degraded")  # a provider's circuit is no outage
        checks = data["checks"]
        assert {k: checks[k]["status"] for k in ("database", "orchestrator", "azureProvider", "openaiProvider")} == {  # type: ignore[index]
            "database": "ok",
            "orchestrator": "ok",
            "azureProvider": "failed",
            "openaiProvider": "ok",
        }
        assert checks["azureProvider"]["details"] == {  # type: ignore[index]
            "router.azureProvider": "ConnectionError: refused",
            "azure-worker.azureProvider": "ok",
        }
        assert checks["database"]["critical"] and not checks["azureProvider"]["critical"]  # type: ignore[index]

    async def test_a_ready_service_with_a_failing_report_degrades(
        self, make_gateway: MakeGateway, readyz: StartReadyz
    ) -> None:
        """A remote router ready (200) but reporting an open circuit: its check fails, the system is degraded,
        and the remote's own report feeds the openaiProvider summary."""
        server = HealthServer({"database": _ok, "openaiProvider": _down}, reports={"openaiProvider"})
        port = await server.start(0, host="127.0.0.1")
        try:
            gw = await make_gateway(gateway_health_urls=f"router=http://127.0.0.1:{port}/readyz")
            status, data = await _health(gw)
        finally:
            await server.stop()
        assert (status, data["status"]) == (200, "degraded")
        router = data["checks"]["router"]  # type: ignore[index]
        assert (router["status"], router["error"], router["critical"]) == ("failed", "failing: openaiProvider", False)
        assert data["checks"]["openaiProvider"]["details"] == {"router/openaiProvider": "ConnectionError: refused"}  # type: ignore[index]
        assert data["checks"]["database"]["status"] == "ok"  # type: ignore[index]
