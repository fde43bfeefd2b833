"""A redelivered generation.requested never calls the provider twice: the workers' idempotency cache, in
process and in Redis, with the real simulator counting the calls."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from contracts import Envelope
from contracts.enums import Provider
from contracts.messages import GenerationCompleted, GenerationFailed, UsageRecorded
from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.llm import GenerationHandler, GenerationInFlight, MemoryCache
from libs.llm import constants as llm_constants
from libs.llm.client import build_openai_client, openai_endpoint
from libs.runtime import Runtime, Shared
from libs.simulators import LLMSimulator
from services.openai_worker.config import OpenAIWorkerSettings
from services.openai_worker.service import create
from tests.workers.conftest import Recorder, StartWorker, generation_request

PROVIDERS = [Provider.AZURE, Provider.OPENAI]


def ids(envelopes: list[Envelope]) -> list[uuid.UUID]:
    return [e.id for e in envelopes]


class TestRedelivery:
    @pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.value)
    async def test_redelivered_request_republishes_without_calling_again(
        self, provider: Provider, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """The same envelope handled twice calls the simulator once and publishes the same envelopes again."""
        await start_worker(provider)
        request = generation_request(provider)
        await bus.publish(request)
        first = await recorder.wait_for(GenerationCompleted.TYPE)
        await bus.publish(request)
        both = await recorder.wait_for(GenerationCompleted.TYPE, 2)
        usages = await recorder.wait_for(UsageRecorded.TYPE, 2)
        assert sim.request_count(provider.value) == 1
        assert ids(both) == ids(first) * 2
        assert both[0].encode() == both[1].encode()
        assert usages[0].id == usages[1].id

    async def test_failed_result_is_replayed_too(
        self, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A redelivered request whose call failed republishes the failure; the router decides any retry."""
        await start_worker(Provider.OPENAI)
        sim.add_fault("server_error")
        request = generation_request(Provider.OPENAI)
        await bus.publish(request)
        await recorder.wait_for(GenerationFailed.TYPE)
        await bus.publish(request)
        failures = await recorder.wait_for(GenerationFailed.TYPE, 2)
        assert sim.request_count() == 1
        assert failures[0].id == failures[1].id

    async def test_concurrent_duplicate_waits_for_the_first_call(
        self, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """A duplicate delivered while the first call is in flight waits for its result instead of calling."""
        await start_worker(Provider.AZURE)
        sim.add_fault("latency", latency_s=0.4)
        request = generation_request(Provider.AZURE)
        await bus.publish(request)
        await bus.publish(request)
        both = await recorder.wait_for(GenerationCompleted.TYPE, 2)
        assert sim.request_count() == 1
        assert both[0].id == both[1].id

    async def test_distinct_requests_each_call(
        self, start_worker: StartWorker, bus: MemoryBus, recorder: Recorder, sim: LLMSimulator
    ) -> None:
        """De-duplication is per request id: two requests for one workflow are two calls."""
        await start_worker(Provider.OPENAI)
        await bus.publish(generation_request(Provider.OPENAI))
        await bus.publish(generation_request(Provider.OPENAI))
        results = await recorder.wait_for(GenerationCompleted.TYPE, 2)
        assert sim.request_count() == 2
        assert results[0].id != results[1].id

    async def test_redis_cache_survives_a_worker_restart(
        self,
        start_worker: StartWorker,
        bus: MemoryBus,
        recorder: Recorder,
        sim: LLMSimulator,
        redis_url: str,
    ) -> None:
        """With REDIS_URL, a request redelivered to a new worker process is replayed from Redis (`ho:gen:{id}`,
        24 h), not sent to the provider again."""
        request = generation_request(Provider.OPENAI)
        first_worker = await start_worker(Provider.OPENAI, redis_url=redis_url)
        await bus.publish(request)
        first = await recorder.wait_for(GenerationCompleted.TYPE)
        await bus.close(grace_s=1)  # the old process is gone...
        await first_worker.stop()

        restarted = MemoryBus()
        await restarted.connect()
        again = Recorder()
        await restarted.subscribe("router", {GenerationCompleted.TYPE: again.handle})
        try:
            runtime = Runtime(bus=restarted, settings=CommonSettings(), shared=Shared(llm_simulator_url=sim.url))
            settings = OpenAIWorkerSettings(redis_url=redis_url, openai_api_key=None, openai_base_url=None)
            second_worker = await create(runtime, settings=settings)
            await second_worker.start(runtime)
            await restarted.publish(request)  # ...and the broker redelivers to the new one
            (replayed,) = await again.wait_for(GenerationCompleted.TYPE)
            await second_worker.stop()
        finally:
            await restarted.close(grace_s=1)
        assert sim.request_count() == 1
        assert replayed.encode() == first[0].encode()
        client = aioredis.Redis.from_url(redis_url)
        try:
            ttl_ms = await client.pttl(f"ho:gen:{request.id}")
        finally:
            await client.aclose()
        assert 23 * 3600 * 1000 < ttl_ms <= 24 * 3600 * 1000


class TestLease:
    async def test_a_failing_handling_releases_its_lease(self, bus: MemoryBus, sim: LLMSimulator) -> None:
        """When handling raises (a bug, not a provider failure), the lease is released so a redelivery may
        call at once instead of waiting it out."""
        cache = MemoryCache()
        client = build_openai_client(openai_endpoint(None, None, sim.url), timeout_s=5)
        handler = GenerationHandler(Provider.OPENAI, client, "gpt-4o-mini", bus, cache, 5.0, prompts={})
        request = generation_request(Provider.OPENAI)
        try:
            with pytest.raises(KeyError):
                await handler(request)
        finally:
            await client.close()
        claim = await cache.claim(str(request.id), 5.0)
        assert claim.owned
        assert sim.request_count() == 0

    async def test_duplicate_gives_up_after_the_lease_and_the_bus_redelivers(
        self, bus: MemoryBus, sim: LLMSimulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A duplicate that sees a lease it cannot outwait raises GenerationInFlight after its own lease time
        (timeout + margin), and the bus redelivers it later."""
        monkeypatch.setattr(llm_constants, "LEASE_MARGIN_S", 0.3)
        cache = MemoryCache()
        client = build_openai_client(openai_endpoint(None, None, sim.url), timeout_s=5)
        handler = GenerationHandler(Provider.OPENAI, client, "gpt-4o-mini", bus, cache, 0.1)
        request = generation_request(Provider.OPENAI)
        # Another delivery holds a lease far longer than this handler's budget (timeout + margin).
        await cache.claim(str(request.id), 60.0)
        started = asyncio.get_running_loop().time()
        try:
            with pytest.raises(GenerationInFlight):
                await asyncio.wait_for(handler(request), 10)
        finally:
            await client.close()
        assert 0.4 <= asyncio.get_running_loop().time() - started < 2.0
        assert sim.request_count() == 0
