"""The lifecycle every service store shares, whatever keeps its data (memory or PostgreSQL)."""

from __future__ import annotations

from abc import ABC


class Store(ABC):  # noqa: B024 - ABCMeta for the service interfaces that add abstract methods
    """Base of a service's store interface. The in-memory implementations need none of these; SchemaStore
    (PostgreSQL) implements them."""

    async def start(self) -> None:
        """Open connections and bring the schema up to date (called before any message is handled)."""
        return None

    async def close(self) -> None:
        """Release connections."""
        return None

    async def ping(self) -> None:
        """Raise when the store is not usable (readiness)."""
        return None
