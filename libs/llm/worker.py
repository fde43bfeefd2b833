"""A generation worker as a Service: one provider client, its idempotency cache, the shared handler.

The feature flags (FLAGS_*, HYBRID_ORCHESTRATOR_ENABLED) hold every request while the kill switch is off.
The content rules are read when the service is built (libs.content: the shipped rules.toml, and
CONTENT_RULES_FILE over it), so a worker given a bad rules file refuses to start with RulesError.

Both workers are this with their own client and settings (services/azure_worker, services/openai_worker).
"""

from __future__ import annotations

from openai import AsyncOpenAI

from contracts.enums import Provider
from contracts.messages import GenerationRequested
from libs.content import default_checker
from libs.flags import FlagSettings, open_flag_client
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
    settings: FlagSettings,
) -> Service:
    checker = default_checker()
    flags = open_flag_client(settings, store=runtime.shared.flag_store)
    handler = make_generation_handler(
        provider, client, model, runtime.bus, cache, timeout_s, checker=checker, flags=flags
    )

    async def client_configured() -> None:
        # Calling the provider on every probe would cost money and rate limit; a usable client is enough.
        if client.is_closed():
            raise LLMConfigError(f"the {provider.value} client is closed")

    return Service(
        name=name,
        handlers={GenerationRequested.TYPE: handler},
        on_start=[flags.start],
        on_stop=[client.close, cache.close, flags.stop],
        checks={f"{provider.value}_client": client_configured, "idempotency_cache": cache.ping},
    )
