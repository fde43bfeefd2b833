"""Tests for libs.simulators.llm driven through the real openai SDK (httpx and aiohttp transports): the wire
format of both providers, deterministic intent-shaped replies, fault injection and request counters."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from libs.simulators import (
    FaultKind,
    FaultTarget,
    InvalidFaultError,
    LLMSimulator,
    SimulatorStartError,
)

API_VERSION = "2024-06-01"
DEPLOYMENT = "gpt-4"
PLAN_PROMPT = [
    {"role": "system", "content": "You are a content strategist. Write a content plan for next week."},
    {"role": "user", "content": "Beach shoot with summer vibes for my fans"},
]
# An independent copy of the tokenizer the simulator documents: words and single punctuation marks.
TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


@pytest.fixture
async def sim() -> AsyncIterator[LLMSimulator]:
    async with LLMSimulator() as simulator:
        yield simulator


@pytest.fixture(params=["httpx", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    """Both HTTP transports the SDK offers: its default httpx client and `openai[aiohttp]`."""
    return str(request.param)


def transport_kwargs(transport: str) -> dict[str, Any]:
    return {"http_client": openai.DefaultAioHttpClient()} if transport == "aiohttp" else {}


@pytest.fixture
async def oai(sim: LLMSimulator, transport: str) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="test", max_retries=0, **transport_kwargs(transport)
    )
    yield client
    await client.close()


@pytest.fixture
async def azure(sim: LLMSimulator, transport: str) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=sim.azure_endpoint,
        api_key="azure-key",
        api_version=API_VERSION,
        azure_deployment=DEPLOYMENT,
        max_retries=0,
        **transport_kwargs(transport),
    )
    yield client
    await client.close()


async def ask(client: openai.AsyncOpenAI, messages: Any = None, **kwargs: Any) -> Any:
    return await client.chat.completions.create(
        model=kwargs.pop("model", "gpt-4o-mini"), messages=messages or PLAN_PROMPT, **kwargs
    )


class TestCompletion:
    async def test_openai_completion_has_the_real_shape(self, oai: openai.AsyncOpenAI) -> None:
        """A plain call parses into a ChatCompletion with the request's model, one stop choice and usage."""
        completion = await ask(oai)
        assert completion.id.startswith("chatcmpl-")
        assert completion.object == "chat.completion"
        assert abs(completion.created - time.time()) < 60
        assert completion.model == "gpt-4o-mini"
        assert len(completion.choices) == 1
        choice = completion.choices[0]
        assert choice.message.role == "assistant"
        assert choice.finish_reason == "stop"
        assert choice.message.content

    async def test_usage_counts_prompt_and_reply_tokens(self, oai: openai.AsyncOpenAI) -> None:
        """prompt_tokens counts every message's content, completion_tokens the returned text."""
        completion = await ask(oai)
        usage = completion.usage
        assert usage.prompt_tokens == sum(tokens(m["content"]) for m in PLAN_PROMPT)
        assert usage.completion_tokens == tokens(completion.choices[0].message.content)
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    async def test_content_part_lists_are_read(self, oai: openai.AsyncOpenAI) -> None:
        """Text content parts count as prompt text, like a plain string content."""
        parts = [{"role": "user", "content": [{"type": "text", "text": "hello there, fans"}]}]
        completion = await ask(oai, parts)
        assert completion.usage.prompt_tokens == tokens("hello there, fans")

    async def test_same_request_same_text_different_prompt_different_text(self, oai: openai.AsyncOpenAI) -> None:
        """Replies are deterministic per request and differ between prompts."""
        first = await ask(oai)
        again = await ask(oai)
        other_prompt = [PLAN_PROMPT[0], {"role": "user", "content": "Mountain hike photos"}]
        other = await ask(oai, other_prompt)
        assert first.choices[0].message.content == again.choices[0].message.content
        assert first.id != again.id
        assert other.choices[0].message.content != first.choices[0].message.content

    async def test_azure_reports_the_deployment_as_model(
        self, sim: LLMSimulator, azure: openai.AsyncAzureOpenAI
    ) -> None:
        """AsyncAzureOpenAI(azure_deployment=...) calls /openai/deployments/{deployment}/chat/completions."""
        completion = await ask(azure, model="ignored-by-azure")
        assert completion.model == DEPLOYMENT
        assert completion.choices[0].message.content.startswith("Content plan")
        assert sim.counts().by_path == {f"/openai/deployments/{DEPLOYMENT}/chat/completions": 1}

    async def test_azure_without_deployment_puts_the_model_in_the_path(self, sim: LLMSimulator, transport: str) -> None:
        """Without azure_deployment the SDK routes by the request's model, which the simulator echoes."""
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=sim.azure_endpoint,
            api_key="k",
            api_version=API_VERSION,
            max_retries=0,
            **transport_kwargs(transport),
        )
        async with client:
            completion = await ask(client, model="gpt-35-turbo")
        assert completion.model == "gpt-35-turbo"
        assert sim.counts().by_path == {"/openai/deployments/gpt-35-turbo/chat/completions": 1}

    @pytest.mark.parametrize(
        ("system", "user", "expected"),
        [
            (
                "Create a content plan for the week.",
                "Gym content",
                r"^Content plan \[sim-[a-p]{8}\]:\n1\. ",
            ),
            ("Validate this content for compliance.", "Sunset selfie", r"^Verdict: APPROVED \[sim-"),
            ("Validate this content for compliance.", "Let's meet in person", r"^Verdict: REJECTED .*meet"),
            ("Write a chat message to a fan.", "New photo set", r"New photo set .*sneak peek\? \[sim-"),
            (
                "Task: campaign_execution. Write the message.",
                "Summer sale",
                r"^Campaign \[sim-.*Summer sale!",
            ),
            ("You are helpful.", "Spring collection", r"^Campaign \[sim-"),
        ],
    )
    async def test_reply_follows_the_prompt_intent(
        self, oai: openai.AsyncOpenAI, system: str, user: str, expected: str
    ) -> None:
        """Planning, validation, chat-message and campaign prompts get replies of their own kind."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        completion = await ask(oai, messages)
        assert re.search(expected, completion.choices[0].message.content, re.DOTALL)

    async def test_max_tokens_truncates_with_length_finish_reason(self, oai: openai.AsyncOpenAI) -> None:
        """max_tokens cuts the reply to that many tokens and reports finish_reason "length"."""
        completion = await ask(oai, max_tokens=5)
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage.completion_tokens == 5
        assert tokens(completion.choices[0].message.content) == 5


class TestFaults:
    async def test_rate_limit_raises_rate_limit_error_with_retry_after(
        self, sim: LLMSimulator, oai: openai.AsyncOpenAI
    ) -> None:
        """A 429 fault surfaces as RateLimitError with Retry-After and OpenAI's error body."""
        sim.add_fault(FaultKind.RATE_LIMIT, retry_after=7)
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(oai)
        assert caught.value.status_code == 429
        assert caught.value.response.headers["retry-after"] == "7"
        assert caught.value.code == "rate_limit_exceeded"
        assert caught.value.type == "requests"

    async def test_azure_rate_limit_uses_the_azure_error_body(
        self, sim: LLMSimulator, azure: openai.AsyncAzureOpenAI
    ) -> None:
        """Azure's 429 carries {"code": "429", "message"} and a fractional Retry-After verbatim."""
        sim.add_fault("rate_limit", retry_after=1.5)
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(azure)
        assert caught.value.response.headers["retry-after"] == "1.5"
        assert caught.value.body == {"code": "429", "message": caught.value.message.split(" - ", 1)[1]}

    async def test_server_error_raises_internal_server_error(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """A 500 fault surfaces as InternalServerError."""
        sim.add_fault("server_error")
        with pytest.raises(openai.InternalServerError) as caught:
            await ask(oai)
        assert caught.value.status_code == 500
        assert caught.value.type == "server_error"

    async def test_hang_times_out_the_client(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """A hung request ends in APITimeoutError after the client's own timeout."""
        sim.add_fault("hang")
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await ask(oai, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 3
        assert sim.counts().by_outcome == {"hang": 1}

    async def test_latency_delays_a_correct_reply(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """A latency fault answers normally, but no sooner than latency_s."""
        sim.add_fault("latency", latency_s=0.3)
        started = time.monotonic()
        completion = await ask(oai)
        assert time.monotonic() - started >= 0.3
        assert completion.choices[0].finish_reason == "stop"

    async def test_latency_beyond_the_client_timeout_is_a_timeout(
        self, sim: LLMSimulator, oai: openai.AsyncOpenAI
    ) -> None:
        """Latency longer than the client's timeout surfaces as APITimeoutError."""
        sim.add_fault("latency", latency_s=2)
        with pytest.raises(openai.APITimeoutError):
            await ask(oai, timeout=0.3)

    async def test_malformed_body_raises_json_decode_error(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """The SDK does not wrap a broken JSON body: json.JSONDecodeError escapes, not an openai.APIError."""
        sim.add_fault("malformed")
        with pytest.raises(json.JSONDecodeError) as caught:
            await ask(oai)
        assert not isinstance(caught.value, openai.OpenAIError)

    async def test_bad_shape_is_not_validated_by_default(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """Without strict validation the SDK returns a ChatCompletion whose choices is None."""
        sim.add_fault("bad_shape")
        completion = await ask(oai)
        assert completion.choices is None
        assert completion.usage.total_tokens > 0

    async def test_bad_shape_fails_strict_validation(self, sim: LLMSimulator, transport: str) -> None:
        """With _strict_response_validation the SDK raises APIResponseValidationError on missing choices."""
        client = openai.AsyncOpenAI(
            base_url=sim.openai_base_url,
            api_key="test",
            max_retries=0,
            _strict_response_validation=True,
            **transport_kwargs(transport),
        )
        sim.add_fault("bad_shape")
        async with client:
            with pytest.raises(openai.APIResponseValidationError):
                await ask(client)

    async def test_reply_fault_answers_the_scripted_text_with_its_usage(
        self, sim: LLMSimulator, oai: openai.AsyncOpenAI
    ) -> None:
        """A reply fault answers its text (counted like any reply) once, then the composed reply is back."""
        sim.add_fault("reply", reply="call me 555-0100")
        scripted = await ask(oai)
        assert scripted.choices[0].message.content == "call me 555-0100"
        assert scripted.usage.completion_tokens == tokens("call me 555-0100")
        assert (await ask(oai)).choices[0].message.content.startswith("Content plan [sim-")
        assert sim.counts().by_outcome == {"reply": 1, "ok": 1}

    @pytest.mark.parametrize(
        "fault", [{"kind": "reply"}, {"kind": "server_error", "reply": "x"}, {"kind": "reply", "reply": ""}]
    )
    def test_reply_needs_a_text_and_only_a_reply_takes_one(self, sim: LLMSimulator, fault: dict[str, Any]) -> None:
        """A reply fault without a text, or another fault with one, is refused."""
        with pytest.raises(InvalidFaultError):
            sim.add_fault(**fault)

    async def test_reply_references_never_read_as_numbers(self, oai: openai.AsyncOpenAI) -> None:
        """The prompt hash a reply quotes is letters only: a run of digits would read as a phone number."""
        for topic in ("a", "b", "c", "d", "e", "f", "g", "h"):
            completion = await ask(oai, [{"role": "user", "content": f"Write a chat message about {topic}"}])
            assert re.search(r"\[sim-[a-p]{8}\]", completion.choices[0].message.content)

    async def test_count_limits_a_fault_to_the_next_n_requests(
        self, sim: LLMSimulator, oai: openai.AsyncOpenAI
    ) -> None:
        """A fault with count=2 fails exactly two requests."""
        sim.add_fault("server_error", count=2)
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await ask(oai)
        assert (await ask(oai)).choices[0].finish_reason == "stop"
        assert sim.active_faults() == []

    async def test_until_cleared_fault_lasts_until_cleared(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """count=None keeps failing every request until clear_faults()."""
        sim.add_fault("server_error", count=None)
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                await ask(oai)
        assert sim.clear_faults() == 1
        assert (await ask(oai)).choices

    async def test_faults_apply_in_queue_order(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """Queued faults are used first-in first-out, one per request."""
        sim.add_fault("rate_limit")
        sim.add_fault("server_error")
        with pytest.raises(openai.RateLimitError):
            await ask(oai)
        with pytest.raises(openai.InternalServerError):
            await ask(oai)
        assert (await ask(oai)).choices

    async def test_target_scopes_a_fault_to_one_provider(
        self, sim: LLMSimulator, oai: openai.AsyncOpenAI, azure: openai.AsyncAzureOpenAI
    ) -> None:
        """An Azure-only fault leaves OpenAI requests alone and fails the next Azure request."""
        sim.add_fault("server_error", target=FaultTarget.AZURE)
        assert (await ask(oai)).choices
        with pytest.raises(openai.InternalServerError):
            await ask(azure)

    async def test_set_fault_replaces_the_targets_faults(self, sim: LLMSimulator) -> None:
        """set_fault drops what was queued for its target and keeps others; it defaults to until cleared."""
        sim.add_fault("server_error", target="openai")
        sim.add_fault("hang", target="azure")
        spec = sim.set_fault("rate_limit", target="openai")
        assert spec.count is None
        assert [(f.kind, f.target) for f in sim.active_faults()] == [
            (FaultKind.HANG, FaultTarget.AZURE),
            (FaultKind.RATE_LIMIT, FaultTarget.OPENAI),
        ]

    @pytest.mark.parametrize(
        "options",
        [
            {"kind": "latency"},
            {"kind": "teapot"},
            {"kind": "hang", "target": "anthropic"},
            {"kind": "hang", "count": 0},
            {"kind": "rate_limit", "retry_after": -1},
        ],
    )
    def test_invalid_faults_are_rejected(self, options: dict[str, Any]) -> None:
        """Faults that cannot apply raise InvalidFaultError (a ValueError) and are not queued."""
        simulator = LLMSimulator()
        with pytest.raises(InvalidFaultError) as caught:
            simulator.add_fault(options.pop("kind"), **options)
        assert isinstance(caught.value, ValueError)
        assert simulator.active_faults() == []

    async def test_stop_releases_hung_requests(self, sim: LLMSimulator) -> None:
        """stop() answers hung requests instead of waiting out the hang or the shutdown timeout."""
        sim.add_fault("hang")
        async with aiohttp.ClientSession() as session:
            call = asyncio.create_task(
                session.post(
                    f"{sim.openai_base_url}/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": "Bearer k"},
                )
            )
            done, _ = await asyncio.wait({call}, timeout=0.5)
            assert not done
            assert sim.counts().by_outcome == {"hang": 1}
            started = time.monotonic()
            await sim.stop()
            assert time.monotonic() - started < 2
            response = await asyncio.wait_for(call, 2)
            assert response.status == 503


class TestAuth:
    async def test_missing_bearer_is_an_authentication_error(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """OpenAI without an Authorization header answers 401 in OpenAI's error shape."""
        with pytest.raises(openai.AuthenticationError) as caught:
            await ask(oai, extra_headers={"Authorization": openai.omit})
        assert caught.value.type == "invalid_request_error"
        assert sim.counts().by_outcome == {"unauthorized": 1}

    async def test_missing_api_key_is_an_authentication_error(self, azure: openai.AsyncAzureOpenAI) -> None:
        """Azure without an api-key header answers 401 in Azure's error shape."""
        with pytest.raises(openai.AuthenticationError) as caught:
            await ask(azure, extra_headers={"api-key": openai.omit})
        assert caught.value.code == "401"

    async def test_azure_accepts_an_entra_id_token(self, sim: LLMSimulator, transport: str) -> None:
        """Azure also accepts a bearer token instead of an api-key."""
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=sim.azure_endpoint,
            azure_ad_token="aad-token",
            api_version=API_VERSION,
            azure_deployment=DEPLOYMENT,
            max_retries=0,
            **transport_kwargs(transport),
        )
        async with client:
            assert (await ask(client)).model == DEPLOYMENT

    async def test_auth_failures_do_not_consume_faults(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """A queued fault waits for an authenticated request."""
        sim.add_fault("server_error")
        with pytest.raises(openai.AuthenticationError):
            await ask(oai, extra_headers={"Authorization": openai.omit})
        with pytest.raises(openai.InternalServerError):
            await ask(oai)


class TestRequestValidation:
    async def test_missing_model_is_a_bad_request(self, sim: LLMSimulator) -> None:
        """OpenAI without a model answers 400 invalid_request_error naming the parameter."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{sim.openai_base_url}/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": "Bearer k"},
            ) as response,
        ):
            body = await response.json()
        assert response.status == 400
        assert body["error"]["param"] == "model"
        assert body["error"]["type"] == "invalid_request_error"

    async def test_streaming_is_refused_loudly(self, oai: openai.AsyncOpenAI) -> None:
        """stream=True gets a 400 rather than a reply the SDK would misread."""
        with pytest.raises(openai.BadRequestError):
            await ask(oai, stream=True)

    async def test_azure_without_api_version_is_not_found(self, sim: LLMSimulator) -> None:
        """Azure without ?api-version answers 404 like the real service."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{sim.azure_endpoint}/openai/deployments/{DEPLOYMENT}/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
                headers={"api-key": "k"},
            ) as response,
        ):
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "404"


class TestAdminApi:
    async def test_http_fault_reaches_the_sdk(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """POST /_sim/faults queues a fault the next matching SDK call sees."""
        fault = {"target": "openai", "kind": "rate_limit", "count": 1, "retry_after": 3, "latency_s": 0}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{sim.url}/_sim/faults", json=fault) as response:
                assert response.status == 201
            with pytest.raises(openai.RateLimitError) as caught:
                await ask(oai)
            async with session.get(f"{sim.url}/_sim/faults") as response:
                assert (await response.json()) == {"faults": []}
        assert caught.value.response.headers["retry-after"] == "3"

    async def test_null_count_lasts_until_delete(self, sim: LLMSimulator, oai: openai.AsyncOpenAI) -> None:
        """count null means until cleared; DELETE /_sim/faults clears and reports how many it dropped."""
        async with aiohttp.ClientSession() as session:
            await session.post(f"{sim.url}/_sim/faults", json={"kind": "server_error", "count": None})
            for _ in range(2):
                with pytest.raises(openai.InternalServerError):
                    await ask(oai)
            async with session.delete(f"{sim.url}/_sim/faults") as response:
                assert await response.json() == {"cleared": 1}
        assert (await ask(oai)).choices

    @pytest.mark.parametrize(
        "body", [{"kind": "teapot"}, {"kind": "hang", "target": "nowhere"}, {"kind": "hang", "extra": 1}]
    )
    async def test_invalid_fault_body_is_a_400(self, sim: LLMSimulator, body: dict[str, Any]) -> None:
        """An unknown kind, target or field is refused and nothing is queued."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{sim.url}/_sim/faults", json=body) as response,
        ):
            assert response.status == 400
        assert sim.active_faults() == []

    async def test_request_counters_over_http(
        self, sim: LLMSimulator, oai: openai.AsyncOpenAI, azure: openai.AsyncAzureOpenAI
    ) -> None:
        """GET /_sim/requests counts calls per target, path and outcome; DELETE resets them."""
        await ask(oai)
        sim.add_fault("rate_limit", target="azure")
        with pytest.raises(openai.RateLimitError):
            await ask(azure)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{sim.url}/_sim/requests") as response:
                counts = await response.json()
            assert counts == {
                "total": 2,
                "by_target": {"openai": 1, "azure": 1},
                "by_path": {
                    "/v1/chat/completions": 1,
                    f"/openai/deployments/{DEPLOYMENT}/chat/completions": 1,
                },
                "by_outcome": {"ok": 1, "rate_limit": 1},
            }
            assert sim.request_count() == 2
            assert sim.request_count("azure") == 1
            await session.delete(f"{sim.url}/_sim/requests")
        assert sim.request_count() == 0


class TestLifecycle:
    async def test_start_binds_a_free_port(self) -> None:
        """port=0 picks a free port and the returned URL names it."""
        async with LLMSimulator() as simulator:
            port = int(simulator.url.rsplit(":", 1)[1])
            assert port > 0
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            assert simulator.openai_base_url == f"http://127.0.0.1:{port}/v1"

    async def test_busy_port_raises_start_error(self, sim: LLMSimulator) -> None:
        """A port already in use raises SimulatorStartError caused by the OSError."""
        port = int(sim.url.rsplit(":", 1)[1])
        with pytest.raises(SimulatorStartError) as caught:
            await LLMSimulator().start(port=port)
        assert isinstance(caught.value.__cause__, OSError)

    async def test_start_twice_raises(self, sim: LLMSimulator) -> None:
        """A running simulator refuses a second start()."""
        with pytest.raises(SimulatorStartError):
            await sim.start()

    async def test_url_needs_a_running_simulator(self) -> None:
        """url is only available between start() and stop()."""
        simulator = LLMSimulator()
        with pytest.raises(SimulatorStartError):
            _ = simulator.url
        await simulator.start()
        await simulator.stop()
        with pytest.raises(SimulatorStartError):
            _ = simulator.url
