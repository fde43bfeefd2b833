"""Exceptions raised by libs.ratelimit.

::

    RateLimitError              base of everything this package raises
    └── LimiterUnavailable      Redis could not be reached or answered an error; wraps redis.RedisError.
                                The caller applies RATE_LIMITER_DOWN_POLICY (hold, or a bounded bypass).

A delivery that must wait is not an error: it is a `Reservation` with a later slot, or a `Check` that is
not allowed yet.
"""

from __future__ import annotations


class RateLimitError(Exception):
    """Base class of every error raised by libs.ratelimit."""


class LimiterUnavailable(RateLimitError):
    """The shared limiter state (Redis) cannot be used right now."""
