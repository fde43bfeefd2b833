"""Errors of the bus.

    BusError                      something the bus could not do
    ├── BusConnectionError        the broker cannot be reached (after the transport's own reconnects)
    ├── PublishError              the broker did not confirm a publish
    │   └── Unroutable            no queue is bound for the message's routing key
    └── RequestTimeout            no reply arrived in time

    Reject                        raised BY a handler: dead-letter this message now, it will never succeed

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
