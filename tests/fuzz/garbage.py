"""Garbage for the bus: Hypothesis strategies of messages no consumer may choke on, and the check that every
one of them ended up in its service's dead-letter queue with a reason.

Each `Garbage` is one message for one service's queue, of one kind:

    bytes            random bytes
    json             random JSON (NaN, huge integers and all)
    wrong_type       an envelope of a type the service handles, valid but for one field of the wrong type
    unknown_type     an envelope of a type nobody speaks
    unknown_version  a type the service handles, at a version nobody speaks, with a valid v1 payload
    invalid_payload  a type the service handles, v1, its payload missing a field or holding a wrong value
    wrong_queue      a valid message of a type the service does not handle
    bad_headers      undecodable bytes whose bus headers (deliveries, deliver-at, reply-to…) are garbage too

Every kind but wrong_queue is checked at draw time to be undecodable (`Envelope.decode` raises), so "must be
dead-lettered" is exactly what the contract says. Valid payloads come from `st.builds` over the registered
models, so they follow the contracts as they evolve.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import typing
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError

from contracts import ContractError, Envelope, Message
from contracts.envelope import registered
from contracts.routing import keys_consumed_by
from libs.bus import Bus, DeadLetter
from libs.bus import constants as bus_constants

T = TypeVar("T")
# What the dead-letter reason must say, per kind (libs.bus.base.Consumer and contracts.envelope word them).
REASONS: Mapping[str, tuple[str, ...]] = {
    "bytes": ("undecodable: ",),
    "json": ("undecodable: ",),
    "wrong_type": ("undecodable: ",),
    "unknown_type": ("undecodable: unknown message type",),
    "unknown_version": ("undecodable: ", "is not supported"),
    "invalid_payload": ("undecodable: ",),
    "wrong_queue": ("has no handler for",),
    "bad_headers": ("undecodable: ",),
}
# The bus's own headers, which a consumer reads before it decodes anything.
BUS_HEADERS = (
    bus_constants.H_DELIVERIES,
    bus_constants.H_DELIVER_AT,
    bus_constants.H_REPLY_TO,
    bus_constants.H_CORRELATION,
    bus_constants.H_ROUTE,
    bus_constants.H_TARGET,
    "traceparent",
    "tracestate",
    "X-Amzn-Trace-Id",
)
ENVELOPE_FIELDS = ("id", "type", "version", "occurred_at", "workflow_id", "user_id", "causation_id", "attempt")

MESSAGES: dict[str, type[Message]] = {t: model for (t, v), model in registered().items() if v == 1}


@dataclass(frozen=True)
class Garbage:
    service: str
    kind: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def handled_types(service: str) -> tuple[str, ...]:
    """The message types a service has handlers for (routing keys carry a provider suffix for workers)."""
    types = []
    for key in keys_consumed_by(service):
        types.append(key if key in MESSAGES else key.rsplit(".", 1)[0])
    return tuple(dict.fromkeys(types))


# --- JSON and valid values ---------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)


def _field_strategy(annotation: Any) -> st.SearchStrategy[Any] | None:
    """A strategy for the field types `st.builds` gets wrong for pydantic (aware datetimes, Any-dicts, nested
    models); None: let `st.builds` infer it."""
    args = typing.get_args(annotation)
    if annotation is AwareDatetime or AwareDatetime in args or annotation is datetime or datetime in args:
        return st.datetimes(timezones=st.just(UTC))
    if annotation is Decimal or Decimal in args:
        return st.decimals(min_value=0, max_value=1000, places=4)
    if annotation is float or float in args:
        return st.floats(min_value=0.001, max_value=1e6)
    if annotation is int or int in args:
        return st.integers(min_value=0, max_value=10**6)
    if typing.get_origin(annotation) is dict:
        return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
    if typing.get_origin(annotation) is list and args == (str,):
        return st.lists(st.text(min_size=1, max_size=8), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return models(annotation)
    nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    if nested:
        return (st.none() | models(nested[0])) if type(None) in args else models(nested[0])
    return None


def models(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Valid instances of `model`."""
    overrides = {}
    for name, info in model.model_fields.items():
        strategy = _field_strategy(info.annotation)
        if strategy is not None:
            overrides[name] = strategy
    return _instances(st.builds(model, **overrides))


@st.composite
def _instances(draw: st.DrawFn, builds: st.SearchStrategy[Any]) -> Any:
    try:
        return draw(builds)
    except ValidationError:
        assume(False)  # a constraint `st.builds` does not know about (a bound, a pattern): draw again


@functools.cache
def valid_payloads(message_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid v1 payloads of `message_type`, as they travel (JSON)."""
    return models(MESSAGES[message_type]).map(lambda payload: payload.model_dump(mode="json"))


def envelopes(message_type: str, workflow_ids: st.SearchStrategy[uuid.UUID]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid envelopes (as JSON objects) of `message_type`, about one of `workflow_ids`."""
    return st.builds(
        lambda payload, workflow_id, attempt: {
            "id": str(uuid.uuid4()),
            "type": message_type,
            "version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "workflow_id": str(workflow_id),
            "user_id": "fuzz-user",
            "causation_id": None,
            "attempt": attempt,
            "payload": payload,
        },
        valid_payloads(message_type),
        workflow_ids,
        st.integers(min_value=1, max_value=5),
    )


# --- garbage -------------------------------------------------------------------------------------------------


def undecodable(body: bytes) -> bool:
    try:
        Envelope.decode(body)
    except ContractError:
        return True
    return False


def decodable(body: bytes) -> bool:
    return not undecodable(body)


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _with(envelope: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**envelope, key: value}


def garbage(service: str, workflow_ids: st.SearchStrategy[uuid.UUID]) -> dict[str, st.SearchStrategy[Garbage]]:
    """Garbage for `service`'s queue, by kind; envelope-shaped kinds name one of `workflow_ids`."""
    handled = handled_types(service)
    others = tuple(t for t in MESSAGES if t not in handled)
    own = st.one_of([envelopes(t, workflow_ids) for t in handled])
    # Within 64 bits: a larger number is not JSON to the decoder, a case `json` already covers.
    versions = st.integers(min_value=-(2**63), max_value=2**63 - 1).filter(lambda v: v != 1)
    bodies: dict[str, st.SearchStrategy[bytes]] = {
        "bytes": st.binary(max_size=300),
        "json": JSON_VALUES.map(_dump),
        "wrong_type": st.tuples(own, st.sampled_from(ENVELOPE_FIELDS), JSON_VALUES).map(
            lambda t: _dump(_with(t[0], t[1], t[2]))
        ),
        "unknown_type": st.tuples(own, st.text(min_size=1, max_size=40).filter(lambda t: t not in MESSAGES)).map(
            lambda t: _dump(_with(t[0], "type", t[1]))
        ),
        "unknown_version": st.tuples(own, versions).map(lambda t: _dump(_with(t[0], "version", t[1]))),
        "invalid_payload": st.tuples(own, JSON_VALUES, st.booleans(), st.integers(min_value=0, max_value=63)).map(
            lambda t: _dump(_with(t[0], "payload", _break(t[0]["payload"], t[1], drop=t[2], index=t[3])))
        ),
    }
    kinds = {
        kind: strategy.filter(undecodable).map(functools.partial(Garbage, service, kind))
        for kind, strategy in bodies.items()
    }
    if others:
        wrong_queue = st.one_of([envelopes(t, workflow_ids) for t in others]).map(_dump).filter(decodable)
        kinds["wrong_queue"] = wrong_queue.map(functools.partial(Garbage, service, "wrong_queue"))
    return kinds


def _break(payload: dict[str, Any], value: Any, *, drop: bool, index: int) -> Any:
    """`payload` with its `index`-th field dropped (drop) or replaced by `value` — or `value` itself when it has
    no field."""
    if not payload:
        return value
    name = sorted(payload)[index % len(payload)]
    if drop:
        return {k: v for k, v in payload.items() if k != name}
    return {**payload, name: value}


def bad_headers(service: str) -> st.SearchStrategy[Garbage]:
    """Undecodable bodies whose bus headers hold garbage (never a plain integer: that would be a real delay)."""
    not_an_int = st.text(max_size=30).filter(lambda s: not s.strip().lstrip("-").isdigit())
    headers = st.dictionaries(st.sampled_from(BUS_HEADERS), not_an_int, min_size=1, max_size=4)
    return st.builds(
        lambda body, hdrs: Garbage(service, "bad_headers", body, hdrs),
        st.binary(max_size=100).filter(undecodable),
        headers,
    )


def sample(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """Up to `count` examples of `strategy`, drawn by Hypothesis's generator. Nothing is shrunk: the batch is
    published whole and a failure names the bodies concerned."""
    drawn: list[T] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)

    collect()
    return drawn


# --- publishing and checking ---------------------------------------------------------------------------------


async def publish(bus: Bus, batch: Iterable[Garbage]) -> None:
    for item in batch:
        await bus.publish_raw(item.service, item.body, dict(item.headers))


@dataclass
class DeadLetterReport:
    """What came back from one service's dead-letter queue, against what was sent."""

    missing: list[Garbage] = field(default_factory=list)
    unexpected: list[DeadLetter] = field(default_factory=list)
    wrong_reason: list[tuple[Garbage, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_reason)

    def __str__(self) -> str:
        lines = [f"never dead-lettered ({len(self.missing)}):"]
        lines += [f"  {g.kind} {g.body[:160]!r} {dict(g.headers)}" for g in self.missing[:15]]
        lines.append(f"dead-lettered without having been sent as garbage ({len(self.unexpected)}):")
        lines += [f"  {d.reason[:120]} {d.body[:120]!r}" for d in self.unexpected[:15]]
        lines.append(f"dead-lettered with a reason that does not say why ({len(self.wrong_reason)}):")
        lines += [f"  {g.kind} {reason[:160]!r} {g.body[:80]!r}" for g, reason in self.wrong_reason[:15]]
        return "\n".join(lines)


async def collect_dead_letters(bus: Bus, service: str, sent: list[Garbage], *, timeout: float) -> DeadLetterReport:
    """Drain `service`'s dead-letter queue until every message of `sent` is in it (or `timeout`), and say
    what is missing, what is there that was not sent, and which reasons do not fit their kind."""
    pending = list(sent)
    report = DeadLetterReport()
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for letter in await bus.dead_letters(service):
            item = _match(letter, pending)
            if item is None:
                report.unexpected.append(letter)
                continue
            pending.remove(item)
            if not all(part in letter.reason for part in REASONS[item.kind]):
                report.wrong_reason.append((item, letter.reason))
        await asyncio.sleep(0.05)
    report.missing = pending
    return report


def _match(letter: DeadLetter, pending: list[Garbage]) -> Garbage | None:
    """The sent message `letter` is: same body, and its headers among the letter's (the bus adds its own);
    failing that, any with the same body."""
    same_body = [g for g in pending if g.body == letter.body]
    for item in same_body:
        if all(letter.headers.get(k) == v for k, v in item.headers.items()):
            return item
    return same_body[0] if same_body else None
