"""In-process simulator of the OpenAI and Azure OpenAI chat-completions HTTP APIs.

Tests and the embedded mode (`make run`) point the real openai SDK at it when no provider URL is
configured, so the production client code runs unchanged with no keys and no network:

- OpenAI: ``POST /v1/chat/completions`` with ``Authorization: Bearer <key>``
  (``AsyncOpenAI(base_url=sim.openai_base_url)``);
- Azure: ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` with ``api-key``
  (``AsyncAzureOpenAI(azure_endpoint=sim.azure_endpoint, azure_deployment=..., api_version=...)``) --
  the path the SDK builds in ``openai/lib/azure.py``.

Replies are deterministic (same request, same text), shaped by the prompt's intent, and carry token counts
of a simple regex tokenizer that match the text; that wire format lives in ``llm_wire.py``. Faults (latency,
429, 500, hang, malformed JSON, bad shape) and scripted replies (``reply``: answer this text) are queued per
target programmatically or through the ``/_sim/*`` admin routes, and every request is counted so tests can
assert how many provider calls were made.

As its own process (the compose demo profile): ``python -m libs.simulators.llm`` serves on
LLM_SIMULATOR_HOST:LLM_SIMULATOR_PORT (default 127.0.0.1:8090) until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import orjson
import pydantic
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from libs.simulators import serve
from libs.simulators.errors import InvalidFaultError
from libs.simulators.llm_wire import (
    ChatRequest,
    RequestRejected,
    check_auth,
    completion_body,
    error_response,
    json_response,
    parse_chat_request,
)
from libs.telemetry import configure_logging

log = structlog.get_logger(__name__)

# --- constants ------------------------------------------------------------------------------------------
OPENAI_CHAT_PATH = "/v1/chat/completions"
AZURE_CHAT_PATH = "/openai/deployments/{deployment}/chat/completions"
ADMIN_FAULTS_PATH = "/_sim/faults"
ADMIN_REQUESTS_PATH = "/_sim/requests"
# Far beyond every client timeout (Azure 45 s, OpenAI 30 s): a hung request only ends when the client gives
# up (handler cancellation is on) or the simulator stops.
HANG_SECONDS = 3600.0
DEFAULT_RETRY_AFTER_S = 1.0
# A malformed reply is the first bytes of a real one: long enough to look like JSON, never a whole document.
MALFORMED_BODY_BYTES = 40
# `python -m libs.simulators.llm`: where it listens. Loopback by default; a container sets 0.0.0.0.
ENV_HOST = "LLM_SIMULATOR_HOST"
ENV_PORT = "LLM_SIMULATOR_PORT"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


class FaultTarget(StrEnum):
    """Which requests a fault applies to."""

    ALL = "all"
    OPENAI = "openai"
    AZURE = "azure"


class FaultKind(StrEnum):
    """What an injected fault does to a request (after waiting ``latency_s``)."""

    LATENCY = "latency"  # answer normally, late
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    SERVER_ERROR = "server_error"  # 500
    BAD_REQUEST = "bad_request"  # 400 invalid_request_error: permanent, never worth a retry
    HANG = "hang"  # never answer
    MALFORMED = "malformed"  # 200 application/json whose body is not JSON
    BAD_SHAPE = "bad_shape"  # 200 valid JSON without `choices`
    REPLY = "reply"  # 200 with `reply` as the text instead of the composed one (a scripted answer)


class FaultSpec(BaseModel):
    """One injected fault; also the JSON body of ``POST /_sim/faults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    target: FaultTarget = FaultTarget.ALL
    count: int | None = Field(default=1, ge=1, description="next N matching requests; null: until cleared")
    retry_after: float = Field(default=DEFAULT_RETRY_AFTER_S, ge=0, description="Retry-After of a 429, s")
    latency_s: float = Field(default=0.0, ge=0, description="delay before the fault's effect, s")
    reply: str | None = Field(default=None, min_length=1, description="the text a `reply` fault answers")

    @pydantic.model_validator(mode="after")
    def _latency_needs_a_delay(self) -> Self:
        if self.kind is FaultKind.LATENCY and self.latency_s <= 0:
            raise ValueError("a latency fault needs latency_s > 0")
        if (self.kind is FaultKind.REPLY) != (self.reply is not None):
            raise ValueError("a reply fault, and only a reply fault, needs `reply`")
        return self


@dataclass
class _ActiveFault:
    spec: FaultSpec
    remaining: int | None  # None: until cleared


@dataclass(frozen=True)
class RequestCounts:
    """Chat-completion requests received (auth failures and hung requests included)."""

    total: int
    by_target: dict[str, int]  # "openai" / "azure"
    by_path: dict[str, int]  # URL path, e.g. "/openai/deployments/gpt-4/chat/completions"
    by_outcome: dict[str, int]  # "ok", a FaultKind value, "unauthorized", "invalid_request", "not_found"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_target(value: FaultTarget | str) -> FaultTarget:
    try:
        return FaultTarget(value)
    except ValueError as exc:
        raise InvalidFaultError(f"unknown fault target {value!r}") from exc


class LLMSimulator(serve.HttpSimulator):
    """Fault and counter state of the simulated providers, plus the server that serves them."""

    EVENT_PREFIX = "llm_sim"

    def __init__(self) -> None:
        super().__init__()
        self._faults: list[_ActiveFault] = []
        self._by_target: Counter[str] = Counter()
        self._by_path: Counter[str] = Counter()
        self._by_outcome: Counter[str] = Counter()
        self._stopping = asyncio.Event()

    # --- faults ------------------------------------------------------------------------------------------
    def add_fault(
        self,
        kind: FaultKind | str,
        *,
        target: FaultTarget | str = FaultTarget.ALL,
        count: int | None = 1,
        retry_after: float = DEFAULT_RETRY_AFTER_S,
        latency_s: float = 0.0,
        reply: str | None = None,
    ) -> FaultSpec:
        """Queue a fault for the next `count` matching requests (None: until cleared)."""
        fields = {"kind": kind, "target": target, "count": count, "reply": reply}
        try:
            spec = FaultSpec.model_validate({**fields, "retry_after": retry_after, "latency_s": latency_s})
        except pydantic.ValidationError as exc:
            raise InvalidFaultError(str(exc)) from exc
        self.add_fault_spec(spec)
        return spec

    def add_fault_spec(self, spec: FaultSpec) -> None:
        """Queue a fault; queued faults apply first-in first-out, one fault per request."""
        self._faults.append(_ActiveFault(spec=spec, remaining=spec.count))
        log.info("llm_sim.fault_added", kind=spec.kind.value, target=spec.target.value, count=spec.count)

    def set_fault(
        self,
        kind: FaultKind | str,
        *,
        target: FaultTarget | str = FaultTarget.ALL,
        count: int | None = None,
        retry_after: float = DEFAULT_RETRY_AFTER_S,
        latency_s: float = 0.0,
    ) -> FaultSpec:
        """Replace the faults queued for `target` by this one, by default until cleared."""
        self.clear_faults(target)
        return self.add_fault(kind, target=target, count=count, retry_after=retry_after, latency_s=latency_s)

    def clear_faults(self, target: FaultTarget | str | None = None) -> int:
        """Drop all faults (or those queued for exactly `target`); returns how many were dropped."""
        before = len(self._faults)
        if target is None:
            self._faults.clear()
        else:
            only = _parse_target(target)
            self._faults = [f for f in self._faults if f.spec.target is not only]
        return before - len(self._faults)

    def active_faults(self) -> list[FaultSpec]:
        """Faults still queued, with `count` set to what remains."""
        return [f.spec.model_copy(update={"count": f.remaining}) for f in self._faults]

    def _take_fault(self, target: FaultTarget) -> FaultSpec | None:
        for index, fault in enumerate(self._faults):
            if fault.spec.target in (FaultTarget.ALL, target):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        del self._faults[index]
                return fault.spec
        return None

    # --- counters ----------------------------------------------------------------------------------------
    def counts(self) -> RequestCounts:
        """Snapshot of the request counters."""
        return RequestCounts(
            total=sum(self._by_target.values()),
            by_target=dict(self._by_target),
            by_path=dict(self._by_path),
            by_outcome=dict(self._by_outcome),
        )

    def request_count(self, target: FaultTarget | str = FaultTarget.ALL) -> int:
        """Chat-completion requests received for `target` (all targets by default)."""
        target = _parse_target(target)
        return sum(self._by_target.values()) if target is FaultTarget.ALL else self._by_target[target.value]

    def reset_counts(self) -> None:
        self._by_target.clear()
        self._by_path.clear()
        self._by_outcome.clear()

    # --- serving -----------------------------------------------------------------------------------------
    async def _serve(self, request: web.Request, target: FaultTarget) -> web.Response:
        self._by_target[target.value] += 1
        self._by_path[request.path] += 1
        azure = target is FaultTarget.AZURE
        try:
            check_auth(request, azure=azure)
            chat = await parse_chat_request(request, azure=azure)
        except RequestRejected as rejected:
            self._by_outcome[rejected.outcome] += 1
            return rejected.response
        fault = self._take_fault(target)
        self._by_outcome[fault.kind.value if fault else "ok"] += 1
        if fault is None:
            return json_response(completion_body(chat))
        log.info("llm_sim.fault_injected", kind=fault.kind.value, target=target.value, path=request.path)
        if fault.latency_s:
            await asyncio.sleep(fault.latency_s)
        return await self._apply(fault, chat, target)

    async def _apply(self, fault: FaultSpec, chat: ChatRequest, target: FaultTarget) -> web.Response:
        azure = target is FaultTarget.AZURE
        if fault.kind is FaultKind.RATE_LIMIT:
            seconds = f"{fault.retry_after:g}"
            message = f"Rate limit reached for {chat.model} on requests per min. Please try again in {seconds}s."
            code = "429" if azure else "rate_limit_exceeded"
            response = error_response(azure=azure, status=429, message=message, type_="requests", code=code)
            response.headers["Retry-After"] = seconds
            return response
        if fault.kind is FaultKind.SERVER_ERROR:
            message = "The server had an error while processing your request. Sorry about that!"
            return error_response(azure=azure, status=500, message=message, type_="server_error", code=None)
        if fault.kind is FaultKind.BAD_REQUEST:
            message = "Invalid 'messages': the request was rejected by the simulator's fault injection."
            return error_response(azure=azure, status=400, message=message, type_="invalid_request_error", code=None)
        if fault.kind is FaultKind.HANG:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HANG_SECONDS)
            message = "The simulator is shutting down."
            return error_response(azure=azure, status=503, message=message, type_="server_error", code=None)
        if fault.kind is FaultKind.MALFORMED:
            # What a proxy that cut the body short delivers: a JSON content type, half a document.
            truncated = orjson.dumps(completion_body(chat))[:MALFORMED_BODY_BYTES]
            return web.Response(body=truncated, content_type="application/json")
        if fault.kind is FaultKind.BAD_SHAPE:
            return json_response(completion_body(chat, with_choices=False))
        if fault.kind is FaultKind.REPLY:
            return json_response(completion_body(chat, reply=fault.reply))
        return json_response(completion_body(chat))  # LATENCY: late but correct

    # --- lifecycle ---------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        return create_app(self)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._stopping.clear()
        return await super().start(host, port)

    async def stop(self) -> None:
        """Release hung requests and stop listening (only the former when not started by start())."""
        self._stopping.set()
        await super().stop()

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.AsyncOpenAI``."""
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """``azure_endpoint`` for ``openai.AsyncAzureOpenAI``."""
        return self.url


SIMULATOR_KEY = web.AppKey("llm_simulator", LLMSimulator)


async def _openai_chat(request: web.Request) -> web.Response:
    return await request.app[SIMULATOR_KEY]._serve(request, FaultTarget.OPENAI)


async def _azure_chat(request: web.Request) -> web.Response:
    return await request.app[SIMULATOR_KEY]._serve(request, FaultTarget.AZURE)


async def _add_fault(request: web.Request) -> web.Response:
    try:
        spec = FaultSpec.model_validate_json(await request.read())
    except pydantic.ValidationError as exc:
        return json_response({"error": {"message": str(exc), "type": "invalid_request_error"}}, 400)
    request.app[SIMULATOR_KEY].add_fault_spec(spec)
    return json_response({"fault": spec.model_dump(mode="json")}, status=201)


async def _list_faults(request: web.Request) -> web.Response:
    faults = request.app[SIMULATOR_KEY].active_faults()
    return json_response({"faults": [spec.model_dump(mode="json") for spec in faults]})


async def _clear_faults(request: web.Request) -> web.Response:
    try:
        cleared = request.app[SIMULATOR_KEY].clear_faults(request.query.get("target"))
    except InvalidFaultError as exc:
        return json_response({"error": {"message": str(exc), "type": "invalid_request_error"}}, 400)
    return json_response({"cleared": cleared})


async def _get_counts(request: web.Request) -> web.Response:
    return json_response(request.app[SIMULATOR_KEY].counts().to_json())


async def _reset_counts(request: web.Request) -> web.Response:
    request.app[SIMULATOR_KEY].reset_counts()
    return json_response({"reset": True})


def create_app(sim: LLMSimulator) -> web.Application:
    """The aiohttp application serving `sim`: both chat-completions routes and the ``/_sim`` admin routes."""
    app = web.Application()
    app[SIMULATOR_KEY] = sim
    app.router.add_post(OPENAI_CHAT_PATH, _openai_chat)
    app.router.add_post(AZURE_CHAT_PATH, _azure_chat)
    app.router.add_post(ADMIN_FAULTS_PATH, _add_fault)
    app.router.add_get(ADMIN_FAULTS_PATH, _list_faults)
    app.router.add_delete(ADMIN_FAULTS_PATH, _clear_faults)
    app.router.add_get(ADMIN_REQUESTS_PATH, _get_counts)
    app.router.add_delete(ADMIN_REQUESTS_PATH, _reset_counts)
    return app


async def serve_forever(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, stop: asyncio.Event | None = None) -> None:
    """Run one simulator on host:port until SIGTERM/SIGINT (or `stop` is set), then stop it."""
    await serve.serve_forever(LLMSimulator(), host, port, stop)


def main() -> None:
    """Entry point of `python -m libs.simulators.llm` (host and port from the environment)."""
    configure_logging("llm-simulator")
    asyncio.run(serve_forever(os.environ.get(ENV_HOST, DEFAULT_HOST), int(os.environ.get(ENV_PORT, DEFAULT_PORT))))


if __name__ == "__main__":
    main()
