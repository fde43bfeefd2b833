"""Holding accepted work: the kill switch and the paused accounts as `held` answers them, the environment's
"off" winning over the store, and pause/resume written by several admins and replicas at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from libs.flags import (
    FlagClient,
    Flags,
    FlagSettings,
    FlagState,
    FlagUpdate,
    MemoryFlagStore,
    PausedLimit,
    RedisFlagStore,
    open_flag_client,
)
from libs.flags import constants as c
from libs.flags.redis_store import redis_client
from tests.flags.test_client import eventually


@pytest.fixture
async def clients() -> AsyncIterator[list[FlagClient]]:
    """Clients a test started; stopped afterwards."""
    started: list[FlagClient] = []
    yield started
    for client in started:
        await client.stop()


async def started(clients: list[FlagClient], client: FlagClient) -> FlagClient:
    await client.start()
    clients.append(client)
    return client


class TestHeld:
    def test_nothing_is_held_under_the_defaults(self) -> None:
        """On, nobody paused: every account may proceed."""
        assert Flags().held() is None and Flags().held("acct-1") is None

    def test_the_kill_switch_holds_every_account(self) -> None:
        """Off: "disabled", with or without an account, paused or not."""
        flags = Flags(hybrid_orchestrator_enabled=False, paused_accounts=("acct-1",))
        assert {flags.held(), flags.held("acct-1"), flags.held("acct-2")} == {c.HELD_DISABLED}

    def test_a_paused_account_is_held_and_the_others_are_not(self) -> None:
        """A paused account answers "account_paused"; another account, or no account, proceeds."""
        flags = Flags(paused_accounts=("acct-1",))
        assert (flags.held("acct-1"), flags.held("acct-2"), flags.held()) == (c.HELD_ACCOUNT_PAUSED, None, None)

    def test_the_paused_set_is_bounded_sorted_and_round_trips(self) -> None:
        """Sorted without duplicates, refused past MAX_PAUSED_ACCOUNTS, and stored like every flag."""
        update = FlagUpdate(paused_accounts=("b", "a", "b"))
        assert update.paused_accounts == ("a", "b")
        state = FlagState.from_stored(update.encoded(), Flags())
        assert state.flags.paused_accounts == ("a", "b")
        with pytest.raises(ValidationError):
            Flags(paused_accounts=tuple(f"a{i}" for i in range(c.MAX_PAUSED_ACCOUNTS + 1)))


class TestEnvironmentWins:
    async def test_false_in_the_environment_wins_over_a_stored_true(
        self, clients: list[FlagClient], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HYBRID_ORCHESTRATOR_ENABLED=false: the replica applies off while the store (and state) says on."""
        store = MemoryFlagStore()
        await store.write(FlagUpdate(hybrid_orchestrator_enabled=True).encoded(), updated_at=_now(), updated_by="a")
        monkeypatch.setenv("HYBRID_ORCHESTRATOR_ENABLED", "false")
        off = await started(clients, open_flag_client(FlagSettings(redis_url=None), store=store))
        monkeypatch.delenv("HYBRID_ORCHESTRATOR_ENABLED")
        on = await started(clients, open_flag_client(FlagSettings(redis_url=None), store=store))
        assert off.state.flags.hybrid_orchestrator_enabled and off.state == on.state
        assert (off.held(), off.admits("u-1"), off.flags.hybrid_orchestrator_enabled) == (c.HELD_DISABLED, False, False)
        assert (on.held(), on.admits("u-1")) == (None, True)

    async def test_the_override_survives_every_change_and_keeps_the_other_flags(
        self, clients: list[FlagClient]
    ) -> None:
        """A forced-off replica stays off through writes and re-reads; the other flags it applies as stored."""
        client = await started(clients, FlagClient(MemoryFlagStore(), Flags(), forced_off=True))
        await client.update(FlagUpdate(hybrid_orchestrator_enabled=True, paused_accounts=("a",)), updated_by="x")
        await client.refresh()
        assert client.held("b") == c.HELD_DISABLED
        assert client.flags.paused_accounts == ("a",) and client.state.flags.hybrid_orchestrator_enabled


class TestPause:
    async def test_pause_and_resume_write_only_that_account(self, clients: list[FlagClient]) -> None:
        """Pausing adds the account, resuming removes it; a repeat is no write (the version stays)."""
        client = await started(clients, FlagClient(MemoryFlagStore(), Flags()))
        await client.set_paused("a", True, updated_by="admin")
        state = await client.set_paused("b", True, updated_by="admin")
        assert (state.flags.paused_accounts, state.version, client.held("a")) == (("a", "b"), 2, c.HELD_ACCOUNT_PAUSED)
        assert (await client.set_paused("b", True, updated_by="admin")).version == 2
        state = await client.set_paused("a", False, updated_by="admin")
        assert (state.flags.paused_accounts, client.held("a"), client.held("b")) == (
            ("b",),
            None,
            c.HELD_ACCOUNT_PAUSED,
        )

    async def test_admins_pausing_at_once_on_two_replicas_both_land(
        self, clients: list[FlagClient], redis_url: str, flag_key: str
    ) -> None:
        """Concurrent pauses through two replicas on Redis: each re-reads after a lost race, none is lost."""
        replicas = [
            await started(clients, FlagClient(RedisFlagStore(redis_client(redis_url), key=flag_key), Flags()))
            for _ in range(2)
        ]
        accounts = [f"acct-{i}" for i in range(8)]
        await asyncio.gather(
            *(replicas[i % 2].set_paused(account, True, updated_by="admin") for i, account in enumerate(accounts))
        )
        state = await replicas[0].refresh()
        assert state.flags.paused_accounts == tuple(sorted(accounts))
        # The other replica learns of it through the announcement, as of every flag.
        await eventually(lambda: replicas[1].flags.paused_accounts == tuple(sorted(accounts)), timeout=2.0)

    async def test_a_full_paused_set_refuses_one_more(self, clients: list[FlagClient]) -> None:
        """At MAX_PAUSED_ACCOUNTS a new pause raises PausedLimit and writes nothing."""
        store = MemoryFlagStore()
        full = tuple(f"a{i}" for i in range(c.MAX_PAUSED_ACCOUNTS))
        await store.write(FlagUpdate(paused_accounts=full).encoded(), updated_at=_now(), updated_by="a")
        client = await started(clients, FlagClient(store, Flags()))
        with pytest.raises(PausedLimit):
            await client.set_paused("one-more", True, updated_by="admin")
        assert (await client.refresh()).version == 1


def _now() -> datetime:
    return datetime.now(UTC)
