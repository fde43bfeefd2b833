"""Errors of libs.llm.

    LLMError                      something the LLM plumbing could not do
    ├── LLMConfigError            a provider is not configured (no endpoint/key and no simulator); a ConfigError
    ├── CacheError                the idempotency cache failed; wraps redis.RedisError
    ├── GenerationInFlight        another delivery of the same request still holds its lease (redeliver later)
    └── ProviderResponseError     a 2xx answer that cannot be used
        ├── InvalidResponse       no choices, no message or empty content (→ provider_unavailable, retryable)
        └── ContentFiltered       the provider filtered or refused the completion (→ compliance_violation)

Provider failures are not raised out of a handler: `classify.classify` turns the openai SDK's exceptions
(and the two ProviderResponseError kinds above) into a `contracts.messages.ErrorInfo`, which the worker
publishes in generation.failed for the router's fallback matrix. Only plumbing failures (cache, bus) and
bugs propagate, so that the bus redelivers the message.
"""

from __future__ import annotations

from libs.config import ConfigError


class LLMError(Exception):
    pass


class LLMConfigError(LLMError, ConfigError):
    pass


class CacheError(LLMError):
    pass


class GenerationInFlight(LLMError):
    pass


class ProviderResponseError(LLMError):
    pass


class InvalidResponse(ProviderResponseError):
    pass


class ContentFiltered(ProviderResponseError):
    pass
