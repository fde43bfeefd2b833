"""The flags, their evaluation for one user, and how they are stored (pure: no I/O).

    flags = Flags(hybrid_orchestrator_enabled=True, rollout_percentage=10, allow_list=("tester-1",))
    flags.admits("creator-42")       # kill switch on, and the user in the allow list or the 10 %
    flags.held("account-7")          # None, "disabled" (kill switch off) or "account_paused"

Percentage rollout: a user is in when bucket(ROLLOUT_FLAG, user) < percentage, the bucket being a stable
hash of (flag name, user id) mod 100. The same user is therefore always in or always out at a given
percentage, on every replica and across restarts, and raising the percentage only adds users (a user in
at 10 % is in at 20 %). The allow list is in whatever the percentage; the kill switch off keeps everyone out.

The kill switch and the paused accounts also hold work already accepted: a service asks `held(account)`
before it does anything a fan sees (a send, a generation retry) and waits while it answers a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Self

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from libs.flags import constants as c
from libs.flags.errors import FlagsInvalid

UserId = Annotated[str, StringConstraints(min_length=1, max_length=c.MAX_USER_ID_LENGTH, strip_whitespace=True)]
Percentage = Annotated[StrictInt, Field(ge=0, le=100)]
AllowList = Annotated[tuple[UserId, ...], Field(max_length=c.MAX_ALLOW_LIST)]
AccountId = Annotated[str, StringConstraints(min_length=1, max_length=c.MAX_ACCOUNT_ID_LENGTH, strip_whitespace=True)]
PausedAccounts = Annotated[tuple[AccountId, ...], Field(max_length=c.MAX_PAUSED_ACCOUNTS)]


def bucket(flag: str, user_id: str) -> int:
    """The user's stable bucket (0..99) for `flag`. The flag name is length-prefixed so that no other
    (flag, user) pair hashes the same text."""
    digest = hashlib.sha256(f"{len(flag)}:{flag}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % c.ROLLOUT_BUCKETS


def in_rollout(flag: str, user_id: str, percentage: int) -> bool:
    """Whether `user_id` is among the first `percentage` % of users for `flag`."""
    return bucket(flag, user_id) < percentage


def _canonical(users: tuple[str, ...]) -> tuple[str, ...]:
    """Sorted and without duplicates: the same set always reads (and compares) the same."""
    return tuple(sorted(set(users)))


class Flags(BaseModel):
    """The values a replica applies. Defaults: on, everyone (100 %), nobody listed, no account paused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hybrid_orchestrator_enabled: StrictBool = Field(
        default=True, description="the kill switch: false refuses new work and holds accepted work"
    )
    rollout_percentage: Percentage = Field(default=100, description="share of users let in (by a stable hash)")
    allow_list: AllowList = Field(default=(), description="user ids let in whatever the percentage")
    paused_accounts: PausedAccounts = Field(default=(), description="creator accounts whose sends are held")
    _allowed: frozenset[str] = PrivateAttr(default=frozenset())
    _paused: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("allow_list", "paused_accounts")
    @classmethod
    def _sorted(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        return _canonical(ids)

    def model_post_init(self, context: Any, /) -> None:
        # The per-request and per-send lookups are set lookups.
        self._allowed = frozenset(self.allow_list)
        self._paused = frozenset(self.paused_accounts)

    def admits(self, user_id: str) -> bool:
        """Whether `user_id` may start new work under these flags."""
        if not self.hybrid_orchestrator_enabled:
            return False
        return user_id in self._allowed or in_rollout(c.ROLLOUT_FLAG, user_id, self.rollout_percentage)

    def held(self, account_id: str | None = None) -> str | None:
        """Why work (of `account_id`, when given) must wait under these flags, or None when it may go on."""
        if not self.hybrid_orchestrator_enabled:
            return c.HELD_DISABLED
        if account_id is not None and account_id in self._paused:
            return c.HELD_ACCOUNT_PAUSED
        return None

    def is_paused(self, account_id: str) -> bool:
        return account_id in self._paused


class FlagUpdate(BaseModel):
    """A change: the flags given are set, the others keep their value. At least one must be given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hybrid_orchestrator_enabled: StrictBool | None = None
    rollout_percentage: Percentage | None = None
    allow_list: AllowList | None = None
    paused_accounts: PausedAccounts | None = None

    @field_validator("allow_list", "paused_accounts")
    @classmethod
    def _sorted(cls, ids: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if ids is None else _canonical(ids)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.fields():
            raise ValueError("give at least one flag to change")
        return self

    def fields(self) -> dict[str, Any]:
        """The flags this update sets, by name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}

    def encoded(self) -> dict[str, str]:
        """The flags this update sets, as the store keeps them (JSON text by field name)."""
        return {
            name: orjson.dumps(value).decode()
            for name, value in self.model_dump(mode="json").items()
            if value is not None
        }


class FlagState(BaseModel):
    """The flags with the store's version and who changed them last (version 0: never changed)."""

    model_config = ConfigDict(frozen=True)

    flags: Flags
    version: int = Field(default=0, ge=0)
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None

    @classmethod
    def from_stored(cls, stored: Mapping[str, str], defaults: Flags) -> FlagState:
        """The state a hash read from the store describes; a flag it does not hold takes its default.
        Unknown fields (a newer release's flags) are ignored; an invalid value raises FlagsInvalid."""
        values = defaults.model_dump()
        for name in c.FLAG_NAMES:
            if name in stored:
                try:
                    values[name] = orjson.loads(stored[name])
                except orjson.JSONDecodeError as exc:
                    raise FlagsInvalid(f"flag {name!r} is not JSON: {exc}") from exc
        try:
            flags = Flags.model_validate(values)
            return cls(
                flags=flags,
                version=int(stored.get(c.VERSION_FIELD, "0")),
                updated_at=_time(stored.get(c.UPDATED_AT_FIELD)),
                updated_by=stored.get(c.UPDATED_BY_FIELD),
            )
        except (ValidationError, ValueError) as exc:
            raise FlagsInvalid(f"the stored flags do not validate: {_summary(exc)}") from exc


def _time(raw: str | None) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(raw)


def _summary(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
    return str(exc)
