"""Fixtures of the cost-tracker tests: a store of each kind, and a running cost-tracker on the memory bus with
a recorder standing in for the router (budget.status), a settable clock and helpers to send usage and ask."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import Envelope, Message
from contracts import costs as cc
from contracts.enums import IntentType, Provider
from contracts.messages import BudgetStatus, Notify, Usage, UsageRecorded
from contracts.routing import COST_TRACKER, ROUTER
from libs.bus import RedeliveryPolicy
from libs.bus.memory import MemoryBus
from services.cost_tracker.config import CostTrackerSettings
from services.cost_tracker.pg_store import PostgresStore
from services.cost_tracker.service import CostTracker
from services.cost_tracker.store import CostStore, MemoryStore
from tests.fixtures import waiting

# The original plan's flat rates (tests/fixtures/seed_prices.toml), not the list prices `make prices` writes.
SEED_PRICES = Path(__file__).resolve().parents[1] / "fixtures" / "seed_prices.toml"
STORES = [pytest.param("memory"), pytest.param("postgres", marks=pytest.mark.integration)]
FAST = RedeliveryPolicy(max_deliveries=3, base_s=0.01, cap_s=0.05)
WAIT_S = 5.0
ALICE, BOB, ADMIN = "alice", "bob", "admin"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT_S) -> None:
    """Wait until `check()` is true (fails the test after `timeout`)."""
    await waiting.eventually(check, timeout)


def tracker_settings(**overrides: Any) -> CostTrackerSettings:
    values: dict[str, Any] = {
        "database_url": None,
        "cost_sweep_interval_s": 3600.0,  # tests sweep by hand
        "cost_threshold_refresh_s": 0.0,
        "cost_alert_retry_base_s": 0.05,
        "cost_alert_retry_cap_s": 0.2,
        "cost_alert_channel_timeout_s": 2.0,
        "cost_price_file": SEED_PRICES,
        **overrides,
    }
    return CostTrackerSettings(**values)


def usage(
    user_id: str = ALICE,
    provider: Provider = Provider.AZURE,
    model: str = "gpt-4",
    prompt: int = 1000,
    completion: int = 500,
    *,
    workflow_id: uuid.UUID | None = None,
    workflow_type: IntentType = IntentType.CONTENT_PLANNING,
    estimated: bool = False,
    cached: int = 0,
    at: datetime | None = None,
    notify: Notify | None = None,
) -> Envelope:
    """A usage.recorded as a worker publishes it (a child of its generation request)."""
    payload = UsageRecorded(
        provider=provider,
        model=model,
        usage=Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            estimated=estimated,
            cached_prompt_tokens=cached,
        ),
        workflow_type=workflow_type,
        generation_id=uuid.uuid4(),
        notify=notify,
    )
    envelope = Envelope.new(payload, workflow_id=workflow_id or uuid.uuid4(), user_id=user_id)
    return envelope.model_copy(update={"occurred_at": at}) if at is not None else envelope


# kind (and a change's op) → its request type in contracts.costs.
_REQUESTS: dict[tuple[str, str], type[cc.CostRequest]] = {
    ("stats", "list"): cc.CostStatsQuery,
    ("breakdown", "list"): cc.CostBreakdownQuery,
    ("campaign", "list"): cc.CampaignCostsQuery,
    ("workflow", "list"): cc.WorkflowCostQuery,
    ("thresholds", "list"): cc.ThresholdsQuery,
    ("thresholds", "create"): cc.ThresholdCreate,
    ("thresholds", "update"): cc.ThresholdUpdate,
    ("alerts", "list"): cc.AlertsQuery,
    ("alerts", "create"): cc.AlertCreate,
    ("alerts", "update"): cc.AlertUpdate,
    ("destination", "list"): cc.AlertDestinationQuery,
    ("destination", "update"): cc.AlertDestinationUpdate,
    ("policies", "list"): cc.PoliciesQuery,
    ("policies", "apply"): cc.PolicyApply,
    ("policies", "revert"): cc.PolicyRevert,
    ("optimize", "list"): cc.AutoOptimizeQuery,
    ("optimize", "update"): cc.AutoOptimizeUpdate,
    ("experiments", "list"): cc.ExperimentsQuery,
    ("experiments", "create"): cc.ExperimentCreate,
    ("experiments", "results"): cc.ExperimentResultsQuery,
    ("experiments", "stop"): cc.ExperimentStop,
    ("forecast", "list"): cc.CostForecastQuery,
    ("optimization", "list"): cc.CostOptimizationQuery,
}


def cost_request(kind: str, params: dict[str, Any], user: str) -> cc.CostRequest:
    """The typed request of `kind` ("campaign" with a workflow_id: the workflow's) from user `user`; a bad
    parameter raises pydantic's ValidationError, as building it in the gateway would."""
    fields = dict(params)
    op = fields.pop("op", "list")
    if kind == "campaign" and "workflow_id" in fields:
        kind = "workflow"
    requester = {"user_id": user, "is_admin": user == ADMIN}
    return _REQUESTS[kind, op].model_validate({**fields, "requester": requester})


@dataclass(frozen=True)
class Reply:
    """A cost reply, its data as JSON (what the gateway's models read)."""

    code: str | None
    error: str | None
    data: Any

    @property
    def ok(self) -> bool:
        return self.code is None


@dataclass
class Clock:
    """A settable UTC clock (None: the real time)."""

    at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


@dataclass
class Harness:
    bus: MemoryBus
    tracker: CostTracker
    clock: Clock
    budgets: list[BudgetStatus] = field(default_factory=list)
    budget_envelopes: list[Envelope] = field(default_factory=list)
    policies: list[cc.RoutingPolicy] = field(default_factory=list)

    async def on_budget(self, envelope: Envelope) -> Message | None:
        assert isinstance(envelope.payload, BudgetStatus)
        self.budgets.append(envelope.payload)
        self.budget_envelopes.append(envelope)
        return None

    async def on_policy(self, envelope: Envelope) -> Message | None:
        assert isinstance(envelope.payload, cc.RoutingPolicy)
        self.policies.append(envelope.payload)
        return None

    async def record(self, *envelopes: Envelope) -> None:
        """Hand usage messages to the handler (as the bus does) and wait for nothing else."""
        for envelope in envelopes:
            await self.tracker.accounting.on_usage(envelope)

    async def ask(self, kind: str, params: dict[str, Any] | None = None, *, user: str = ALICE) -> Reply:
        """Ask over the bus, as the gateway does: `kind` and snake_case `params` name the typed request."""
        query = cost_request(kind, params or {}, user)
        reply = await self.bus.request(Envelope.new(query, user_id=user), timeout=WAIT_S)
        assert isinstance(reply.payload, query.REPLY)
        data = getattr(reply.payload, "data", None)
        return Reply(reply.payload.code, reply.payload.error, data.model_dump(mode="json") if data else None)

    async def data(self, kind: str, params: dict[str, Any] | None = None, *, user: str = ALICE) -> Any:
        reply = await self.ask(kind, params, user=user)
        assert reply.ok, reply.error
        return reply.data


async def start_harness(
    store: CostStore, settings: CostTrackerSettings, *, bus: MemoryBus | None = None, clock: Clock | None = None
) -> Harness:
    bus = bus or MemoryBus(policy=FAST)
    await bus.connect()
    clock = clock or Clock()
    tracker = CostTracker.build(bus, settings, store, clock=clock)
    harness = Harness(bus, tracker, clock)
    await tracker.start()
    await bus.subscribe(COST_TRACKER, tracker.handlers())
    return harness


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CostStore]:
    """A not yet started store: in memory, or on PostgreSQL in a throw-away schema."""
    if request.param == "memory":
        yield MemoryStore()
    else:
        yield PostgresStore(request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("pg_schema"))


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the cost-tracker's settings."""
    return {}


@pytest.fixture
async def harness(store: CostStore, settings_overrides: dict[str, Any]) -> AsyncIterator[Harness]:
    running = await start_harness(store, tracker_settings(**settings_overrides))
    await running.bus.subscribe(
        ROUTER, {BudgetStatus.TYPE: running.on_budget, cc.RoutingPolicy.TYPE: running.on_policy}
    )
    yield running
    await running.bus.close(grace_s=1)
    await running.tracker.stop()
