"""Liveness and readiness over HTTP, for Kubernetes probes and ECS health checks.

GET /healthz  — 200 while the process runs its event loop (liveness: restart me if this fails).
GET /readyz   — 200 when the bus and every service check pass, else 503 with the failing reasons
                (readiness: stop sending me traffic). Draining on SIGTERM turns readiness off first.
                The body's "checks" also hold the service's reports (names in `reports`): a failing report
                shows there, but never makes the answer 503 (libs.runtime.service.Service.reports).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from libs.runtime.service import Check

CHECK_TIMEOUT_S = 2.0


async def run_checks(checks: dict[str, Check]) -> dict[str, str]:
    """Each check's result: "ok" or the reason it failed (checks run concurrently, bounded in time)."""

    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except Exception as exc:  # a failing dependency is a report, not a crash
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return "ok"

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    return dict(zip(checks, results, strict=True))


class HealthServer:
    def __init__(self, checks: dict[str, Check], reports: set[str] | None = None) -> None:
        self.checks = checks
        self.reports = reports if reports is not None else set()  # names in `checks` that are reports
        self.draining = False
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._live)
        app.router.add_get("/readyz", self._ready)
        return app

    async def _live(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _ready(self, _: web.Request) -> web.Response:
        results = await run_checks(self.checks)
        ready = not self.draining and all(r == "ok" for n, r in results.items() if n not in self.reports)
        body = {"status": "ready" if ready else "not_ready", "draining": self.draining, "checks": results}
        return web.json_response(body, status=200 if ready else 503)

    async def start(self, port: int, host: str = "0.0.0.0") -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses  # the bound (host, port, ...): port 0 picks a free one
        return int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
