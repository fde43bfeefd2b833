"""The openai-worker: OpenAI chat completions for generation.requested (provider openai).

Settings are those handed to `create` (tests), else read from the environment. With neither OPENAI_API_KEY
nor OPENAI_BASE_URL the worker talks to the LLM simulator the runner shares (`runtime.shared.llm_simulator_url`);
with none of them, `create` raises LLMConfigError.
"""

from __future__ import annotations

from contracts.enums import Provider
from contracts.routing import OPENAI_WORKER
from libs.llm import build_openai_client, open_cache, openai_endpoint
from libs.llm.worker import worker_service
from libs.runtime import Runtime, Service
from libs.telemetry import get_logger
from services.openai_worker.config import OpenAIWorkerSettings

log = get_logger(__name__)


async def create(runtime: Runtime, *, settings: OpenAIWorkerSettings | None = None) -> Service:
    settings = runtime.settings_as(OpenAIWorkerSettings, settings)
    key = settings.openai_api_key
    endpoint = openai_endpoint(
        settings.openai_base_url, key.get_secret_value() if key else None, runtime.shared.llm_simulator_url
    )
    cache = open_cache(settings.redis_url)
    client = build_openai_client(endpoint, timeout_s=settings.openai_timeout_s)
    log.info(
        "openai_worker.configured",
        simulated=endpoint.simulated,
        model=settings.openai_model,
        timeout_s=settings.openai_timeout_s,
        cache="redis" if settings.redis_url else "memory",
    )

    return worker_service(
        OPENAI_WORKER,
        Provider.OPENAI,
        client,
        model=settings.openai_model,
        cache=cache,
        timeout_s=settings.openai_timeout_s,
        runtime=runtime,
        settings=settings,
    )
