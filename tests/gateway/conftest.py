"""Fixtures of the gateway tests: a real gateway on a free port over the MemoryBus, a fake router answering
its requests from a dict, and an HTTP client that checks every answer against the served OpenAPI document."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from contracts import Envelope
from contracts.costs import CallCost, WorkflowCost, WorkflowCostReply
from contracts.enums import IntentType, Priority, Provider, ProviderState, WorkflowStatus
from contracts.messages import (
    ErrorInfo,
    FallbackEntry,
    Notify,
    ProviderStates,
    RetryAttempts,
    Usage,
    WorkflowAccepted,
    WorkflowRequested,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowView,
)
from contracts.routing import ROUTER
from libs.bus import Bus
from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.runtime import Runtime, Service, Shared
from libs.telemetry import current_trace_id
from services.gateway import GatewaySettings, create, make_token

SECRET = "test-secret-for-the-gateway-tests-0123456789"
ALICE, BOB = "alice", "bob"
CAMPAIGN = "/api/v2/campaigns/hybrid"
STATUS = "/api/v2/campaigns/status"
HEALTH = "/api/health/hybrid-orchestrator"
OPENAPI = "/api/openapi.json"
PLAN = {"type": "content_planning", "data": {"theme": "beach"}, "platforms": ["onlyfans"], "priority": "high"}


@dataclass
class FakeRouter:
    """Answers workflow.requested and status queries like the router would, from a dict; records every
    message it receives (so a test can assert that nothing was published). With `told_cost` set it also
    tells a request's `notify` the end, and that cost as the cost-tracker would (settled unless
    `cost_settled` is false; `cost_calls`: the calls it lists); otherwise it is a router that does not tell."""

    seen: list[Envelope] = field(default_factory=list)
    trace_ids: list[str | None] = field(default_factory=list)
    workflows: dict[uuid.UUID, WorkflowView] = field(default_factory=dict)
    refuse_with: ErrorInfo | None = None
    finish_after_s: float | None = None  # complete (or fail, with fail_with) this long after acceptance
    fail_with: ErrorInfo | None = None
    told_cost: Decimal | None = None
    cost_settled: bool = True
    cost_calls: list[CallCost] | None = None
    lose_tells: bool = False  # answers `notifies` but its tells never arrive (lost, or the queue changed)
    bus: Bus | None = None  # what it tells through
    notify: dict[uuid.UUID, Notify] = field(default_factory=dict)
    _telling: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def requests(self) -> list[Envelope]:
        return [e for e in self.seen if isinstance(e.payload, WorkflowRequested)]

    async def on_requested(self, envelope: Envelope) -> WorkflowAccepted:
        self.seen.append(envelope)
        self.trace_ids.append(current_trace_id())
        payload = envelope.payload
        assert isinstance(payload, WorkflowRequested) and envelope.workflow_id and envelope.user_id
        if self.refuse_with is not None:
            return WorkflowAccepted(accepted=False, error=self.refuse_with)
        existing = self.workflows.get(envelope.workflow_id)
        if existing is not None:  # idempotent on workflow id, as the real router
            return WorkflowAccepted(accepted=True, workflow=existing)
        now = datetime.now(UTC)
        view = WorkflowView(
            workflow_id=envelope.workflow_id,
            user_id=envelope.user_id,
            status=WorkflowStatus.GENERATING,
            intent_type=payload.intent.type,
            priority=payload.intent.priority,
            current_provider=Provider.AZURE,
            provider_states=ProviderStates(azure=ProviderState.EXECUTING),
            retry_attempts=RetryAttempts(),
            trace_id=payload.trace_id,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(minutes=5),
        )
        self.workflows[view.workflow_id] = view
        if self.told_cost is not None and payload.notify is not None:
            self.notify[view.workflow_id] = payload.notify
        if self.finish_after_s is not None:
            asyncio.get_running_loop().call_later(self.finish_after_s, self._finish, view.workflow_id)
        return WorkflowAccepted(accepted=True, workflow=view, notifies=view.workflow_id in self.notify)

    async def on_status(self, envelope: Envelope) -> WorkflowStatusReply:
        self.seen.append(envelope)
        assert isinstance(envelope.payload, WorkflowStatusQuery)
        # Deliberately no ownership filter: the gateway must not rely on the router alone for it.
        view = self.workflows.get(envelope.payload.workflow_id)
        return WorkflowStatusReply(found=view is not None, workflow=view)

    def _finish(self, workflow_id: uuid.UUID) -> None:
        view = self.workflows[workflow_id]
        now = view.created_at + timedelta(milliseconds=1234)
        if self.fail_with is not None:
            changes: dict[str, Any] = {"status": WorkflowStatus.FAILED, "error": self.fail_with}
            changes["provider_states"] = ProviderStates(azure=ProviderState.TIMEOUT, openai=ProviderState.FAILED)
        else:
            changes = {
                "status": WorkflowStatus.COMPLETED,
                "result": "Mon: beach shoot. Tue: behind the scenes.",
                "model": "gpt-4",
                "usage": Usage(prompt_tokens=40, completion_tokens=60, total_tokens=100),
                "cost_usd": Decimal("0.001"),
                "provider_states": ProviderStates(azure=ProviderState.TIMEOUT, openai=ProviderState.COMPLETED),
                "current_provider": Provider.OPENAI,
                "fallback_history": [
                    FallbackEntry(from_provider=Provider.AZURE, to="openai", reason="azure_timeout", timestamp=now)
                ],
                "retry_attempts": RetryAttempts(azure=1),
            }
        self.workflows[workflow_id] = view.model_copy(update={**changes, "updated_at": now, "completed_at": now})
        notify = self.notify.get(workflow_id)
        if notify is not None and not self.lose_tells:
            task = asyncio.create_task(self._tell(notify, self.workflows[workflow_id]))
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)

    async def _tell(self, notify: Notify, view: WorkflowView) -> None:
        assert self.bus is not None and self.told_cost is not None
        end = Envelope.new(WorkflowStatusReply(found=True, workflow=view), workflow_id=view.workflow_id)
        await self.bus.reply(notify.reply_to, notify.end_correlation_id, end)
        cost = WorkflowCost(
            workflow_id=view.workflow_id, user_id=view.user_id, workflow_type=view.intent_type, status="completed",
            total_cost=self.told_cost, requests=1, prompt_tokens=40, completion_tokens=60, estimated_cost=Decimal(0),
            first_at=view.created_at, last_at=view.created_at, settled=self.cost_settled, calls=self.cost_calls,
        )  # fmt: skip
        told = Envelope.new(WorkflowCostReply(data=cost), workflow_id=view.workflow_id)
        await self.bus.reply(notify.reply_to, notify.cost_correlation_id, told)

    def add(self, user_id: str, status: WorkflowStatus = WorkflowStatus.GENERATING) -> WorkflowView:
        """A workflow stored directly (as if created earlier)."""
        now = datetime.now(UTC)
        view = WorkflowView(
            workflow_id=uuid.uuid4(),
            user_id=user_id,
            status=status,
            intent_type=IntentType.MESSAGE_GENERATION,
            priority=Priority.MEDIUM,
            provider_states=ProviderStates(),
            retry_attempts=RetryAttempts(),
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(minutes=5),
        )
        self.workflows[view.workflow_id] = view
        return view


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any


class Client:
    """HTTP calls to the gateway; each answer's status and body must be the ones the OpenAPI document gives."""

    def __init__(self, session: aiohttp.ClientSession, url: str, document: dict[str, Any]) -> None:
        self.session = session
        self.url = url
        self.document = document

    async def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = ALICE,
        role: str | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        documented: bool = True,
        **kwargs: Any,
    ) -> Answer:
        all_headers = dict(headers or {})
        if token is None and user is not None:
            token = make_token(SECRET, user, role=role)
        if token is not None:
            all_headers.setdefault("Authorization", f"Bearer {token}")
        async with self.session.request(method, self.url + path, headers=all_headers, **kwargs) as response:
            assert response.content_type == "application/json"
            answer = Answer(response.status, await response.json(), response.headers)
        if documented:
            self.check_documented(method, path, answer)
        return answer

    async def post(self, body: Any = None, *, params: dict[str, str] | None = None, **kwargs: Any) -> Answer:
        if body is not None:
            kwargs["json"] = body
        return await self.call("POST", CAMPAIGN, params=params, **kwargs)

    async def status(self, workflow_id: object, **kwargs: Any) -> Answer:
        return await self.call("GET", STATUS, params={"workflowId": str(workflow_id)}, **kwargs)

    def check_documented(self, method: str, path: str, answer: Answer) -> None:
        operation = self.document["paths"][path][method.lower()]
        assert str(answer.status) in operation["responses"], f"{method} {path} answered undocumented {answer.status}"
        schema = operation["responses"][str(answer.status)]["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.document["components"]})
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(answer.body)]
        assert not errors, f"{method} {path} {answer.status} does not match the document: {errors}"


@dataclass
class Harness:
    bus: Bus
    router: FakeRouter
    runtime: Runtime
    service: Service
    client: Client

    @property
    def url(self) -> str:
        return str(self.runtime.shared.gateway_url)


MakeGateway = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[MakeGateway]:
    """Start a gateway (and a fake router unless `router=False`) with settings overrides."""
    started: list[Harness] = []
    session = aiohttp.ClientSession()

    async def make(
        *, bus: Bus | None = None, router: bool = True, shared: Shared | None = None, **overrides: Any
    ) -> Harness:
        bus = bus or MemoryBus()
        await bus.connect()
        fake = FakeRouter(bus=bus)
        if router:
            await bus.subscribe(
                ROUTER, {"workflow.requested": fake.on_requested, "workflow.status.query": fake.on_status}
            )
        values: dict[str, Any] = {
            "gateway_host": "127.0.0.1",
            "gateway_port": 0,
            "gateway_jwt_secret": SECRET,
            "gateway_request_timeout_s": 1.0,
            "gateway_wait_timeout_s": 5.0,
            # Tests send many requests as one user; the per-user limit has its own tests (test_rate_limit.py).
            "gateway_rate_limit_rps": 10_000,
            "gateway_rate_limit_burst": 10_000,
            **overrides,
        }
        runtime = Runtime(bus=bus, settings=CommonSettings(), shared=shared or Shared())
        service = await create(runtime, settings=GatewaySettings(**values))
        await service.start(runtime)
        url = str(runtime.shared.gateway_url)
        async with session.get(url + OPENAPI) as response:
            document = await response.json()
        harness = Harness(bus, fake, runtime, service, Client(session, url, document))
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.service.stop()
        await harness.bus.close(grace_s=1)
    await session.close()


@pytest.fixture
async def gw(make_gateway: MakeGateway) -> Harness:
    return await make_gateway()
