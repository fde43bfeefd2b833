"""Exceptions raised by libs.storage, and the translation of driver errors into them.

::

    StorageError                 base of everything this package raises
    ├── DatabaseError            connecting or running a statement failed; ``retryable`` says whether
    │                            the same call may succeed later (connection lost, deadlock, shutdown),
    │                            ``permanent`` that it never will with the same data (a NUL in a string,
    │                            a value out of range: the bus dead-letters such a message at once),
    │                            ``sqlstate`` carries PostgreSQL's error code when the server sent one
    └── MigrationError           a migration file is misnamed, duplicated, out of order, fails, or was
                                 edited after it had been applied

asyncpg, socket and timeout errors never leave this package untranslated: callers catch
``StorageError`` subclasses and the original stays reachable as ``__cause__``
(``raise to_database_error(exc, action=...) from exc``).
"""

from __future__ import annotations

import asyncpg

from libs.storage.constants import (
    PERMANENT_SQLSTATE_CLASSES,
    PERMANENT_SQLSTATES,
    RETRYABLE_SQLSTATE_CLASSES,
    RETRYABLE_SQLSTATES,
)


class StorageError(Exception):
    """Base class of every error raised by libs.storage."""


class DatabaseError(StorageError):
    """Connecting to PostgreSQL or running a statement failed.

    ``permanent`` is the attribute libs.bus reads to dead-letter a message at once (libs.bus.is_permanent):
    the database refused the data itself, so every redelivery would fail the same way."""

    def __init__(self, message: str, *, retryable: bool, sqlstate: str | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.permanent = permanent
        self.sqlstate = sqlstate


class MigrationError(StorageError):
    """A schema migration cannot be applied, or the applied history disagrees with the files."""


def is_retryable(exc: BaseException) -> bool:
    """Whether the operation that raised ``exc`` may succeed if tried again unchanged."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return sqlstate[:2] in RETRYABLE_SQLSTATE_CLASSES or sqlstate in RETRYABLE_SQLSTATES
    # The connection died under us, the server refused or was unreachable, or a timeout (connect,
    # command or pool acquire) fired: all transient from the caller's point of view.
    return isinstance(exc, (asyncpg.exceptions.ConnectionDoesNotExistError, OSError, TimeoutError))


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` says the data itself is refused, so the same call fails again whenever it is made."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return sqlstate[:2] in PERMANENT_SQLSTATE_CLASSES or sqlstate in PERMANENT_SQLSTATES
    # asyncpg's own DataError: an argument its codecs cannot encode (an int past int64, a bad date).
    return isinstance(exc, asyncpg.exceptions._base.DataError)


def to_database_error(exc: BaseException, *, action: str) -> DatabaseError:
    """The DatabaseError standing for ``exc``, raised while doing ``action`` (e.g. "connect")."""
    sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
    return DatabaseError(
        f"{action} failed: {type(exc).__name__}: {exc}",
        retryable=is_retryable(exc),
        sqlstate=sqlstate,
        permanent=is_permanent(exc),
    )
