"""Where the flags live: the one seam between the flag client and Redis.

A store keeps the hash described in constants.py (flag name → JSON text, plus the @-metadata) and says
when it changed. `RedisFlagStore` (redis_store.py) is shared by every replica; `MemoryFlagStore` is the same
hash in this process, for the embedded mode without REDIS_URL (and for tests). Stores do not interpret the
values: the client reads them with `FlagState.from_stored`, so both stores are read the same way.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime

from libs.flags import constants as c
from libs.flags.errors import VersionConflict


class FlagStore(ABC):
    kind: str
    """"redis" or "memory", for logs and health answers."""

    @abstractmethod
    async def read(self) -> dict[str, str]:
        """The whole hash (raises FlagsUnavailable)."""

    @abstractmethod
    async def write(
        self,
        changes: Mapping[str, str],
        *,
        updated_at: datetime,
        updated_by: str,
        expected_version: int | None = None,
    ) -> dict[str, str]:
        """Set `changes` (flag name → JSON text), bump the version, record who and when, notify watchers —
        all at once — and answer the hash as it is after the write. With `expected_version`, write only if
        the version is still that one (raises VersionConflict, FlagsUnavailable)."""

    @abstractmethod
    async def watch(self, wake: asyncio.Event) -> None:
        """Set `wake` whenever the flags may have changed, until cancelled. Never raises for an unreachable
        store: it retries (the caller's periodic refresh covers the gap)."""

    async def close(self) -> None:
        return None


class MemoryFlagStore(FlagStore):
    """The hash in this process: shared by whatever holds the same instance (e.g. two gateways in one test)."""

    kind = "memory"

    def __init__(self) -> None:
        self._hash: dict[str, str] = {}
        self._watchers: set[asyncio.Event] = set()

    async def read(self) -> dict[str, str]:
        return dict(self._hash)

    async def write(
        self,
        changes: Mapping[str, str],
        *,
        updated_at: datetime,
        updated_by: str,
        expected_version: int | None = None,
    ) -> dict[str, str]:
        current = int(self._hash.get(c.VERSION_FIELD, "0"))
        if expected_version is not None and expected_version != current:
            raise VersionConflict(expected_version, current)
        self._hash.update(changes)
        self._hash[c.VERSION_FIELD] = str(current + 1)
        self._hash[c.UPDATED_AT_FIELD] = updated_at.isoformat()
        self._hash[c.UPDATED_BY_FIELD] = updated_by
        for wake in self._watchers:
            wake.set()
        return dict(self._hash)

    async def watch(self, wake: asyncio.Event) -> None:
        self._watchers.add(wake)
        wake.set()  # as after a Redis subscription: a write made before the watch began is read now
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            self._watchers.discard(wake)
