"""The fan platform as the of-sender needs it: one small interface, two operations, classified outcomes.

`client.PlatformClient` is the implementation over the platform's HTTP API; another platform (or another
API of the same one) plugs in by implementing `Platform` and handing it to the service
(`service.create(runtime, platform=...)`).

    send(account, recipient, text, key) ─┬─ Sent(id)       the platform took the message
                                         ├─ NotSent(error) it did not: refused with an answer (4xx, 429,
                                         │                 5xx) or never reached (connection refused)
                                         └─ Unknown(error) it may have: a timeout, or the connection dropped
                                                           after the request was written
    lookup(account, key) ────────────────┬─ Sent(id)       a message was taken with this key
                                         ├─ NotFound       none was
                                         └─ Unknown(error) the look-up failed: still unknown

What the platform must offer for exactly-once (the sender's side is in sender.py):

1. a look-up of a message by the key it was sent with (the delivery id, sent as Idempotency-Key), that
   never counts as a send and is consistent with every send it answered or that reached it;
2. a request answered with an error was not taken (a 5xx or a 429 means "not delivered"); and
3. a request the platform has not finished once `OF_LOOKUP_DELAY_S` passed since it went out is never
   taken afterwards — the look-up is made no sooner, so a slow request is not mistaken for a lost one.

Honouring Idempotency-Key is then a second line of defence, not the one exactly-once rests on: the key is
still sent on every attempt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from contracts.messages import ErrorInfo


@dataclass(frozen=True, slots=True)
class Sent:
    """The platform has the message (answered 2xx, or found by the look-up)."""

    platform_message_id: str


@dataclass(frozen=True, slots=True)
class NotSent:
    """The platform certainly did not take the message: it answered an error, or was never reached."""

    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Unknown:
    """Nobody knows whether the platform took the message (or the look-up could not tell)."""

    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class NotFound:
    """The look-up's answer: no message was taken with this key."""


SendOutcome = Sent | NotSent | Unknown
LookupOutcome = Sent | NotFound | Unknown


class Platform(ABC):
    """The fan platform's chat API. Neither operation raises for what the platform or the network does."""

    async def start(self) -> None:
        """Open connections (called before any message is handled)."""
        return None

    async def close(self) -> None:
        """Release connections."""
        return None

    async def ping(self) -> None:
        """Raise when the adapter is not usable (readiness)."""
        return None

    @abstractmethod
    async def send(self, account: str, recipient: str, text: str, *, idempotency_key: str) -> SendOutcome:
        """Send `text` to the fan `recipient` as the creator `account`, under the delivery's stable key."""

    @abstractmethod
    async def lookup(self, account: str, idempotency_key: str) -> LookupOutcome:
        """Whether the platform took a message with this key for `account` — never a send."""
