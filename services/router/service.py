"""The router as a service: its store (PostgreSQL when DATABASE_URL is set, else in memory), breakers,
fallback matrix and handlers, the feature flags (which hold deadlines while work is held), and the
completion-webhook sender on the same queue, declared for libs.runtime (own process or embedded)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from contracts.enums import Provider
from libs.flags import FlagClient, open_flag_client
from libs.llm.health import check_name
from libs.runtime import Check, Runtime, Service
from libs.runtime.periodic import in_batches_forever
from services.router.breaker import Breakers
from services.router.config import RouterSettings
from services.router.constants import DEADLINE_SWEEP_BATCH, PURGE_BATCH, PURGE_INTERVAL_S, SERVICE_NAME
from services.router.engine import Engine
from services.router.errors import Unhealthy
from services.router.fallback import FallbackMatrix
from services.router.handlers import Router, utcnow
from services.router.metrics import register_circuit_state
from services.router.pg_store import PostgresStore
from services.router.store import MemoryStore, WorkflowStore
from services.router.webhooks import WebhookSender


def build_store(settings: RouterSettings) -> WorkflowStore:
    if settings.database_url:
        return PostgresStore(settings.database_url, pool_size=settings.database_pool_size)
    return MemoryStore()


def build_router(
    runtime: Runtime,
    settings: RouterSettings,
    store: WorkflowStore,
    flags: FlagClient | None = None,
    breakers: Breakers | None = None,
) -> Router:
    breakers = breakers or build_breakers(settings)
    register_circuit_state(breakers.states)
    engine = Engine(settings, FallbackMatrix.from_overrides(settings.router_fallback_matrix), breakers)
    return Router(runtime.bus, store, engine, flags=flags)


def build_breakers(settings: RouterSettings) -> Breakers:
    return Breakers(
        failure_threshold=settings.router_breaker_failure_threshold,
        open_s=settings.router_breaker_open_s,
        probe_timeout_s=settings.router_breaker_probe_timeout_s,
    )


def health_reports(breakers: Breakers, flags: FlagClient, background: list[asyncio.Task[None]]) -> dict[str, Check]:
    """The router's health reports, named as the original plan names them: each provider's circuit
    (azureProvider, openaiProvider) and the orchestrator itself (work held by the kill switch, or a
    background task — the deadline sweep, the purge — that ended)."""

    def circuit(provider: Provider) -> Check:
        async def report() -> None:
            breakers[provider].raise_if_not_closed()

        return report

    async def orchestrator() -> None:
        held = flags.held()
        if held is not None:
            raise Unhealthy(f"new work is held: {held}")
        ended = [task.get_name() for task in background if task.done()]
        if ended:
            raise Unhealthy(f"background task ended: {', '.join(ended)}")

    return {**{check_name(p): circuit(p) for p in Provider}, "orchestrator": orchestrator}


def sweep_deadlines_forever(router: Router, interval_s: float) -> Coroutine[Any, Any, None]:
    """The deadline sweep: fail the workflows past their deadline (Router.fail_overdue), every `interval_s`."""
    return in_batches_forever(router.fail_overdue, DEADLINE_SWEEP_BATCH, interval_s, "deadline.sweep_failed")


async def create(runtime: Runtime, *, store: WorkflowStore | None = None) -> Service:
    """The router on `store` (handed in by tests), else on the store its settings name."""
    settings = runtime.settings_as(RouterSettings)
    store = store or build_store(settings)
    flags = open_flag_client(settings, store=runtime.shared.flag_store)
    breakers = build_breakers(settings)
    router = build_router(runtime, settings, store, flags, breakers)
    webhooks = WebhookSender(runtime.bus, settings)
    background: list[asyncio.Task[None]] = []

    async def start() -> None:
        await store.start()
        await flags.start()
        await webhooks.start()
        retention = timedelta(hours=settings.router_processed_retention_h)

        async def purge() -> int:  # handled message ids older than the retention
            return await store.purge_processed(utcnow() - retention, PURGE_BATCH)

        purging = in_batches_forever(purge, PURGE_BATCH, PURGE_INTERVAL_S, "processed.purge_failed")
        background.append(asyncio.create_task(purging, name="router.purge"))
        sweep = sweep_deadlines_forever(router, settings.router_deadline_sweep_s)
        background.append(asyncio.create_task(sweep, name="router.deadline_sweep"))

    async def stop() -> None:
        await router.close()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await webhooks.close()
        await flags.stop()
        await store.close()

    return Service(
        name=SERVICE_NAME,
        handlers={**router.handlers(), **webhooks.handlers()},
        on_start=[start],
        on_stop=[stop],
        checks={"database": store.ping},
        reports=health_reports(breakers, flags, background),
    )
