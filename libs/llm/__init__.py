"""Provider-call plumbing shared by the LLM workers: clients, prompts, error classification, usage,
the idempotency cache and the generation.requested handler built from them.

    client = build_openai_client(openai_endpoint(base_url, key, runtime.shared.llm_simulator_url), timeout_s=30)
    cache = open_cache(settings.redis_url)                       # Redis, or an in-process LRU
    handler = make_generation_handler(Provider.OPENAI, client, "gpt-4o-mini", bus, cache, 30.0)
"""

from libs.llm.cache import Claim, IdempotencyCache, MemoryCache, RedisCache, open_cache
from libs.llm.classify import classify, retry_after_s
from libs.llm.client import (
    Endpoint,
    azure_endpoint,
    build_azure_client,
    build_openai_client,
    create_chat_completion,
    openai_endpoint,
)
from libs.llm.errors import (
    CacheError,
    ContentFiltered,
    GenerationInFlight,
    InvalidResponse,
    LLMConfigError,
    LLMError,
    ProviderResponseError,
)
from libs.llm.generation import GenerationHandler, make_generation_handler
from libs.llm.prompts import PROMPTS, Prompt, RenderedPrompt, build_prompt
from libs.llm.usage import estimate_tokens

__all__ = [
    "PROMPTS",
    "CacheError",
    "Claim",
    "ContentFiltered",
    "Endpoint",
    "GenerationHandler",
    "GenerationInFlight",
    "IdempotencyCache",
    "InvalidResponse",
    "LLMConfigError",
    "LLMError",
    "MemoryCache",
    "Prompt",
    "ProviderResponseError",
    "RedisCache",
    "RenderedPrompt",
    "azure_endpoint",
    "build_azure_client",
    "build_openai_client",
    "build_prompt",
    "classify",
    "create_chat_completion",
    "estimate_tokens",
    "make_generation_handler",
    "open_cache",
    "openai_endpoint",
    "retry_after_s",
]
