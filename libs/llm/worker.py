"""A generation worker as a Service: one provider client, its idempotency cache, the shared handler.

Both workers are this with their own client and settings (services/azure_worker, services/openai_worker).
"""

from __future__ import annotations

from openai import AsyncOpenAI

from contracts.enums import Provider
from contracts.messages import GenerationRequested
from libs.llm.cache import IdempotencyCache
from libs.llm.errors import LLMConfigError
from libs.llm.generation import make_generation_handler
from libs.runtime import Runtime, Service


def worker_service(
    name: str,
    provider: Provider,
    client: AsyncOpenAI,
    *,
    model: str,
    cache: IdempotencyCache,
    timeout_s: float,
    runtime: Runtime,
) -> Service:
    handler = make_generation_handler(provider, client, model, runtime.bus, cache, timeout_s)

    async def client_configured() -> None:
        # Calling the provider on every probe would cost money and rate limit; a usable client is enough.
        if client.is_closed():
            raise LLMConfigError(f"the {provider.value} client is closed")

    return Service(
        name=name,
        handlers={GenerationRequested.TYPE: handler},
        on_stop=[client.close, cache.close],
        checks={f"{provider.value}_client": client_configured, "idempotency_cache": cache.ping},
    )
