"""The two worker services as the runtime sees them: configuration from the environment or the runner,
the simulator only when no provider is configured, readiness checks, and shutdown."""

from __future__ import annotations

import pytest

from contracts.enums import Provider
from contracts.messages import GenerationCompleted, GenerationRequested
from contracts.routing import AZURE_WORKER, OPENAI_WORKER
from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.llm import LLMConfigError
from libs.runtime import Runtime, Shared
from libs.runtime.health import run_checks
from libs.simulators import LLMSimulator
from services.azure_worker.config import AzureWorkerSettings
from services.azure_worker.service import create as create_azure
from services.openai_worker.config import OpenAIWorkerSettings
from services.openai_worker.service import create as create_openai
from tests.workers.conftest import CannedProvider, Recorder, StartWorker, completion_body, generation_request

WORKER_ENV = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_VERSION",
    "AZURE_TIMEOUT_S",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "OPENAI_TIMEOUT_S",
    "REDIS_URL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class TestSettings:
    def test_defaults(self, clean_env: pytest.MonkeyPatch) -> None:
        """Defaults: deployment gpt-4, API version 2024-06-01, 45 s; model gpt-4o-mini, 30 s."""
        azure = AzureWorkerSettings()
        openai_settings = OpenAIWorkerSettings()
        assert (azure.azure_openai_deployment, azure.azure_openai_api_version) == ("gpt-4", "2024-06-01")
        assert azure.azure_timeout_s == 45.0
        assert azure.azure_openai_endpoint is None
        assert openai_settings.openai_model == "gpt-4o-mini"
        assert openai_settings.openai_timeout_s == 30.0

    def test_keys_are_secret(self, clean_env: pytest.MonkeyPatch) -> None:
        """API keys read from the environment never show in the settings' repr."""
        clean_env.setenv("AZURE_OPENAI_API_KEY", "azure-secret-value")
        clean_env.setenv("OPENAI_API_KEY", "sk-secret-value-123")
        assert "azure-secret-value" not in repr(AzureWorkerSettings())
        assert "sk-secret-value-123" not in repr(OpenAIWorkerSettings())


class TestConfiguration:
    @pytest.mark.parametrize("provider", [Provider.AZURE, Provider.OPENAI], ids=lambda p: p.value)
    async def test_no_provider_and_no_simulator_is_a_configuration_error(
        self, provider: Provider, bus: MemoryBus, clean_env: pytest.MonkeyPatch
    ) -> None:
        """A worker process with no provider configured refuses to start rather than simulate."""
        create = create_azure if provider is Provider.AZURE else create_openai
        with pytest.raises(LLMConfigError, match="not configured"):
            await create(Runtime(bus=bus, settings=CommonSettings()))

    async def test_endpoint_without_key_is_a_configuration_error(
        self, bus: MemoryBus, clean_env: pytest.MonkeyPatch
    ) -> None:
        """AZURE_OPENAI_ENDPOINT without AZURE_OPENAI_API_KEY (and OPENAI_BASE_URL without a key) fail."""
        clean_env.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
        clean_env.setenv("OPENAI_BASE_URL", "https://proxy.example/v1")
        with pytest.raises(LLMConfigError, match="AZURE_OPENAI_API_KEY"):
            await create_azure(Runtime(bus=bus, settings=CommonSettings()))
        with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
            await create_openai(Runtime(bus=bus, settings=CommonSettings()))

    async def test_azure_worker_reads_its_environment(
        self, bus: MemoryBus, recorder: Recorder, canned: CannedProvider, clean_env: pytest.MonkeyPatch
    ) -> None:
        """AZURE_OPENAI_* from the environment choose endpoint, key, deployment and API version — and a
        configured endpoint wins over a simulator the runner offers."""
        clean_env.setenv("AZURE_OPENAI_ENDPOINT", canned.url)
        clean_env.setenv("AZURE_OPENAI_API_KEY", "env-azure-key")
        clean_env.setenv("AZURE_OPENAI_DEPLOYMENT", "planner")
        clean_env.setenv("AZURE_OPENAI_API_VERSION", "2024-10-21")
        canned.respond(200, completion_body("Plan"))
        runtime = Runtime(bus=bus, settings=CommonSettings(), shared=Shared(llm_simulator_url="http://127.0.0.1:1"))
        service = await create_azure(runtime)
        await service.start(runtime)
        try:
            await bus.publish(generation_request(Provider.AZURE))
            assert isinstance((await recorder.result()).payload, GenerationCompleted)
        finally:
            await service.stop()
        path, headers, _ = canned.requests[0]
        assert path == "/openai/deployments/planner/chat/completions?api-version=2024-10-21"
        assert headers["api-key"] == "env-azure-key"

    async def test_openai_worker_reads_its_environment(
        self, bus: MemoryBus, recorder: Recorder, canned: CannedProvider, clean_env: pytest.MonkeyPatch
    ) -> None:
        """OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL from the environment are what the calls use."""
        clean_env.setenv("OPENAI_BASE_URL", f"{canned.url}/v1")
        clean_env.setenv("OPENAI_API_KEY", "sk-env-key-0123456789")
        clean_env.setenv("OPENAI_MODEL", "gpt-4.1-mini")
        canned.respond(200, completion_body("Hi"))
        runtime = Runtime(bus=bus, settings=CommonSettings())
        service = await create_openai(runtime)
        await service.start(runtime)
        try:
            await bus.publish(generation_request(Provider.OPENAI))
            await recorder.result()
        finally:
            await service.stop()
        path, headers, body = canned.requests[0]
        assert path == "/v1/chat/completions"
        assert headers["Authorization"] == "Bearer sk-env-key-0123456789"
        assert body["model"] == "gpt-4.1-mini"


class TestService:
    @pytest.mark.parametrize(
        ("provider", "name"),
        [(Provider.AZURE, AZURE_WORKER), (Provider.OPENAI, OPENAI_WORKER)],
        ids=["azure", "openai"],
    )
    async def test_service_shape_and_readiness(
        self, provider: Provider, name: str, start_worker: StartWorker, sim: LLMSimulator
    ) -> None:
        """The service is named after its queue, handles generation.requested, is ready while its cache
        answers and reports its provider healthy; after stop, the provider report fails (closed client)."""
        service = await start_worker(provider)
        assert service.name == name
        assert set(service.handlers) == {GenerationRequested.TYPE}
        assert set((await run_checks(service.checks)).values()) == {"ok"}
        assert await run_checks(service.reports) == {f"{provider.value}Provider": "ok"}
        await service.stop()
        results = await run_checks(service.reports)
        assert results[f"{provider.value}Provider"] == f"ProviderUnhealthy: the {provider.value} client is closed"

    async def test_readiness_reports_an_unreachable_redis(self, start_worker: StartWorker) -> None:
        """With REDIS_URL pointing nowhere, the idempotency_cache check fails with the reason."""
        service = await start_worker(Provider.OPENAI, redis_url="redis://127.0.0.1:1/0")
        results = await run_checks(service.checks)
        assert results["idempotency_cache"].startswith("CacheError")

    async def test_readiness_with_a_real_redis(self, start_worker: StartWorker, redis_url: str) -> None:
        """With a reachable Redis every check passes."""
        service = await start_worker(Provider.AZURE, redis_url=redis_url)
        assert set((await run_checks(service.checks)).values()) == {"ok"}
