"""The router as a service: its store (PostgreSQL when DATABASE_URL is set, else in memory), breakers,
fallback matrix and handlers, declared for libs.runtime (own process or embedded)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from libs.runtime import Runtime, Service
from libs.telemetry import get_logger, register_circuit_state
from services.router.breaker import Breakers
from services.router.config import RouterSettings
from services.router.constants import DEADLINE_SWEEP_BATCH, PURGE_BATCH, PURGE_INTERVAL_S, SERVICE_NAME
from services.router.engine import Engine
from services.router.fallback import FallbackMatrix
from services.router.handlers import Router, utcnow
from services.router.pg_store import PostgresStore
from services.router.store import MemoryStore, WorkflowStore

log = get_logger(__name__)

STORE_RESOURCE = "router.store"  # Runtime.resources key under which a caller may hand in a store


def build_store(settings: RouterSettings) -> WorkflowStore:
    if settings.database_url:
        return PostgresStore(settings.database_url, pool_size=settings.database_pool_size)
    return MemoryStore()


def build_router(runtime: Runtime, settings: RouterSettings, store: WorkflowStore) -> Router:
    breakers = Breakers(
        failure_threshold=settings.router_breaker_failure_threshold,
        open_s=settings.router_breaker_open_s,
        probe_timeout_s=settings.router_breaker_probe_timeout_s,
    )
    register_circuit_state(breakers.states)
    engine = Engine(settings, FallbackMatrix.from_overrides(settings.router_fallback_matrix), breakers)
    return Router(runtime.bus, store, engine)


async def _purge_forever(store: WorkflowStore, retention: timedelta) -> None:
    """Forget handled message ids older than the retention, in short batches, once per interval."""
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        try:
            while await store.purge_processed(utcnow() - retention, PURGE_BATCH) == PURGE_BATCH:
                pass
        except Exception as exc:  # the next run retries; a failed purge must not stop the router
            log.warning("processed.purge_failed", error=f"{type(exc).__name__}: {exc}")


async def sweep_deadlines_forever(router: Router, interval_s: float) -> None:
    """Fail the workflows past their deadline, once per interval (at once again after a full batch)."""
    while True:
        try:
            if await router.fail_overdue() == DEADLINE_SWEEP_BATCH:
                continue
        except Exception as exc:  # the next pass retries; a failed pass must not stop the router
            log.warning("deadline.sweep_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval_s)


async def create(runtime: Runtime) -> Service:
    settings = runtime.settings_as(RouterSettings)
    store: WorkflowStore = runtime.resources.get(STORE_RESOURCE) or build_store(settings)
    router = build_router(runtime, settings, store)
    background: list[asyncio.Task[None]] = []

    async def start() -> None:
        await store.start()
        retention = timedelta(hours=settings.router_processed_retention_h)
        background.append(asyncio.create_task(_purge_forever(store, retention), name="router.purge"))
        sweep = sweep_deadlines_forever(router, settings.router_deadline_sweep_s)
        background.append(asyncio.create_task(sweep, name="router.deadline_sweep"))

    async def stop() -> None:
        await router.close()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()

    return Service(
        name=SERVICE_NAME,
        handlers=router.handlers(),
        on_start=[start],
        on_stop=[stop],
        checks={"database": store.ping},
    )
