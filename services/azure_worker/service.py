"""The azure-worker: Azure OpenAI chat completions for generation.requested (provider azure).

Settings come from `runtime.resources["azure_worker_settings"]` when the runner passes them, else from the
environment. Without AZURE_OPENAI_ENDPOINT the worker talks to the LLM simulator the runner passed in
`runtime.resources["llm_simulator_url"]`; with neither, `create` raises LLMConfigError.
"""

from __future__ import annotations

from contracts.enums import Provider
from contracts.routing import AZURE_WORKER
from libs.llm import azure_endpoint, build_azure_client, open_cache
from libs.llm.worker import worker_service
from libs.runtime import Runtime, Service
from libs.telemetry import get_logger
from services.azure_worker.config import RESOURCE_SETTINGS, AzureWorkerSettings

log = get_logger(__name__)


async def create(runtime: Runtime) -> Service:
    settings = runtime.settings_as(AzureWorkerSettings, RESOURCE_SETTINGS)
    key = settings.azure_openai_api_key
    endpoint = azure_endpoint(
        settings.azure_openai_endpoint, key.get_secret_value() if key else None, runtime.resources
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
