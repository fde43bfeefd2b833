"""Run services: each as its own process, or several together in one (the embedded mode).

`serve` owns the lifecycle: telemetry and logging, the bus connection, the services' start hooks, the
health server, and on SIGTERM/SIGINT the drain — readiness off, stop taking messages, let in-flight
handlers finish, then the services' stop hooks.

`run_main` is every entry point's outer shell: a configuration mistake (libs.config.ConfigError — a bad or
missing setting, a port in use) ends the process with one line on stderr, `<name>: VARIABLE: problem`, and
exit status 2, instead of a traceback an operator has to read (and that could quote a secret).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog
import uvloop

from libs.bus import create_bus
from libs.config import CONFIG_EXIT_STATUS, CommonSettings, ConfigError, bind_error, load_settings
from libs.runtime.health import HealthServer
from libs.runtime.metrics_http import MetricsEndpoint
from libs.runtime.service import Runtime, Service, ServiceFactory, Shared
from libs.secrets_manager import resolve_secret_references
from libs.telemetry import configure_logging, setup_telemetry, shutdown_telemetry
from libs.telemetry.instrumentation import instrument_libraries, uninstrument_libraries

log = structlog.get_logger("libs.runtime")


async def serve(
    factories: Sequence[ServiceFactory],
    *,
    name: str,
    settings: CommonSettings | None = None,
    shared: Shared | None = None,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
    owns_process: bool = False,
) -> None:
    """Run `factories`' services until SIGTERM/SIGINT (or `stop` is set), then drain and exit. `shared`:
    what the runner shares with them (it also receives every health check and the gateway's URL).
    `owns_process`: nothing else runs in this process, so what start-up built is frozen (freeze_heap)."""
    await resolve_secret_references()  # before any setting is read: a value may be a Secrets Manager reference
    settings = settings or load_settings(CommonSettings)
    owns_telemetry = setup_telemetry(name)
    configure_logging(name)
    instrumented = instrument_libraries()
    # Before anything records a measurement: a reader attached later misses what came before it.
    metrics_endpoint = MetricsEndpoint() if settings.metrics_port is not None else None
    if metrics_endpoint is not None and settings.metrics_port is not None:
        try:
            await metrics_endpoint.start(settings.metrics_port)
        except OSError as exc:
            raise bind_error("METRICS_PORT", "0.0.0.0", settings.metrics_port, exc) from None
    bus = create_bus(settings.bus_url, namespace=settings.bus_namespace)
    await bus.connect()
    shared = shared or Shared()
    runtime = Runtime(bus=bus, settings=settings, shared=shared)
    services: list[Service] = []
    health = HealthServer({"bus": bus.ping})
    # Every in-process check, for whoever aggregates health (the gateway, in the embedded mode).
    shared.health_checks = health.checks
    try:
        for factory in factories:
            service = await factory(runtime)
            services.append(service)
            health.checks.update({f"{service.name}.{k}": check for k, check in service.checks.items()})
            health.checks.update({f"{service.name}.{k}": report for k, report in service.reports.items()})
            health.reports.update(f"{service.name}.{k}" for k in service.reports)
            await service.start(runtime)
        try:
            port = await health.start(settings.health_port, settings.health_host)
        except OSError as exc:
            raise bind_error("HEALTH_PORT", settings.health_host, settings.health_port, exc) from None
        if owns_process:
            freeze_heap()
        log.info("service.started", services=[s.name for s in services], health_port=port, bus=bus.system)
        if started is not None:
            started.set()
        await _until_stopped(stop)
        log.info("service.draining", grace_s=settings.shutdown_grace_s)
        health.draining = True
    finally:
        await bus.close(grace_s=settings.shutdown_grace_s)
        for service in reversed(services):
            await service.stop()
        await health.stop()
        if metrics_endpoint is not None:
            await metrics_endpoint.stop()
        log.info("service.stopped")
        uninstrument_libraries(instrumented)
        if owns_telemetry:
            shutdown_telemetry()


def freeze_heap() -> None:
    """Take what start-up built — modules, models and their schemas, instruments, pools — out of the cyclic
    collector's sight (gc.freeze, after one last collection). Otherwise every full collection, a few times a
    minute under load, walks all of it again to free nothing: 100 to 300 ms with the event loop stopped, the
    router's status answers held behind it (measured in the campaign bench)."""
    gc.collect()
    gc.freeze()


async def _until_stopped(stop: asyncio.Event | None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # Only the main thread can take signals: a system run in another thread (the console's browser tests,
    # whose own thread drives the browser) is stopped by `stop` alone.
    signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_loop(main: Coroutine[Any, Any, None], event_loop: str | None = None) -> None:
    """Run `main` to completion on the event loop EVENT_LOOP names (default uvloop: the same asyncio API on
    libuv, which costs markedly less CPU per message in these services — see README, Performance)."""
    try:
        chosen = event_loop or load_settings(CommonSettings).event_loop
    except ConfigError:
        main.close()  # never started: closing it spares a "never awaited" warning on stderr
        raise
    if chosen == "uvloop":
        uvloop.run(main)
    else:
        asyncio.run(main)


def run_main(main: Coroutine[Any, Any, None], name: str) -> None:
    """Run `main` (run_loop); a ConfigError ends the process with one line on stderr and exit status 2."""
    try:
        run_loop(main)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_EXIT_STATUS) from None


def main(factory: ServiceFactory, name: str) -> None:
    """Entry point of `python -m services.<name>`."""
    run_main(serve([factory], name=name, owns_process=True), name)
