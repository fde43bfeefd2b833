"""Messages a transition must publish, kept with the transition until they are published (the outbox).

A handler stores its outgoing envelopes in the same database write as the transition; after the commit it
publishes them. When it dies in between, the bus redelivers the message, the store reports it as already
processed with its outbox, and the same envelopes (same ids, so consumers de-duplicate) are published
again. Delays are stored as the absolute time a message is due, so a re-publish waits only what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import Envelope
from libs.bus import Bus


@dataclass(frozen=True, slots=True)
class Outgoing:
    envelope: Envelope
    due_at: datetime  # not to be handled before this time (the bus's delayed delivery)

    def delay_s(self, now: datetime) -> float:
        return max(0.0, (self.due_at - now).total_seconds())

    def to_json(self) -> dict[str, Any]:
        # The envelope as its wire text: decoding it later is exactly what a consumer would do.
        return {"envelope": self.envelope.encode().decode(), "due_at": self.due_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outgoing:
        return cls(Envelope.decode(data["envelope"].encode()), datetime.fromisoformat(data["due_at"]))


async def publish_all(bus: Bus, outbox: tuple[Outgoing, ...], now: datetime) -> None:
    """Publish every message, each after what is left of its delay (Bus.publish_all: confirmed together)."""
    await bus.publish_all([item.envelope for item in outbox], delays=[item.delay_s(now) for item in outbox])
