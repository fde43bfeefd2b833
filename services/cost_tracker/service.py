"""The cost-tracker as a service: its store (PostgreSQL when DATABASE_URL is set, else in memory), price
table, thresholds, alert channels and handlers, declared for libs.runtime (own process or embedded).

`create(runtime)` takes the CostTrackerSettings handed to it (tests), else the runtime's settings when they
are CostTrackerSettings, else the environment; a store may be handed to it too.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from contracts.messages import (
    CostAlert,
    UsageRecorded,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
)
from contracts.routing import COST_TRACKER
from libs.bus import Bus, Handler
from libs.runtime import Runtime, Service
from libs.telemetry import get_logger
from services.cost_tracker.accounting import Accounting
from services.cost_tracker.auto_optimize import AutoOptimizer
from services.cost_tracker.channels import Channels, configured_channels
from services.cost_tracker.config import CostTrackerSettings
from services.cost_tracker.constants import UNPUBLISHED_GRACE_S
from services.cost_tracker.destinations import Destinations
from services.cost_tracker.experiments import ExperimentDesk
from services.cost_tracker.limits import Clock, Limits, ThresholdBook, utcnow
from services.cost_tracker.manage import Management
from services.cost_tracker.notify import Notifier
from services.cost_tracker.pg_store import PostgresStore
from services.cost_tracker.policies import Policies
from services.cost_tracker.prices import PriceTable, load_price_table
from services.cost_tracker.queries import Queries
from services.cost_tracker.reports import Reports
from services.cost_tracker.store import CostStore, MemoryStore

log = get_logger(__name__)


def build_store(settings: CostTrackerSettings) -> CostStore:
    if settings.database_url:
        return PostgresStore(settings.database_url, pool_size=settings.database_pool_size)
    return MemoryStore()


@dataclass
class CostTracker:
    """Every part of one cost-tracker, wired together."""

    settings: CostTrackerSettings
    store: CostStore
    prices: PriceTable
    limits: Limits
    accounting: Accounting
    queries: Queries
    channels: Channels
    notifier: Notifier
    policies: Policies
    auto: AutoOptimizer
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, bus: Bus, settings: CostTrackerSettings, store: CostStore, *, clock: Clock = utcnow) -> CostTracker:
        """A cost-tracker on `bus` and `store`; `clock` (UTC now) decides periods and timestamps."""
        prices = load_price_table(settings.cost_price_file, settings.cost_prices)
        book = ThresholdBook(
            store,
            refresh_s=settings.cost_threshold_refresh_s,
            default_daily_budget=settings.cost_default_user_daily_budget_usd,
        )
        limits = Limits(
            bus,
            store,
            book,
            configured_channels=configured_channels(settings),
            alert_hourly_limit=settings.cost_alert_scope_hourly_limit,
            clock=clock,
        )
        channels = Channels()
        reports = Reports(store, prices)
        policies = Policies(bus, store, reports, republish_s=settings.cost_budget_republish_s)
        auto = AutoOptimizer(store, reports, policies, recheck_s=settings.cost_budget_republish_s, clock=clock)
        return cls(
            settings=settings,
            store=store,
            prices=prices,
            limits=limits,
            accounting=Accounting(store, prices, limits, bus=bus),
            queries=Queries(
                reports,
                Management(store, limits, max_thresholds_per_user=settings.cost_max_thresholds_per_user),
                Destinations(store, allow_local_http=settings.webhook_allow_local_http),
                policies,
                ExperimentDesk(store, prices, policies),
                auto,
                clock=clock,
            ),
            channels=channels,
            notifier=Notifier(bus, store, channels, settings, clock=clock),
            policies=policies,
            auto=auto,
        )

    def handlers(self) -> dict[str, Handler]:
        return {
            UsageRecorded.TYPE: self.accounting.on_usage,
            WorkflowCompleted.TYPE: self.accounting.on_workflow_end,
            WorkflowFailed.TYPE: self.accounting.on_workflow_end,
            WorkflowCancelled.TYPE: self.accounting.on_workflow_end,
            CostAlert.TYPE: self.notifier.on_alert,
            **self.queries.handlers(),  # the gateway's cost requests (contracts.costs)
        }

    async def start(self) -> None:
        await self.store.start()
        await self.limits.load()
        await self.channels.open(self.settings, self.store)
        await self._sweep_once()  # a period may have begun, or a publish been lost, while nothing ran
        self._tasks.append(asyncio.create_task(self._sweep_forever(), name="cost-tracker.sweep"))
        log.info("cost_tracker.started", channels=sorted(self.channels), store=type(self.store).__name__)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.channels.close()
        await self.store.close()

    async def sweep(self) -> None:
        await self.limits.sweep(
            unpublished_grace_s=UNPUBLISHED_GRACE_S, republish_s=self.settings.cost_budget_republish_s
        )
        await self.auto.evaluate()
        await self.policies.republish_due()

    async def _sweep_once(self) -> None:
        try:
            await self.sweep()
        except Exception as exc:  # the next sweep retries; a failed one must not stop the service
            log.warning("cost.sweep.failed", error=f"{type(exc).__name__}: {exc}")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cost_sweep_interval_s)
            await self._sweep_once()


async def create(
    runtime: Runtime, *, settings: CostTrackerSettings | None = None, store: CostStore | None = None
) -> Service:
    settings = runtime.settings_as(CostTrackerSettings, settings)
    store = store or build_store(settings)
    tracker = CostTracker.build(runtime.bus, settings, store)
    return Service(
        name=COST_TRACKER,
        handlers=tracker.handlers(),
        on_start=[tracker.start],
        on_stop=[tracker.stop],
        checks={"database": store.ping},
    )
