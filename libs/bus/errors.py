"""Errors of the bus.

    BusError                      something the bus could not do
    ├── BusConnectionError        the broker cannot be reached (after the transport's own reconnects)
    ├── PublishError              the broker did not confirm a publish
    │   └── Unroutable            no queue is bound for the message's routing key
    └── RequestTimeout            no reply arrived in time

    Reject                        raised BY a handler: dead-letter this message now, it will never succeed

Any other exception a handler raises is retried with backoff, unless it says it is permanent: an attribute
`permanent` that is True (libs.storage.DatabaseError sets it when the database refused the data itself — a
NUL in a string, a value out of range). `is_permanent` is that rule, the one place the bus decides it.

Transports translate their library's exceptions into these at the boundary (`raise ... from exc`).
"""


class BusError(Exception):
    pass


class BusConnectionError(BusError):
    pass


class PublishError(BusError):
    pass


class Unroutable(PublishError):
    pass


class RequestTimeout(BusError, TimeoutError):
    pass


class Reject(Exception):
    """A handler's verdict that this message is permanently unprocessable (goes to the dead-letter queue)."""


def is_permanent(exc: BaseException) -> bool:
    """Whether a handler's exception means the message can never succeed (dead-letter it now, not after retries)."""
    return isinstance(exc, Reject) or getattr(exc, "permanent", False) is True
