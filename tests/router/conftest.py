"""Fixtures of the router tests: a store of each kind, and a running router harness on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.router.pg_store import PostgresStore
from services.router.store import MemoryStore, WorkflowStore
from tests.router.harness import Harness, router_settings

STORES = [pytest.param("memory"), pytest.param("postgres", marks=pytest.mark.integration)]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowStore]:
    """A started store: in memory, or on PostgreSQL in a throw-away schema."""
    instance: WorkflowStore
    if request.param == "memory":
        instance = MemoryStore()
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        instance = PostgresStore(dsn, schema=request.getfixturevalue("pg_schema"), pool_size=4)
    await instance.start()
    yield instance
    await instance.close()


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module (or parametrize) to change the router's settings."""
    return {}


@pytest.fixture
async def harness(store: WorkflowStore, settings_overrides: dict[str, object]) -> AsyncIterator[Harness]:
    running = await Harness.start(store, router_settings(**settings_overrides))
    yield running
    await running.close()
