"""Exceptions raised by the cost-tracker.

::

    CostTrackerError             base of everything the cost-tracker raises on purpose
    ├── PriceTableError          the price file or COST_PRICES is unreadable or incomplete (start-up);
    │                            also a libs.config.ConfigError: the process exits 2 with one line
    ├── QueryRefused             a cost request cannot be answered as asked; `code` goes back to the gateway
    │   ├── InvalidParameter     code "invalid_parameter": a parameter is missing, malformed or out of range
    │   ├── Forbidden            code "forbidden": the requester may not see or change that
    │   ├── NotFound             code "not_found": no such workflow, threshold or alert (or not theirs)
    │   └── Conflict             code "conflict": the request names something no longer true (a stale
    │                            recommendation)
    └── ChannelError             an alert could not be delivered to a channel; `retryable` says whether a
                                 later attempt may succeed (timeouts, 5xx, throttling) or not (4xx, rejected)

Database failures are libs.storage.DatabaseError, translated from asyncpg at the store's boundary
(pg_store.py); the bus redelivers the message. aiohttp and botocore errors are translated into ChannelError
in channels.py.
"""

from __future__ import annotations

from libs.config import ConfigError


class CostTrackerError(Exception):
    """Base class of the cost-tracker's own errors."""


class PriceTableError(CostTrackerError, ConfigError):
    """The price table cannot be loaded: a configuration error (one line, exit 2) naming COST_PRICE_FILE or
    COST_PRICES."""


class QueryRefused(CostTrackerError):
    code = "invalid_parameter"


class InvalidParameter(QueryRefused):
    code = "invalid_parameter"


class Forbidden(QueryRefused):
    code = "forbidden"


class NotFound(QueryRefused):
    code = "not_found"


class Conflict(QueryRefused):
    code = "conflict"


class ChannelError(CostTrackerError):
    """A notification channel refused or failed the send."""

    def __init__(self, channel: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{channel}: {message}")
        self.channel = channel
        self.retryable = retryable
