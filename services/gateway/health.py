"""GET /api/health/hybrid-orchestrator: the whole system's health from every check the gateway can reach.

Sources: the bus ping; the in-process checks the embedded mode shares in `runtime.shared.health_checks`
(name → async callable that raises on failure, read on every request because services register after
the gateway is created); and the readiness endpoints in GATEWAY_HEALTH_URLS, fetched over HTTP (a
libs.runtime.health `/readyz` answers {"status", "checks": {name: "ok" | reason}}).

A failing check is critical when its name, or for a remote service the name of one of its failing checks,
ends in a segment of CRITICAL_CHECK_SEGMENTS (bus, database, router): then the system is unhealthy (503).
Any other failure (a provider, redis, a worker) leaves it degraded (200). A remote service answering 200 may
still report failures (libs.runtime.service.Service.reports: a provider's circuit, its latest calls): the
check then fails, degrading the system.

The original plan's names (SUMMARY_CHECKS: database, orchestrator, azureProvider, openaiProvider) are answered
too, each summing up every check of that name wherever it runs: the router's circuit and the worker's latest
calls both speak for `azureProvider`; a summary fails when one of them does.

The endpoint is unauthenticated, so what it answers to anyone is `public`: each check's status, criticality
and latency, never the error strings or a remote service's own checks (host names, driver messages);
an admin's token sees them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import aiohttp

from libs.bus import Bus
from libs.runtime import Shared
from services.gateway import constants as c
from services.gateway.schemas import CheckResult, HealthData, HealthResponse

Check = Callable[[], Awaitable[None]]


class RemoteNotReady(Exception):
    """A remote readiness endpoint answered, but not 200."""

    def __init__(self, message: str, details: dict[str, str]) -> None:
        super().__init__(message)
        self.details = details


def is_critical(name: str, critical: frozenset[str] = c.CRITICAL_CHECK_SEGMENTS) -> bool:
    return _last_segment(name) in critical


def _last_segment(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HealthAggregator:
    def __init__(
        self,
        bus: Bus,
        shared: Shared,
        urls: Mapping[str, str],
        *,
        timeout_s: float = c.HEALTH_CHECK_TIMEOUT_S,
    ) -> None:
        self._bus = bus
        self._shared = shared
        self._urls = dict(urls)
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def report(self) -> tuple[int, HealthResponse]:
        """(HTTP status, body): 200 healthy or degraded, 503 unhealthy."""
        local: dict[str, Check] = {"bus": self._bus.ping, **self._shared.health_checks}
        names = [*local, *self._urls]
        results = await asyncio.gather(
            *(self._local(name, check) for name, check in local.items()),
            *(self._remote(name, url) for name, url in self._urls.items()),
        )
        checks = dict(zip(names, results, strict=True))
        failed = [r for r in checks.values() if r.status == "failed"]
        checks.update(summaries(checks))
        if any(r.critical for r in failed):
            status = "unhealthy"
        elif failed:
            status = "degraded"
        else:
            status = "healthy"
        data = HealthData(status=status, checks=checks, timestamp=datetime.now(UTC))
        return (503 if status == "unhealthy" else 200), HealthResponse(success=status != "unhealthy", data=data)

    async def _local(self, name: str, check: Check) -> CheckResult:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), self._timeout_s)
        except Exception as exc:  # a failing dependency is a report, not a crash
            return CheckResult(status="failed", critical=is_critical(name), error=_reason(exc), latency_ms=_ms(started))
        return CheckResult(status="ok", critical=is_critical(name), latency_ms=_ms(started))

    async def _remote(self, name: str, url: str) -> CheckResult:
        started = time.perf_counter()
        try:
            details = await asyncio.wait_for(self._fetch(url), self._timeout_s)
        except RemoteNotReady as exc:
            failing = [k for k, v in exc.details.items() if v != "ok"]
            critical = is_critical(name) or any(is_critical(k) for k in failing)
            return CheckResult(
                status="failed", critical=critical, error=str(exc), latency_ms=_ms(started), details=exc.details
            )
        except Exception as exc:  # unreachable, timed out, not JSON
            return CheckResult(status="failed", critical=is_critical(name), error=_reason(exc), latency_ms=_ms(started))
        # Failing reports: the service is up and ready, so only what failed can make it critical.
        failed = sorted(k for k, v in details.items() if v != "ok")
        if failed:
            error = f"failing: {', '.join(failed)}"
            critical = any(is_critical(k) for k in failed)
            return CheckResult(
                status="failed", critical=critical, error=error, latency_ms=_ms(started), details=details
            )
        return CheckResult(status="ok", critical=is_critical(name), latency_ms=_ms(started), details=details)

    async def _fetch(self, url: str) -> dict[str, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.get(url) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            checks = body.get("checks") if isinstance(body, dict) else None
            details = {str(k): str(v) for k, v in checks.items()} if isinstance(checks, dict) else {}
            if response.status != 200:
                raise RemoteNotReady(f"HTTP {response.status}", details)
            return details


def summaries(checks: Mapping[str, CheckResult]) -> dict[str, CheckResult]:
    """One entry per SUMMARY_CHECKS name that some check answers: failed when any of its sources failed, with
    each source's verdict as details. Sources: checks whose last segment is the name, and remote services'
    own checks of that name."""
    found: dict[str, dict[str, tuple[str, float]]] = {name: {} for name in c.SUMMARY_CHECKS}
    for check_name, result in checks.items():
        if _last_segment(check_name) in found:
            found[_last_segment(check_name)][check_name] = (result.error or result.status, result.latency_ms)
        for detail, verdict in (result.details or {}).items():
            if _last_segment(detail) in found:
                found[_last_segment(detail)][f"{check_name}/{detail}"] = (verdict, result.latency_ms)
    out: dict[str, CheckResult] = {}
    for name, sources in found.items():
        if not sources:
            continue
        failing = [f"{source}: {verdict}" for source, (verdict, _) in sources.items() if verdict != "ok"]
        out[name] = CheckResult(
            status="failed" if failing else "ok",
            critical=is_critical(name),
            error="; ".join(failing) or None,
            latency_ms=max(latency for _, latency in sources.values()),
            details={source: verdict for source, (verdict, _) in sources.items()},
        )
    return out


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def public(body: HealthResponse) -> HealthResponse:
    """`body` without what only an operator should read: each failed check's error and remote details."""
    checks = {
        name: result.model_copy(update={"error": "failed" if result.error else None, "details": None})
        for name, result in body.data.checks.items()
    }
    return body.model_copy(update={"data": body.data.model_copy(update={"checks": checks})})
