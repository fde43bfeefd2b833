"""Exceptions raised by libs.flags.

::

    FlagsError                  base of everything this package raises
    ├── FlagsUnavailable        the flag store (Redis) could not be reached or answered an error; wraps
    │                           redis.RedisError / OSError. Readers keep the flags they last knew.
    ├── FlagsInvalid            the store holds a value that is not a valid flag (written by hand, or by a
    │                           newer release with other rules); names the field. Readers keep the last
    │                           known flags rather than guess a kill switch's value.
    ├── VersionConflict         a write named the version it expected and the store had moved on
                                (another admin wrote meanwhile); carries the current version.
    └── PausedLimit             a pause would make the paused set larger than MAX_PAUSED_ACCOUNTS.

An update with bad values never reaches the store: `FlagUpdate` (pydantic) refuses it first.
"""

from __future__ import annotations


class FlagsError(Exception):
    """Base class of every error raised by libs.flags."""


class FlagsUnavailable(FlagsError):
    """The shared flag store cannot be used right now."""


class FlagsInvalid(FlagsError):
    """A stored flag value does not validate."""


class VersionConflict(FlagsError):
    """The store's version is not the one the write expected."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"expected version {expected}, the flags are at version {current}")
        self.expected = expected
        self.current = current


class PausedLimit(FlagsError):
    """The paused accounts are at their bound; pausing one more is refused."""
