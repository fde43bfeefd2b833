"""Each process's /readyz: readiness from its checks; its reports shown but never withholding readiness."""

from __future__ import annotations

import aiohttp

from libs.runtime.health import HealthServer


async def _ok() -> None:
    return None


async def _down() -> None:
    raise ConnectionError("refused")


async def _readyz(server: HealthServer) -> tuple[int, dict[str, object]]:
    port = await server.start(0, host="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status, await response.json()
    finally:
        await server.stop()


class TestReadyz:
    async def test_a_failing_report_shows_but_the_process_stays_ready(self) -> None:
        """A failing report (an open circuit) is in the body while /readyz answers 200 ready."""
        status, body = await _readyz(HealthServer({"db": _ok, "azureProvider": _down}, reports={"azureProvider"}))
        assert (status, body["status"]) == (200, "ready")
        assert body["checks"] == {"db": "ok", "azureProvider": "ConnectionError: refused"}

    async def test_a_failing_check_withholds_readiness(self) -> None:
        """A failing readiness check answers 503 not_ready with its reason."""
        status, body = await _readyz(HealthServer({"db": _down, "azureProvider": _ok}, reports={"azureProvider"}))
        assert (status, body["status"]) == (503, "not_ready")
