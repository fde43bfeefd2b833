"""Dead letters for operators: what one says about itself, how a replay marks it, and the depth gauge.

Every transport keeps a service's dead letters in its dead-letter queue with the headers the bus wrote when
it put them there (`x-ho-dead-reason`, `x-ho-dead-at`). This module reads those, transport-neutrally:

- `describe` turns a dead letter into a `DeadLetterInfo` (id, type, version, reason, when, workflow id and a
  redacted preview of the payload) — safe to show to an operator: message text, template variables,
  results and anything secret-like never leave it (`preview`).
- `replay_headers` / `selected` are the replay rules every transport applies: a replayed message starts
  with a fresh delivery count and no dead-letter headers, carries `x-ho-replays` (+1) and the id of the
  replay that sent it. When it fails again it is dead-lettered again like any message, with its new reason
  — and that same replay, still scanning the queue, recognises it by the replay id and leaves it: a
  replay never loops, and nothing is ever replayed automatically.
- `DeadLetterDepth` reads every dead-letter queue's depth periodically for the `bus_dead_letters` gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from libs.bus import constants as c
from libs.bus.base import Bus, DeadLetter, int_header
from libs.bus.metrics import BusMetrics, get_bus_metrics

log = structlog.get_logger("libs.bus.dead_letters")

REDACTED = "[redacted]"
# Payload fields holding message text, generated content or user data (contracts.messages): never shown.
TEXT_FIELDS = frozenset(
    {
        "text",
        "content",
        "result",
        "prompt",
        "vars",
        "recipient_vars",
        "data",
        "message",
        "params",
        "summary",
        "body",
        "url",
        "callback_url",
    }
)
# Secret-like field names (api_key, access_token, password, x-signature, ...).
SECRET_NAME = re.compile(r"(token|secret|passw|key|credential|authori[sz]ation|signature|cookie|session)", re.I)
# Counts whose names look secret-like (prompt_tokens) stay: they are numbers, not secrets.
COUNT_SUFFIXES = ("_tokens", "_count")
# Bounds of a preview: strings are cut, long lists shortened, deep nesting elided.
PREVIEW_MAX_STRING = 120
PREVIEW_MAX_ITEMS = 5
PREVIEW_MAX_DEPTH = 6
# Header prefixes of a broker's own dead-lettering bookkeeping (RabbitMQ), dropped on replay.
_BROKER_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


@dataclass(frozen=True)
class DeadLetterInfo:
    """One dead letter as an operator sees it (no message text, no secrets)."""

    id: str  # the envelope id; for a body that is not an envelope, `sha256:` + a digest of the bytes
    type: str | None
    version: int | None
    reason: str
    dead_lettered_at: datetime | None  # None: dead-lettered by a release that did not stamp the time
    workflow_id: str | None
    replays: int  # times an operator already replayed it
    preview: Any  # the payload, redacted (see `preview`); for undecodable bytes, their size

    def age_s(self, now: datetime | None = None) -> float | None:
        if self.dead_lettered_at is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - self.dead_lettered_at).total_seconds())


def replay_headers(headers: Mapping[str, str], replay_id: str) -> dict[str, str]:
    """The headers a dead letter goes back to its queue with: no delivery count, no delay, no dead-letter
    bookkeeping (so a new failure counts from one and records its own reason), marked as replayed."""
    dropped = {c.H_DELIVERIES, c.H_DELIVER_AT, c.H_DEAD_REASON, c.H_DEAD_AT, c.H_BROKER_DELIVERIES}
    kept = {k: v for k, v in headers.items() if k not in dropped and not k.startswith(_BROKER_DEATH_HEADERS)}
    kept[c.H_REPLAYS] = str(int_header(headers, c.H_REPLAYS) + 1)
    kept[c.H_REPLAY_ID] = replay_id
    return kept


def selected(dead: DeadLetter, message_id: str | None, replay_id: str) -> bool:
    """Whether a replay (`replay_id`) of `message_id` (None: all) takes this dead letter: not one that this
    very replay sent back and that failed again meanwhile."""
    if dead.headers.get(c.H_REPLAY_ID) == replay_id:
        return False
    return message_id is None or message_id_of(dead.body) == message_id


def message_id_of(body: bytes) -> str:
    """The id a dead letter is listed and replayed by."""
    envelope = _json_object(body)
    if envelope is not None and isinstance(envelope.get("id"), str):
        return str(envelope["id"])
    return "sha256:" + hashlib.sha256(body).hexdigest()[:32]


def describe(dead: DeadLetter) -> DeadLetterInfo:
    """What an operator may see of `dead`; never raises, whatever the bytes."""
    envelope = _json_object(dead.body)
    dead_at_ms = int_header(dead.headers, c.H_DEAD_AT)
    when = datetime.fromtimestamp(dead_at_ms / 1000, UTC) if dead_at_ms > 0 else None
    replays = int_header(dead.headers, c.H_REPLAYS)
    if envelope is None:
        return DeadLetterInfo(
            id=message_id_of(dead.body),
            type=None,
            version=None,
            reason=dead.reason,
            dead_lettered_at=when,
            workflow_id=None,
            replays=replays,
            preview={"undecodable": True, "bytes": len(dead.body)},
        )
    type_, version, workflow = envelope.get("type"), envelope.get("version"), envelope.get("workflow_id")
    return DeadLetterInfo(
        id=message_id_of(dead.body),
        type=_short(type_) if isinstance(type_, str) else None,
        version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        reason=dead.reason,
        dead_lettered_at=when,
        workflow_id=_short(workflow) if isinstance(workflow, str) else None,
        replays=replays,
        preview=preview(envelope.get("payload")),
    )


def preview(value: Any, name: str = "", depth: int = 0) -> Any:
    """`value` with message text and secrets replaced by "[redacted]", strings cut, lists shortened; ids,
    types, states and counts stay, so an operator can tell what the message was about."""
    lowered = name.lower()
    if lowered in TEXT_FIELDS:
        return REDACTED
    if SECRET_NAME.search(lowered) and not (lowered.endswith(COUNT_SUFFIXES) and _is_number(value)):
        return REDACTED
    if depth >= PREVIEW_MAX_DEPTH and isinstance(value, dict | list):
        return "[...]"
    if isinstance(value, dict):
        return {str(k): preview(v, str(k), depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        shown = [preview(v, name, depth + 1) for v in value[:PREVIEW_MAX_ITEMS]]
        if len(value) > PREVIEW_MAX_ITEMS:
            shown.append(f"[+{len(value) - PREVIEW_MAX_ITEMS} more]")
        return shown
    if isinstance(value, str):
        return _short(value)
    return value


class DeadLetterDepth:
    """Reads the depth of `services`' dead-letter queues every `interval_s` and reports it on the
    `bus_dead_letters` gauge (attribute `service`). Run by the gateway: one reader per deployment is enough,
    and it is the process allowed to look into dead-letter queues."""

    def __init__(
        self,
        bus: Bus,
        services: Iterable[str],
        interval_s: float = c.DEAD_LETTER_DEPTH_INTERVAL_S,
        metrics: BusMetrics | None = None,
    ) -> None:
        self._bus = bus
        self._metrics = metrics or get_bus_metrics()
        self._services = tuple(services)
        self._interval_s = interval_s
        self.depths: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        # A cancel that lands while aio-pika closes the look-up's channel can be swallowed there, leaving the
        # loop to sleep a whole interval before `stop` returns: the loop also ends when this is set.
        self._stopping = asyncio.Event()

    def _observe(self) -> Mapping[str, int]:
        return dict(self.depths)

    async def refresh(self) -> None:
        for service in self._services:
            try:
                self.depths[service] = await self._bus.dead_letter_depth(service)
            except Exception as exc:  # a broker hiccup: keep the last value, try again next round
                log.warning("bus.dead_letters.depth_failed", service=service, error=repr(exc))

    def start(self) -> None:
        self._metrics.register_dead_letter_depth(self._observe)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._metrics.unregister_dead_letter_depth(self._observe)
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _short(text: str) -> str:
    return text if len(text) <= PREVIEW_MAX_STRING else text[:PREVIEW_MAX_STRING] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
