"""In-process simulator of the fan platform's chat API, for tests and the embedded mode
(docs/architecture.md#delivery-safety).

    POST /accounts/{accountId}/chats/{recipientId}/messages   {"text": "..."}
    Authorization: Bearer <token>        Idempotency-Key: <the delivery's stable id>
    → 200 {"id": "msg_…", ...} | 429 + Retry-After | 400 / 401 / 422 | 5xx

    GET /accounts/{accountId}/messages/by-key/{idempotencyKey}         the look-up (never a send)
    Authorization: Bearer <token>
    → 200 with the body the first message taken with that key was answered with | 404 | 401 | 5xx

It is the referee of the delivery tests, so it is strict where the real platform would be: every arrival
is logged with its time; a message whose Idempotency-Key was already accepted is answered with the first
answer and not delivered again (a replay); a message over the account's rolling-window limit or under the
fan's minimum spacing is refused with 429 — measured on this server's own arrival times, so a violation
by the services fails a test instead of passing silently. Faults (5xx, 429, 400, latency, a connection
dropped after the message was taken), on the send or the look-up route, are queued programmatically or
through ``/_sim/faults``; ``/_sim/arrivals`` serves the log to tests in other processes.

``honour_idempotency=False`` (PLATFORM_SIMULATOR_HONOUR_IDEMPOTENCY=false) makes it a platform that ignores
Idempotency-Key: a message sent again with the same key is delivered again (logged "sent" twice), so a
test proves the of-sender's exactly-once does not rest on the key. The look-up works either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

import orjson
import pydantic
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from libs.simulators import serve
from libs.simulators.errors import InvalidFaultError

log = structlog.get_logger(__name__)

# --- constants ------------------------------------------------------------------------------------------
MESSAGES_PATH = "/accounts/{account_id}/chats/{recipient_id}/messages"
ADMIN_FAULTS_PATH = "/_sim/faults"
LOOKUP_PATH = "/accounts/{account_id}/messages/by-key/{idempotency_key}"
ADMIN_ARRIVALS_PATH = "/_sim/arrivals"
MAX_TEXT_LENGTH = 10_000  # longer texts are refused with 400, as a chat API would
DEFAULT_RETRY_AFTER_S = 1.0


class PlatformFaultKind(StrEnum):
    """What an injected fault does to the next matching request."""

    LATENCY = "latency"  # wait latency_s, then handle normally
    SERVER_ERROR = "server_error"  # answer `status` (5xx); the message is not taken
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After; the message is not taken
    BAD_REQUEST = "bad_request"  # 400; the message is not taken
    RESET_AFTER_RECEIVE = "reset_after_receive"  # take the message, wait latency_s, drop the connection


class PlatformRoute(StrEnum):
    """Which requests a fault applies to."""

    SEND = "send"  # POST …/messages
    LOOKUP = "lookup"  # GET …/messages/by-key/{key}; reset_after_receive drops it after the look-up


class PlatformFault(BaseModel):
    """One injected fault; also the JSON body of ``POST /_sim/faults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: PlatformFaultKind
    count: int | None = Field(default=1, ge=1, description="next N matching requests; null: until cleared")
    account_id: str | None = Field(default=None, description="only requests for this account")
    route: PlatformRoute = Field(default=PlatformRoute.SEND, description="the route whose requests it hits")
    status: int = Field(default=503, ge=500, le=599, description="status of a server_error")
    retry_after: float = Field(default=DEFAULT_RETRY_AFTER_S, ge=0, description="Retry-After of a 429, s")
    latency_s: float = Field(default=0.0, ge=0)


@dataclass(frozen=True)
class PlatformLimits:
    """The platform's own limits (the services are configured to stay inside them)."""

    account_limit: int = 10
    window_s: float = 60.0
    recipient_min_interval_s: float = 45.0
    hourly_limit: int = 0  # messages per account in any `hour_s`; 0: no hourly limit
    hour_s: float = 3600.0

    def account_windows(self) -> list[tuple[int, float]]:
        """Every (limit, window s) an account's messages are counted in."""
        windows = [(self.account_limit, self.window_s)]
        if self.hourly_limit:
            windows.append((self.hourly_limit, self.hour_s))
        return windows


@dataclass(frozen=True)
class Arrival:
    """One message request (POST) as the platform saw it. `outcome`: sent (delivered to the fan — twice for
    one key when Idempotency-Key is not honoured), replayed (an accepted Idempotency-Key again: answered,
    not delivered), rate_limited (a limit was exceeded), a fault kind, abandoned (the client went away
    during a latency fault, before the message was taken), unauthorized, invalid_request, conflict (a key
    reused for another message)."""

    at: float  # time.time() when the request arrived
    account_id: str
    recipient_id: str
    idempotency_key: str | None
    outcome: str
    message_id: str | None = None
    text: str | None = None  # what the fan would read (tests check personalization); None when unreadable

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Lookup:
    """One look-up as the platform saw it: `message_id` of the message found, None when none was (or when
    a fault answered it instead, `outcome` naming the fault kind)."""

    at: float
    account_id: str
    idempotency_key: str
    outcome: str  # found, not_found, unauthorized, or a fault kind
    message_id: str | None = None


@dataclass
class _Accepted:
    fingerprint: tuple[str, str, str]  # account, recipient, text: a reused key must carry the same message
    body: dict[str, Any]


@dataclass
class _ActiveFault:
    spec: PlatformFault
    remaining: int | None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


class PlatformSimulator(serve.HttpSimulator):
    """The platform's state (accepted messages, arrival log, limits, faults) and the server serving it."""

    EVENT_PREFIX = "platform_sim"

    def __init__(
        self, limits: PlatformLimits | None = None, *, token: str | None = None, honour_idempotency: bool = True
    ) -> None:
        super().__init__()
        self.limits = limits or PlatformLimits()
        self.token = token  # None: any bearer token is accepted
        self.honour_idempotency = honour_idempotency  # False: a key sent again is delivered again
        self._arrivals: list[Arrival] = []
        self._lookups: list[Lookup] = []
        self._accepted: dict[tuple[str, str], _Accepted] = {}
        self._sent_at: dict[str, deque[float]] = defaultdict(deque)  # account -> accepted times in the window
        self._last_to: dict[tuple[str, str], float] = {}
        self._faults: list[_ActiveFault] = []

    # --- faults ------------------------------------------------------------------------------------------
    def add_fault(self, kind: PlatformFaultKind | str, **fields: Any) -> PlatformFault:
        """Queue a fault for the next `count` matching requests (faults apply first-in first-out)."""
        try:
            spec = PlatformFault.model_validate({"kind": kind, **fields})
        except pydantic.ValidationError as exc:
            raise InvalidFaultError(str(exc)) from exc
        self._faults.append(_ActiveFault(spec, spec.count))
        log.info("platform_sim.fault_added", kind=spec.kind.value, count=spec.count, account_id=spec.account_id)
        return spec

    def clear_faults(self) -> int:
        cleared, self._faults = len(self._faults), []
        return cleared

    def _take_fault(self, account_id: str, route: PlatformRoute = PlatformRoute.SEND) -> PlatformFault | None:
        for index, fault in enumerate(self._faults):
            if fault.spec.route is route and fault.spec.account_id in (None, account_id):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        del self._faults[index]
                return fault.spec
        return None

    # --- what tests read ---------------------------------------------------------------------------------
    def arrivals(self) -> list[Arrival]:
        """Every message request received (not the look-ups), oldest first."""
        return list(self._arrivals)

    def delivered(self) -> list[Arrival]:
        """The messages fans received (one per accepted Idempotency-Key when it is honoured, or per request
        without one)."""
        return [a for a in self._arrivals if a.outcome == "sent"]

    def lookups(self) -> list[Lookup]:
        """Every look-up received, oldest first."""
        return list(self._lookups)

    def reset(self) -> None:
        """Forget arrivals, look-ups, accepted keys and limit state (faults stay)."""
        self._arrivals.clear()
        self._lookups.clear()
        self._accepted.clear()
        self._sent_at.clear()
        self._last_to.clear()

    # --- serving -----------------------------------------------------------------------------------------
    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        at = time.time()
        account, recipient = request.match_info["account_id"], request.match_info["recipient_id"]
        key = request.headers.get("Idempotency-Key")

        text: str | None = None

        def record(outcome: str, message_id: str | None = None) -> None:
            self._arrivals.append(Arrival(at, account, recipient, key, outcome, message_id, text))

        if not self._authorized(request):
            record("unauthorized")
            return _error(401, "unauthorized", "missing or invalid bearer token")
        text = await _read_text(request)
        if text is None:
            record("invalid_request")
            return _error(400, "invalid_request", f'body must be {{"text": "1..{MAX_TEXT_LENGTH} characters"}}')
        fault = self._take_fault(account)
        reset = fault if fault is not None and fault.kind is PlatformFaultKind.RESET_AFTER_RECEIVE else None
        if fault is not None and reset is None:
            log.info("platform_sim.fault_injected", kind=fault.kind.value, account_id=account)
            try:
                await asyncio.sleep(fault.latency_s)
            except asyncio.CancelledError:  # the client gave up (its timeout) before the message was taken
                record("abandoned")
                raise
            refusal = _fault_response(fault)
            if refusal is not None:
                record(fault.kind.value)
                return refusal
        if self.honour_idempotency and key is not None and (account, key) in self._accepted:
            accepted = self._accepted[(account, key)]
            if accepted.fingerprint != (account, recipient, text):
                record("conflict")
                return _error(422, "idempotency_key_reused", "the Idempotency-Key was used for another message")
            record("replayed", accepted.body["id"])
            if reset is not None:
                await _drop_answer(request, reset, account)
            return web.json_response(accepted.body, dumps=lambda v: orjson.dumps(v).decode())
        refusal = self._over_limit(account, recipient, at)
        if refusal is not None:
            record("rate_limited")
            return refusal
        body = self._accept(account, recipient, key, text, at)
        record("sent", body["id"])
        if reset is not None:  # the message is taken, the answer never arrives
            await _drop_answer(request, reset, account)
        return web.json_response(body, dumps=lambda v: orjson.dumps(v).decode())

    async def _lookup_message(self, request: web.Request) -> web.StreamResponse:
        """The message taken with this Idempotency-Key, as its first answer said; never a send."""
        at = time.time()
        account, key = request.match_info["account_id"], request.match_info["idempotency_key"]

        def record(outcome: str, message_id: str | None = None) -> None:
            self._lookups.append(Lookup(at, account, key, outcome, message_id))

        if not self._authorized(request):
            record("unauthorized")
            return _error(401, "unauthorized", "missing or invalid bearer token")
        fault = self._take_fault(account, PlatformRoute.LOOKUP)
        reset = fault if fault is not None and fault.kind is PlatformFaultKind.RESET_AFTER_RECEIVE else None
        if fault is not None and reset is None:
            log.info("platform_sim.fault_injected", kind=fault.kind.value, account_id=account, route="lookup")
            await asyncio.sleep(fault.latency_s)
            refusal = _fault_response(fault)
            if refusal is not None:
                record(fault.kind.value)
                return refusal
        accepted = self._accepted.get((account, key))
        if reset is not None:
            record(reset.kind.value)
            await _drop_answer(request, reset, account)
        if accepted is None:
            record("not_found")
            return _error(404, "not_found", "no message was taken with this Idempotency-Key")
        record("found", accepted.body["id"])
        return web.json_response(accepted.body, dumps=lambda v: orjson.dumps(v).decode())

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return False
        return self.token is None or credentials == self.token

    def _over_limit(self, account: str, recipient: str, at: float) -> web.Response | None:
        """429 when one more message now would exceed a limit (measured on accepted arrival times)."""
        limits = self.limits
        windows = limits.account_windows()
        sent = self._sent_at[account]
        while sent and sent[0] <= at - max(span for _, span in windows):
            sent.popleft()
        waits = []
        for limit, span in windows:
            recent = [t for t in sent if t > at - span]
            if len(recent) >= limit:
                waits.append(recent[len(recent) - limit] + span - at)
        last = self._last_to.get((account, recipient))
        if last is not None and at - last < limits.recipient_min_interval_s:
            waits.append(last + limits.recipient_min_interval_s - at)
        if not waits:
            return None
        retry_after = f"{max(waits):.3f}"
        log.warning("platform_sim.rate_limited", account_id=account, retry_after=retry_after)
        return _error(429, "rate_limited", "message limit exceeded", {"Retry-After": retry_after})

    def _accept(self, account: str, recipient: str, key: str | None, text: str, at: float) -> dict[str, Any]:
        self._sent_at[account].append(at)
        self._last_to[(account, recipient)] = at
        body = {"id": f"msg_{uuid.uuid4().hex[:20]}", "accountId": account, "recipientId": recipient, "createdAt": at}
        if key is not None:  # the look-up answers with the first message taken under a key
            self._accepted.setdefault((account, key), _Accepted((account, recipient, text), body))
        return body

    def _app(self) -> web.Application:
        return create_platform_app(self)


async def _read_text(request: web.Request) -> str | None:
    """The message text of a well-formed body, else None."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT_LENGTH:
        return None
    return text


async def _drop_answer(request: web.Request, fault: PlatformFault, account: str) -> NoReturn:
    """RESET_AFTER_RECEIVE: the request was handled, then the connection drops (after latency_s) instead of
    the answer."""
    log.info("platform_sim.fault_injected", kind=fault.kind.value, account_id=account)
    await asyncio.sleep(fault.latency_s)
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


def _fault_response(fault: PlatformFault) -> web.Response | None:
    """The answer a fault gives instead of handling the request (None: handle it, e.g. after latency)."""
    if fault.kind is PlatformFaultKind.SERVER_ERROR:
        return _error(fault.status, "server_error", "the platform had an error; try again")
    if fault.kind is PlatformFaultKind.RATE_LIMIT:
        return _error(429, "rate_limited", "slow down", {"Retry-After": f"{fault.retry_after:g}"})
    if fault.kind is PlatformFaultKind.BAD_REQUEST:
        return _error(400, "invalid_request", "the platform refused this message")
    return None


SIMULATOR_KEY = web.AppKey("platform_simulator", PlatformSimulator)


async def _post(request: web.Request) -> web.StreamResponse:
    return await request.app[SIMULATOR_KEY]._post_message(request)


async def _lookup(request: web.Request) -> web.StreamResponse:
    return await request.app[SIMULATOR_KEY]._lookup_message(request)


async def _add_fault(request: web.Request) -> web.Response:
    try:
        spec = PlatformFault.model_validate_json(await request.read())
    except pydantic.ValidationError as exc:
        return _error(400, "invalid_request", str(exc))
    request.app[SIMULATOR_KEY].add_fault(spec.kind, **spec.model_dump(exclude={"kind"}))
    return web.json_response({"fault": spec.model_dump(mode="json")}, status=201)


async def _clear_faults(request: web.Request) -> web.Response:
    return web.json_response({"cleared": request.app[SIMULATOR_KEY].clear_faults()})


async def _get_arrivals(request: web.Request) -> web.Response:
    arrivals = [a.to_json() for a in request.app[SIMULATOR_KEY].arrivals()]
    return web.json_response({"arrivals": arrivals})


async def _reset(request: web.Request) -> web.Response:
    request.app[SIMULATOR_KEY].reset()
    return web.json_response({"reset": True})


def create_platform_app(sim: PlatformSimulator) -> web.Application:
    """The aiohttp application serving `sim`: the messages route and the ``/_sim`` admin routes."""
    app = web.Application()
    app[SIMULATOR_KEY] = sim
    app.router.add_post(MESSAGES_PATH, _post)
    app.router.add_get(LOOKUP_PATH, _lookup)
    app.router.add_post(ADMIN_FAULTS_PATH, _add_fault)
    app.router.add_delete(ADMIN_FAULTS_PATH, _clear_faults)
    app.router.add_get(ADMIN_ARRIVALS_PATH, _get_arrivals)
    app.router.add_delete(ADMIN_ARRIVALS_PATH, _reset)
    return app


def main() -> None:
    """Entry point of `python -m libs.simulators.platform`: host, port, limits and token from the environment
    (PLATFORM_SIMULATOR_HOST/PORT, PLATFORM_SIMULATOR_ACCOUNT_LIMIT/WINDOW_S/RECIPIENT_MIN_INTERVAL_S/TOKEN)."""
    env = os.environ
    limits = PlatformLimits(
        account_limit=int(env.get("PLATFORM_SIMULATOR_ACCOUNT_LIMIT", PlatformLimits.account_limit)),
        window_s=float(env.get("PLATFORM_SIMULATOR_WINDOW_S", PlatformLimits.window_s)),
        recipient_min_interval_s=float(
            env.get("PLATFORM_SIMULATOR_RECIPIENT_MIN_INTERVAL_S", PlatformLimits.recipient_min_interval_s)
        ),
    )
    # PLATFORM_SIMULATOR_HONOUR_IDEMPOTENCY=false: a platform that ignores Idempotency-Key.
    honour = env.get("PLATFORM_SIMULATOR_HONOUR_IDEMPOTENCY", "true").strip().lower() not in ("0", "false", "no")
    simulator = PlatformSimulator(limits, token=env.get("PLATFORM_SIMULATOR_TOKEN"), honour_idempotency=honour)
    host = env.get("PLATFORM_SIMULATOR_HOST", "127.0.0.1")
    asyncio.run(serve.serve_forever(simulator, host, int(env.get("PLATFORM_SIMULATOR_PORT", "8091"))))


if __name__ == "__main__":
    main()
