"""Fixtures of the worker tests: the memory bus with recorders standing in for the router and the
cost-tracker, the real LLM simulator, workers started through their services' `create`, and a canned
provider for answers the simulator does not give (4xx bodies, completions without usage)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from contracts import Envelope, Message
from contracts.enums import IntentType, Provider
from contracts.messages import GenerationCompleted, GenerationFailed, GenerationRequested, Intent, UsageRecorded
from contracts.routing import COST_TRACKER, ROUTER
from libs.bus import RedeliveryPolicy
from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.runtime import Runtime, Service, Shared
from libs.simulators import LLMSimulator
from services.azure_worker.config import AzureWorkerSettings
from services.azure_worker.service import create as create_azure
from services.openai_worker.config import OpenAIWorkerSettings
from services.openai_worker.service import create as create_openai

FAST = RedeliveryPolicy(max_deliveries=3, base_s=0.05, cap_s=0.2)
WAIT_S = 5.0
# An independent copy of the tokenizer the simulator documents: words and single punctuation marks.
TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


def generation_request(
    provider: Provider,
    intent_type: IntentType = IntentType.CONTENT_PLANNING,
    *,
    timeout_s: float = 30.0,
    model: str | None = None,
    data: dict[str, Any] | None = None,
) -> Envelope:
    intent = Intent(
        type=intent_type,
        data=data if data is not None else {"topic": "Beach shoot with summer vibes"},
        platforms=["onlyfans", "instagram"],
        content_type="photo",
    )
    payload = GenerationRequested(provider=provider, intent=intent, timeout_s=timeout_s, model=model)
    return Envelope.new(payload, workflow_id=uuid.uuid4(), user_id="creator-1")


@dataclass
class Recorder:
    """What the workers published, as the router and the cost-tracker received it."""

    received: list[Envelope] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, envelope: Envelope) -> Message | None:
        async with self._arrived:
            self.received.append(envelope)
            self._arrived.notify_all()
        return None

    def of(self, type_: str) -> list[Envelope]:
        return [e for e in self.received if e.type == type_]

    async def wait_for(self, type_: str, count: int = 1, timeout: float = WAIT_S) -> list[Envelope]:
        """The first `count` messages of `type_` (waiting for them to arrive)."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.of(type_)) >= count), timeout)
        return self.of(type_)[:count]

    async def result(self, timeout: float = WAIT_S) -> Envelope:
        """The one generation.completed or generation.failed that arrived."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: bool(self.results())), timeout)
        (only,) = self.results()
        return only

    def results(self) -> list[Envelope]:
        return self.of(GenerationCompleted.TYPE) + self.of(GenerationFailed.TYPE)

    async def settle(self) -> None:
        """Let messages already on the memory bus reach the recorder (a worker publishes usage first)."""
        for _ in range(20):
            await asyncio.sleep(0.005)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus(policy=FAST)
    await memory.connect()
    yield memory
    await memory.close(grace_s=1)


@pytest.fixture
async def recorder(bus: MemoryBus) -> Recorder:
    recorder = Recorder()
    await bus.subscribe(ROUTER, {GenerationCompleted.TYPE: recorder.handle, GenerationFailed.TYPE: recorder.handle})
    await bus.subscribe(COST_TRACKER, {UsageRecorded.TYPE: recorder.handle})
    return recorder


@pytest.fixture
async def sim() -> AsyncIterator[LLMSimulator]:
    async with LLMSimulator() as simulator:
        yield simulator


StartWorker = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_worker(bus: MemoryBus, sim: LLMSimulator) -> AsyncIterator[StartWorker]:
    """Start a worker through its service's `create` (settings given explicitly, the simulator's URL as the
    runner passes it); stops every worker it started."""
    started: list[Service] = []

    async def start(provider: Provider, *, shared: Shared | None = None, **settings: Any) -> Service:
        shared = shared or Shared()
        shared.llm_simulator_url = sim.url
        runtime = Runtime(bus=bus, settings=CommonSettings(), shared=shared)
        # Explicit values win over the environment: a developer's real keys never reach a test.
        settings.setdefault("redis_url", None)
        if provider is Provider.AZURE:
            settings.setdefault("azure_openai_endpoint", None)
            service = await create_azure(runtime, settings=AzureWorkerSettings(**settings))
        else:
            settings.setdefault("openai_api_key", None)
            settings.setdefault("openai_base_url", None)
            service = await create_openai(runtime, settings=OpenAIWorkerSettings(**settings))
        await service.start(runtime)
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@dataclass
class CannedProvider:
    """An HTTP server answering every POST with the next queued (status, JSON body, headers), and keeping
    the requests it got — for provider answers the simulator cannot produce."""

    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    def respond(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.answers.append((status, body, headers or {}))

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path_qs, dict(request.headers), await request.json()))
        status, body, headers = self.answers.pop(0)
        return web.Response(status=status, body=orjson.dumps(body), headers=headers, content_type="application/json")


@pytest.fixture
async def canned() -> AsyncIterator[CannedProvider]:
    provider = CannedProvider()
    app = web.Application()
    app.router.add_post("/{tail:.*}", provider.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    provider.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield provider
    await runner.cleanup()


def completion_body(content: str | None, *, usage: bool = True, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat.completion body as OpenAI sends it."""
    body: dict[str, Any] = {
        "id": "chatcmpl-canned",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason,
            }
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return body
