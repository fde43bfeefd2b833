"""The whole delivery path on the memory bus: the real router, rate-limiter and of-sender, scripted fake
LLM workers (tests.router.harness) — or the real workers on the LLM simulator — and the platform simulator."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from contracts import Envelope, Message
from contracts.messages import GenerationCompleted, Intent, Usage, WorkflowView
from contracts.routing import ROUTER
from libs.config import CommonSettings
from libs.runtime import Runtime, Service, ServiceFactory, Shared
from libs.simulators import LLMSimulator, PlatformLimits, PlatformSimulator
from services.azure_worker.config import AzureWorkerSettings
from services.azure_worker.service import create as create_azure_worker
from services.of_sender.config import OfSenderSettings
from services.of_sender.service import create as create_of_sender
from services.openai_worker.config import OpenAIWorkerSettings
from services.openai_worker.service import create as create_openai_worker
from services.rate_limiter.config import RateLimiterSettings
from services.rate_limiter.service import create as create_rate_limiter
from services.router.service import build_router
from services.router.store import MemoryStore
from tests.router.harness import FAST_REDELIVERY, FakeWorkers, Harness, RecordingBus, Sink, router_settings

# Short limits: several windows pass in a second.
LIMIT, WINDOW_S, GAP_S = 2, 0.4, 0.15
LIMIT_ENV: dict[str, Any] = {
    "redis_url": None,
    "of_account_limit": LIMIT,
    "of_account_window_s": WINDOW_S,
    "of_recipient_min_interval_s": GAP_S,
    "of_safety_margin_s": 0.05,
    "rate_limiter_down_retry_s": 0.05,
    "of_rate_limited_delay_s": 0.05,
    "of_retry_base_s": 0.05,
}


def personal_text(request: Envelope) -> Message:
    """A fake worker's answer that names the recipient it was written for."""
    payload = request.payload
    recipient = payload.recipient_id  # type: ignore[attr-defined]
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    return GenerationCompleted(
        provider=payload.provider,  # type: ignore[attr-defined]
        model="m",
        content=f"hello {recipient}",
        usage=usage,
        latency_ms=1.0,
    )


@dataclass
class DeliveryHarness:
    pipeline: Harness  # router + fake workers + sink (the router tests' harness)
    sim: PlatformSimulator
    services: list[Service]

    @property
    def bus(self) -> RecordingBus:
        return self.pipeline.bus

    @classmethod
    async def start(
        cls,
        sim: PlatformSimulator,
        *,
        router: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        of_sender: bool = True,
        rate_limiter: bool = True,
        llm: LLMSimulator | None = None,
    ) -> DeliveryHarness:
        """With `llm`, the real azure- and openai-workers answer on that simulator instead of the fake ones."""
        bus = RecordingBus(policy=FAST_REDELIVERY)
        store = MemoryStore()
        settings = router_settings(**(router or {}))
        router_ = build_router(Runtime(bus=bus, settings=settings), settings, store)
        await bus.subscribe(ROUTER, router_.handlers())
        workers, sink = FakeWorkers(bus), Sink(bus)
        if llm is None:
            await workers.start()
        await sink.start()
        env = {**LIMIT_ENV, **(limits or {})}
        runtimes: list[Runtime] = []
        factories: list[ServiceFactory] = []
        if llm is not None:
            shared = Shared(llm_simulator_url=llm.url)
            azure = AzureWorkerSettings(redis_url=None, azure_openai_endpoint=None)
            openai = OpenAIWorkerSettings(redis_url=None, openai_api_key=None, openai_base_url=None)
            for factory in (
                partial(create_azure_worker, settings=azure),
                partial(create_openai_worker, settings=openai),
            ):
                runtimes.append(Runtime(bus=bus, settings=CommonSettings(), shared=shared))
                factories.append(factory)
        if rate_limiter:
            runtimes.append(Runtime(bus=bus, settings=RateLimiterSettings(**env)))
            factories.append(create_rate_limiter)
        if of_sender:
            shared = Shared(platform_simulator_url=sim.url)
            runtimes.append(Runtime(bus=bus, settings=OfSenderSettings(**env), shared=shared))
            factories.append(create_of_sender)
        services = []
        for factory, runtime in zip(factories, runtimes, strict=True):
            service = await factory(runtime)
            await service.start(runtime)
            services.append(service)
        pipeline = Harness(bus, store, router_, workers, sink)
        pipeline.start_sweep()
        return cls(pipeline, sim, services)

    async def close(self) -> None:
        await self.pipeline.close()
        for service in self.services:
            await service.stop()

    async def run(self, intent: Intent, **kwargs: Any) -> tuple[WorkflowView, Envelope]:
        return await self.pipeline.run(intent, **kwargs)


def platform() -> PlatformSimulator:
    return PlatformSimulator(PlatformLimits(account_limit=LIMIT, window_s=WINDOW_S, recipient_min_interval_s=GAP_S))


def campaign(*recipients: str, **fields: Any) -> Intent:
    from contracts.enums import IntentType

    data = {"prompt": "hello", **fields.pop("data", {})}
    return Intent(
        type=IntentType.CAMPAIGN_EXECUTION, data=data, send_to_onlyfans=True, recipient_ids=list(recipients), **fields
    )


def new_id() -> uuid.UUID:
    return uuid.uuid4()
