"""The message bus: one interface (`Bus`), transports chosen by URL (`memory://`, `amqp://`, `sqs://`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from libs.bus.base import Bus, DeadLetter, Handler, RedeliveryPolicy, ReplyAddress, message_priority, reply_address
from libs.bus.errors import BusConnectionError, BusError, PublishError, Reject, RequestTimeout, Unroutable, is_permanent


def create_bus(url: str, **options: object) -> Bus:
    """The transport for `url` (not yet connected: call `await bus.connect()`)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from libs.bus.memory import MemoryBus

        return MemoryBus(**options)
    if scheme in ("amqp", "amqps"):
        from libs.bus.amqp import AmqpBus

        return AmqpBus(url, **options)
    if scheme == "sqs":
        from libs.bus.sqs import SqsBus

        return SqsBus(url, **options)
    raise ValueError(f"unsupported BUS_URL scheme {scheme!r} (memory://, amqp://, sqs://)")


__all__ = [
    "Bus",
    "BusConnectionError",
    "BusError",
    "DeadLetter",
    "Handler",
    "PublishError",
    "RedeliveryPolicy",
    "Reject",
    "ReplyAddress",
    "RequestTimeout",
    "Unroutable",
    "create_bus",
    "is_permanent",
    "message_priority",
    "reply_address",
]
