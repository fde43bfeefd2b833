"""One openai SDK client per worker process, pointed at the real provider or, when none is configured and
the runner provides one, at the LLM simulator.

The SDK's own retries are off (`max_retries=0`): the router owns retries and fallback, and a
hidden retry inside a worker would blow the call's time budget and bill twice. The HTTP transport is
`openai[aiohttp]` (`DefaultAioHttpClient`), which costs about half the CPU per call of the default httpx
transport (measured). Close the client on stop (`await client.close()`).

`create_chat_completion` is `client.chat.completions.create` minus the SDK's request-parameter
transformation, which walks every one of `create`'s ~40 typed parameters on each call: 0.84 ms of CPU per
call for a two-message request, a third of a worker's CPU per call (measured against the simulator:
3.4 → 2.0 ms per call, 230 → 340-410 calls/s). The transformation only renames aliased keys and encodes
files, and our body has neither; everything else — URL (Azure's deployment path included), auth headers,
timeout, typed exceptions, response parsing into `ChatCompletion` — is the SDK's own code path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import openai
from openai.types.chat import ChatCompletion

from libs.llm import constants as c
from libs.llm.errors import LLMConfigError


@dataclass(frozen=True)
class Endpoint:
    """Where a worker's client points: a URL (None: the SDK's default, api.openai.com) and its key."""

    url: str | None
    api_key: str = c.SIMULATOR_API_KEY
    simulated: bool = False


def _simulator_url(url: str | None, provider: str, missing: str) -> str:
    if not url:
        # A worker process must never quietly answer with simulated text in production.
        raise LLMConfigError(
            f"{provider} is not configured: set {missing} (no LLM simulator was provided by the runner)"
        )
    return url.rstrip("/")


def azure_endpoint(endpoint: str | None, api_key: str | None, simulator_url: str | None) -> Endpoint:
    """AZURE_OPENAI_ENDPOINT with its key; without an endpoint, the runner's simulator (`simulator_url`, or
    LLMConfigError)."""
    if endpoint:
        if not api_key:
            raise LLMConfigError("AZURE_OPENAI_API_KEY is required when AZURE_OPENAI_ENDPOINT is set")
        return Endpoint(url=endpoint, api_key=api_key)
    return Endpoint(url=_simulator_url(simulator_url, "Azure OpenAI", "AZURE_OPENAI_ENDPOINT"), simulated=True)


def openai_endpoint(base_url: str | None, api_key: str | None, simulator_url: str | None) -> Endpoint:
    """OpenAI (OPENAI_API_KEY, with OPENAI_BASE_URL for a proxy or a compatible server); with neither set,
    the runner's simulator (or LLMConfigError)."""
    if api_key:
        return Endpoint(url=base_url or None, api_key=api_key)
    if base_url:
        raise LLMConfigError("OPENAI_API_KEY is required when OPENAI_BASE_URL is set")
    url = _simulator_url(simulator_url, "OpenAI", "OPENAI_API_KEY")
    return Endpoint(url=f"{url}{c.SIMULATOR_OPENAI_PATH}", simulated=True)


def build_azure_client(
    endpoint: Endpoint, *, api_version: str, deployment: str, timeout_s: float
) -> openai.AsyncAzureOpenAI:
    """The Azure client; every call goes to `deployment` (the SDK puts it in the URL path)."""
    if endpoint.url is None:
        raise LLMConfigError("an Azure endpoint URL is required")
    return openai.AsyncAzureOpenAI(
        azure_endpoint=endpoint.url,
        api_key=endpoint.api_key,
        api_version=api_version,
        azure_deployment=deployment,
        max_retries=0,
        timeout=timeout_s,
        http_client=openai.DefaultAioHttpClient(),
    )


def build_openai_client(endpoint: Endpoint, *, timeout_s: float) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=endpoint.url,
        api_key=endpoint.api_key,
        max_retries=0,
        timeout=timeout_s,
        http_client=openai.DefaultAioHttpClient(),
    )


async def create_chat_completion(
    client: openai.AsyncOpenAI, body: Mapping[str, object], *, timeout_s: float
) -> ChatCompletion:
    """POST `body` to chat/completions as `client.chat.completions.create(**body)` would (see above)."""
    # `security` is what `create` passes: send the bearer credential (Azure's client adds its api-key).
    options: openai.RequestOptions = {"timeout": timeout_s, "security": {"bearer_auth": True}}
    return await client.post(c.CHAT_COMPLETIONS_PATH, cast_to=ChatCompletion, body=body, options=options)
