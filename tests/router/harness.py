"""A router on the memory bus with scripted fake workers and a sink for what it finally publishes.

The fake workers subscribe as "azure-worker" / "openai-worker" and answer each generation.requested with
the next outcome scripted for their provider, as children of the request (as the real workers do). Like
the real workers they remember what they answered per request id, so a re-published request is answered
from that cache and counts as one provider call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from contracts import Envelope, Message
from contracts.enums import ErrorType, IntentType, Provider
from contracts.messages import (
    ErrorInfo,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    Intent,
    Notify,
    Recipient,
    Usage,
    WorkflowAccepted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRequested,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowView,
)
from contracts.routing import AZURE_WORKER, COST_TRACKER, OPENAI_WORKER, ROUTER
from libs.bus import RedeliveryPolicy
from libs.bus.memory import MemoryBus
from libs.flags import FlagClient
from libs.runtime import Runtime
from services.router.config import RouterSettings
from services.router.fallback import RuleOverride
from services.router.handlers import Router
from services.router.service import build_router, sweep_deadlines_forever
from services.router.store import WorkflowStore

FAST_REDELIVERY = RedeliveryPolicy(max_deliveries=5, base_s=0.01, cap_s=0.05)
WAIT_S = 10.0
SWEEP_S = 0.02  # the deadline sweep's interval: deadlines of a fraction of a second are tested

# Short delays so that every matrix row runs in well under a second.
TEST_MATRIX = {
    "azure_timeout": RuleOverride(delay_s=0.02),
    "azure_rate_limited": RuleOverride(delay_s=0.02),
    "openai_timeout": RuleOverride(delay_s=0.02),
    "openai_rate_limited": RuleOverride(delay_s=0.3),
    "provider_unavailable": RuleOverride(delay_s=0.02),
}


def router_settings(**overrides: object) -> RouterSettings:
    values: dict[str, object] = {
        "database_url": None,
        "router_workflow_deadline_s": 5.0,
        "router_fallback_matrix": TEST_MATRIX,
        "azure_timeout_s": 2.0,
        "openai_timeout_s": 2.0,
        "router_breaker_failure_threshold": 3,
        "router_breaker_open_s": 0.3,
        "router_budget_refresh_s": 0.0,
    }
    values.update(overrides)
    return RouterSettings(**values)  # type: ignore[arg-type]


class RecordingBus(MemoryBus):
    """The memory bus, keeping every envelope published through it, in order: what the services sent."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.published: list[Envelope] = []

    async def publish(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        self.published.append(envelope)
        await super().publish(envelope, delay=delay)

    def of_type(self, kind: type[Message], workflow_id: uuid.UUID | None = None) -> list[Envelope]:
        """The envelopes of `kind` published so far (of one workflow, if given)."""
        return [
            e
            for e in self.published
            if isinstance(e.payload, kind) and (workflow_id is None or e.workflow_id == workflow_id)
        ]


Outcome = Callable[[Envelope], Message | None]
"""What a fake worker answers to one request; None: it never answers (a hung call)."""


def ok(text: str = "generated text", *, after_s: float = 0.0, notifies: bool = True) -> Outcome:
    """A completed generation. Like the real worker, it says its usage told the request's `notify` the cost
    when the request had one (`notifies` False: a worker that did not, e.g. after a refused draft)."""

    def answer(request: Envelope) -> Message:
        assert isinstance(request.payload, GenerationRequested)
        provider = request.payload.provider
        usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
        return GenerationCompleted(
            provider=provider,
            model=f"{provider.value}-model",
            content=text,
            usage=usage,
            latency_ms=after_s * 1000,
            cost_notified=notifies and request.payload.notify is not None,
        )

    answer.after_s = after_s  # type: ignore[attr-defined]
    return answer


def fail(
    error_type: ErrorType,
    *,
    retryable: bool = True,
    retry_after_s: float | None = None,
    status_code: int | None = None,
) -> Outcome:
    def answer(request: Envelope) -> Message:
        error = ErrorInfo(
            type=error_type,
            message=f"scripted {error_type.value}",
            retryable=retryable,
            retry_after_s=retry_after_s,
            status_code=status_code,
        )
        return GenerationFailed(provider=request.payload.provider, error=error, latency_ms=1.0)  # type: ignore[attr-defined]

    return answer


def hang() -> Outcome:
    return lambda request: None


@dataclass
class Call:
    request: Envelope
    at: float  # time.monotonic() when the worker got it


@dataclass
class FakeWorkers:
    bus: MemoryBus
    scripts: dict[Provider, list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    calls: dict[Provider, list[Call]] = field(default_factory=lambda: defaultdict(list))
    answered: dict[uuid.UUID, Envelope] = field(default_factory=dict)

    def script(self, provider: Provider, *outcomes: Outcome) -> None:
        """Answer the next requests to `provider` with `outcomes`; the last one repeats."""
        self.scripts[provider] = list(outcomes)

    async def start(self) -> None:
        for service, provider in ((AZURE_WORKER, Provider.AZURE), (OPENAI_WORKER, Provider.OPENAI)):
            await self.bus.subscribe(service, {"generation.requested": self._handler(provider)})

    def _handler(self, provider: Provider) -> Callable[[Envelope], asyncio.Future[None]]:
        async def handle(request: Envelope) -> None:
            cached = self.answered.get(request.id)
            if cached is not None:
                await self.bus.publish(cached)
                return
            self.calls[provider].append(Call(request, time.monotonic()))
            script = self.scripts[provider] or [ok()]
            outcome = script.pop(0) if len(script) > 1 else script[0]
            await asyncio.sleep(getattr(outcome, "after_s", 0.0))
            payload = outcome(request)
            if payload is None:
                return
            answer = request.child(payload)
            self.answered[request.id] = answer
            await self.bus.publish(answer)

        return handle  # type: ignore[return-value]


@dataclass
class Sink:
    """Stands in for the cost-tracker: collects workflow.completed / workflow.failed."""

    bus: MemoryBus
    finished: dict[uuid.UUID, list[Envelope]] = field(default_factory=lambda: defaultdict(list))
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> None:
        handlers = {WorkflowCompleted.TYPE: self._collect, WorkflowFailed.TYPE: self._collect}
        await self.bus.subscribe(COST_TRACKER, handlers)

    async def _collect(self, envelope: Envelope) -> None:
        assert envelope.workflow_id is not None
        async with self._arrived:
            self.finished[envelope.workflow_id].append(envelope)
            self._arrived.notify_all()

    async def wait(self, workflow_id: uuid.UUID, timeout: float = WAIT_S) -> Envelope:
        """The first workflow.completed / workflow.failed of `workflow_id`."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: bool(self.finished[workflow_id])), timeout)
        return self.finished[workflow_id][0]


@dataclass
class Harness:
    bus: RecordingBus
    store: WorkflowStore
    router: Router
    workers: FakeWorkers
    sink: Sink
    sweep: asyncio.Task[None] | None = None

    def start_sweep(self) -> None:
        """The router's deadline sweep, as the service runs it, at SWEEP_S."""
        self.sweep = asyncio.create_task(sweep_deadlines_forever(self.router, SWEEP_S))

    @classmethod
    async def start(cls, store: WorkflowStore, settings: RouterSettings, flags: FlagClient | None = None) -> Harness:
        bus = RecordingBus(policy=FAST_REDELIVERY)
        await bus.connect()
        router = build_router(Runtime(bus=bus, settings=settings), settings, store, flags)
        await bus.subscribe(ROUTER, router.handlers())
        workers, sink = FakeWorkers(bus), Sink(bus)
        await workers.start()
        await sink.start()
        harness = cls(bus, store, router, workers, sink)
        harness.start_sweep()
        return harness

    async def stop_sweep(self) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sweep

    async def close(self) -> None:
        await self.stop_sweep()
        await self.bus.close(grace_s=1.0)

    async def request(
        self,
        intent: Intent,
        *,
        user: str = "user-1",
        workflow_id: uuid.UUID | None = None,
        deadline_s: float | None = None,
        recipients: tuple[Recipient, ...] = (),
        callback_url: str | None = None,
        account_id: str | None = None,
        notify: Notify | None = None,
    ) -> WorkflowAccepted:
        request = WorkflowRequested(intent=intent, deadline_s=deadline_s, trace_id="0" * 32,
                                    recipients=list(recipients), callback_url=callback_url,
                                    account_id=account_id, notify=notify)  # fmt: skip
        envelope = Envelope.new(
            request,
            workflow_id=workflow_id or uuid.uuid4(),
            user_id=user,
        )
        reply = await self.bus.request(envelope, timeout=WAIT_S)
        assert isinstance(reply.payload, WorkflowAccepted)
        return reply.payload

    async def run(self, intent: Intent, **kwargs: object) -> tuple[WorkflowView, Envelope]:
        """Request a workflow and wait until it finished: its final view and its terminal message."""
        accepted = await self.request(intent, **kwargs)  # type: ignore[arg-type]
        assert accepted.accepted and accepted.workflow is not None, accepted.error
        finished = await self.sink.wait(accepted.workflow.workflow_id)
        view = await self.view(accepted.workflow.workflow_id)
        return view, finished

    async def status(
        self, workflow_id: uuid.UUID, user: str, *, admin: bool = False, wait_s: float | None = None
    ) -> WorkflowStatusReply:
        query = WorkflowStatusQuery(
            workflow_id=workflow_id, requester_user_id=user, requester_is_admin=admin, wait_s=wait_s
        )
        reply = await self.bus.request(Envelope.new(query, user_id=user), timeout=WAIT_S + (wait_s or 0))
        assert isinstance(reply.payload, WorkflowStatusReply)
        return reply.payload

    async def view(self, workflow_id: uuid.UUID) -> WorkflowView:
        workflow = await self.store.get(workflow_id)
        assert workflow is not None
        rows = await self.store.deliveries(workflow_id, after_seq=None, limit=100_000)
        next_open = await self.store.next_open(workflow_id)
        return workflow.to_view(tuple(rows), next_open.scheduled_for if next_open else None)


def intent(kind: IntentType = IntentType.MESSAGE_GENERATION, **fields: object) -> Intent:
    return Intent(type=kind, data={"prompt": "hello"}, **fields)
