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
from libs.llm.generation import make_generation_handler
from libs.llm.health import CallOutcomes, check_name
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
    outcomes = CallOutcomes(provider)
    handler = make_generation_handler(
        provider, client, model, runtime.bus, cache, timeout_s, checker=checker, flags=flags, outcomes=outcomes
    )

    async def provider_health() -> None:
        # From the calls the worker made anyway: probing the provider would cost money and rate limit.
        outcomes.raise_if_failing(client_closed=client.is_closed())

    return Service(
        name=name,
        handlers={GenerationRequested.TYPE: handler},
        on_start=[flags.start],
        on_stop=[client.close, cache.close, flags.stop],
        checks={"idempotency_cache": cache.ping},
        # Reported, never withholding readiness: a provider's outage is for the router to route around.
        reports={check_name(provider): provider_health},
    )
