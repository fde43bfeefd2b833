"""The azure-worker: Azure OpenAI chat completions for generation.requested (provider azure).

Settings are those handed to `create` (tests), else read from the environment. Without AZURE_OPENAI_ENDPOINT
the worker talks to the LLM simulator the runner shares (`runtime.shared.llm_simulator_url`); with neither,
`create` raises LLMConfigError.
"""

from __future__ import annotations

from contracts.enums import Provider
from contracts.routing import AZURE_WORKER
from libs.llm import azure_endpoint, build_azure_client, open_cache
from libs.llm.worker import worker_service
from libs.runtime import Runtime, Service
from libs.telemetry import get_logger
from services.azure_worker.config import AzureWorkerSettings

log = get_logger(__name__)


async def create(runtime: Runtime, *, settings: AzureWorkerSettings | None = None) -> Service:
    settings = runtime.settings_as(AzureWorkerSettings, settings)
    key = settings.azure_openai_api_key
    endpoint = azure_endpoint(
        settings.azure_openai_endpoint, key.get_secret_value() if key else None, runtime.shared.llm_simulator_url
    )
    cache = open_cache(settings.redis_url)
    client = build_azure_client(
        endpoint,
        api_version=settings.azure_openai_api_version,
        deployment=settings.azure_openai_deployment,
        timeout_s=settings.azure_timeout_s,
    )
    log.info(
        "azure_worker.configured",
        simulated=endpoint.simulated,
        deployment=settings.azure_openai_deployment,
        api_version=settings.azure_openai_api_version,
        timeout_s=settings.azure_timeout_s,
        cache="redis" if settings.redis_url else "memory",
    )

    return worker_service(
        AZURE_WORKER,
        Provider.AZURE,
        client,
        model=settings.azure_openai_deployment,
        cache=cache,
        timeout_s=settings.azure_timeout_s,
        runtime=runtime,
        settings=settings,
    )
