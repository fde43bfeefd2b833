"""The one envelope every message travels in, and the base class of every payload.

The envelope's `id` is the de-duplication key; `causation_id` links a message to the one that caused it.
Trace context is NOT here: it travels in transport headers (docs/architecture.md#tracing).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contracts.errors import MalformedMessage, UnknownMessageType, UnsupportedVersion


class Message(BaseModel):
    """Base of every payload. Subclasses set TYPE and VERSION and register themselves."""

    # Unknown fields are ignored so that a vN consumer keeps working when a producer adds an optional field.
    model_config = ConfigDict(extra="ignore", frozen=True)

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


_REGISTRY: dict[tuple[str, int], type[Message]] = {}
M = TypeVar("M", bound=type[Message])


def register(cls: M) -> M:
    """Class decorator: make `cls` decodable from the bus."""
    key = (cls.TYPE, cls.VERSION)
    if key in _REGISTRY:
        raise ValueError(f"message {cls.TYPE} v{cls.VERSION} registered twice")
    _REGISTRY[key] = cls
    return cls


def registered() -> dict[tuple[str, int], type[Message]]:
    """Every (type, version) this code speaks."""
    return dict(_REGISTRY)


def model_for(type_: str, version: int) -> type[Message]:
    try:
        return _REGISTRY[(type_, version)]
    except KeyError:
        if any(t == type_ for t, _ in _REGISTRY):
            spoken = sorted(v for t, v in _REGISTRY if t == type_)
            raise UnsupportedVersion(f"{type_} v{version} is not supported (speaks {spoken})") from None
        raise UnknownMessageType(f"unknown message type {type_!r}") from None


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int
    occurred_at: AwareDatetime = Field(default_factory=_now)
    workflow_id: uuid.UUID | None = None
    user_id: str | None = None
    causation_id: uuid.UUID | None = None
    attempt: int = Field(default=1, ge=1)
    payload: Message

    @classmethod
    def new(
        cls,
        payload: Message,
        *,
        workflow_id: uuid.UUID | None = None,
        user_id: str | None = None,
        attempt: int = 1,
        id: uuid.UUID | None = None,
    ) -> Self:
        """A first message of a chain (no cause)."""
        return cls(
            id=id or uuid.uuid4(),
            type=payload.TYPE,
            version=payload.VERSION,
            workflow_id=workflow_id,
            user_id=user_id,
            attempt=attempt,
            payload=payload,
        )

    def child(self, payload: Message, *, attempt: int = 1, id: uuid.UUID | None = None) -> Envelope:
        """A message caused by this one: same workflow and user, `causation_id` = this id."""
        return Envelope(
            id=id or uuid.uuid4(),
            type=payload.TYPE,
            version=payload.VERSION,
            workflow_id=self.workflow_id,
            user_id=self.user_id,
            causation_id=self.id,
            attempt=attempt,
            payload=payload,
        )

    def derived_child(self, payload: Message, *, key: str | None = None, attempt: int = 1) -> Envelope:
        """A child whose id is derived from this message's: uuid5(this id, `key`, default the child's type).
        Handling this message again — a redelivery — publishes the same ids, which consumers de-duplicate;
        `key` tells apart two children of one type."""
        return self.child(payload, attempt=attempt, id=uuid.uuid5(self.id, key or payload.TYPE))

    def encode(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"payload"})
        body["payload"] = self.payload.model_dump(mode="json")
        return orjson.dumps(body)

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        """Bytes → envelope with its typed payload; raises a ContractError subclass, never anything else."""
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise MalformedMessage("an envelope must be a JSON object")
        type_, version = body.get("type"), body.get("version")
        if not isinstance(type_, str) or not isinstance(version, int) or isinstance(version, bool):
            raise MalformedMessage("envelope lacks a string `type` and an integer `version`")
        model = model_for(type_, version)
        try:
            body["payload"] = model.model_validate(body.get("payload"))
            return cls.model_validate(body)
        except ValidationError as exc:
            raise MalformedMessage(f"{type_} v{version}: {_summary(exc)}") from exc


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5])
