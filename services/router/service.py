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
from services.router.constants import PURGE_BATCH, PURGE_INTERVAL_S, SERVICE_NAME
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


async def create(runtime: Runtime) -> Service:
    settings = runtime.settings_as(RouterSettings)
    store: WorkflowStore = runtime.resources.get(STORE_RESOURCE) or build_store(settings)
    router = build_router(runtime, settings, store)
    purge: list[asyncio.Task[None]] = []

    async def start() -> None:
        await store.start()
        retention = timedelta(hours=settings.router_processed_retention_h)
        purge.append(asyncio.create_task(_purge_forever(store, retention), name="router.purge"))

    async def stop() -> None:
        for task in purge:
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
