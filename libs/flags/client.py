"""What a replica evaluates flags with: the flags cached in memory, kept fresh from the store.

    client = open_flag_client(settings)          # Redis when REDIS_URL is set, else in this process
    await client.start()                         # first read; the environment defaults if the store is down
    client.admits(user_id)                       # per request: no I/O, a set lookup and one sha256
    client.held(account_id)                      # before a send or a retry: None, or why it must wait
    await client.set_paused("account-7", True, updated_by="admin-1")
    await client.update(FlagUpdate(...), updated_by="admin-1")   # write, apply here, announce to the others
    await client.stop()

Freshness: a background task re-reads the store every FLAGS_REFRESH_S, and at once when the store's watch
(Redis pub/sub) announces a write, so a change made on one replica applies on every replica within
milliseconds — or within FLAGS_REFRESH_S if the announcement is lost. While the store cannot be read the
last known flags stay in force (logged once per outage, not per attempt); a replica that starts while the
store is down applies its environment defaults until the store answers.

The environment's kill switch wins: a client opened with HYBRID_ORCHESTRATOR_ENABLED=false (`forced_off`)
applies "off" whatever the store holds. `state` still shows the stored flags (what the other replicas
apply); `flags`, `admits` and `held` are what this replica applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime

from opentelemetry.instrumentation.utils import suppress_instrumentation

from libs.flags import constants as c
from libs.flags.errors import FlagsError, PausedLimit, VersionConflict
from libs.flags.model import Flags, FlagState, FlagUpdate
from libs.flags.redis_store import RedisFlagStore, redis_client
from libs.flags.settings import FlagSettings
from libs.flags.store import FlagStore, MemoryFlagStore
from libs.telemetry import get_logger

log = get_logger(__name__)


class FlagClient:
    def __init__(
        self,
        store: FlagStore,
        defaults: Flags,
        *,
        refresh_s: float = c.DEFAULT_REFRESH_S,
        watch: bool = True,
        owns_store: bool = True,
        forced_off: bool = False,
    ) -> None:
        """`watch`: also re-read on the store's change announcements; `owns_store`: close it on stop;
        `forced_off`: apply the kill switch off whatever the store holds (the environment said false)."""
        self.store = store
        self._owns_store = owns_store
        self.defaults = defaults
        self.forced_off = forced_off
        self._refresh_s = refresh_s
        self._watch = watch
        self._state = FlagState(flags=defaults)
        self._applied = self._effective(defaults)
        # Reads and writes of this client take turns, so a read that started before our own write cannot
        # land after it and briefly put the old flags back.
        self._lock = asyncio.Lock()
        self._pause_lock = asyncio.Lock()  # this replica's pauses one at a time: they race only other replicas
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: str | None = None

    @property
    def state(self) -> FlagState:
        """The flags this replica applies, with the version they came from."""
        return self._state

    @property
    def flags(self) -> Flags:
        """The flags this replica applies: the stored ones, with the kill switch off when `forced_off`."""
        return self._applied

    @property
    def stale(self) -> bool:
        """True while the store cannot be read (the last known flags apply)."""
        return self._failure is not None

    def admits(self, user_id: str) -> bool:
        """Whether `user_id` may start new work under the flags in force."""
        return self._applied.admits(user_id)

    def held(self, account_id: str | None = None) -> str | None:
        """Why work (of `account_id`, when given) must wait now — "disabled" (the kill switch is off, stored
        or in this replica's environment) or "account_paused" — or None when it may go on. No I/O."""
        return self._applied.held(account_id)

    async def start(self) -> None:
        try:
            with suppress_instrumentation():  # start-up is no one's request either
                await self.refresh()
        except FlagsError:
            log.warning("flags.start.defaults", store=self.store.kind, **_summary(self.defaults))
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="flags.refresh"))
        if self._watch:
            self._tasks.append(asyncio.create_task(self.store.watch(self._wake), name="flags.watch"))
        log.info("flags.started", store=self.store.kind, refresh_s=self._refresh_s, watch=self._watch, **self._fields())

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        # Cancel until they end: on Python 3.11 asyncio.wait_for (which redis-py uses to send commands) can
        # swallow a cancel that lands just as its operation completes, and a loop that lost its cancel runs on.
        for _ in range(c.STOP_ATTEMPTS):
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=c.STOP_WAIT_S)
            tasks = list(pending)
        if tasks:
            log.error("flags.stop.stuck", tasks=[task.get_name() for task in tasks])
        if self._owns_store:
            await self.store.close()

    async def refresh(self) -> FlagState:
        """Read the store now and apply what it holds (raises FlagsError; the last known flags then stay)."""
        async with self._lock:
            try:
                state = FlagState.from_stored(await self.store.read(), self.defaults)
            except FlagsError as exc:
                self._failed(exc)
                raise
            self._apply(state)
            return state

    async def update(self, update: FlagUpdate, *, updated_by: str, expected_version: int | None = None) -> FlagState:
        """Write `update` (only if the store is at `expected_version`, when given), apply the result here at
        once and let the other replicas know (raises VersionConflict, FlagsUnavailable, FlagsInvalid)."""
        async with self._lock:
            stored = await self.store.write(
                update.encoded(),
                updated_at=datetime.now(UTC),
                updated_by=updated_by[: c.MAX_UPDATED_BY_LENGTH],
                expected_version=expected_version,
            )
            state = FlagState.from_stored(stored, self.defaults)
            self._apply(state)
        log.info("flags.updated", updated_by=updated_by, changed=sorted(update.fields()), **self._fields())
        return state

    async def set_paused(self, account_id: str, paused: bool, *, updated_by: str) -> FlagState:
        """Pause (or resume) one account: added to (or removed from) the paused set, the rest of the set
        as another admin may have just written it (raises VersionConflict after PAUSE_WRITE_ATTEMPTS lost
        races, PausedLimit when the set is full, FlagsUnavailable, FlagsInvalid)."""
        async with self._pause_lock:
            for _ in range(c.PAUSE_WRITE_ATTEMPTS - 1):
                try:
                    return await self._set_paused_once(account_id, paused, updated_by)
                except VersionConflict:  # another replica wrote in between: read again, out of its step
                    await asyncio.sleep(random.uniform(0, c.PAUSE_RETRY_JITTER_S))
            return await self._set_paused_once(account_id, paused, updated_by)

    async def _set_paused_once(self, account_id: str, paused: bool, updated_by: str) -> FlagState:
        state = await self.refresh()
        current = set(state.flags.paused_accounts)
        wanted = current | {account_id} if paused else current - {account_id}
        if wanted == current:
            return state  # already so: no write, no new version
        if len(wanted) > c.MAX_PAUSED_ACCOUNTS:
            raise PausedLimit(f"{c.MAX_PAUSED_ACCOUNTS} accounts are paused already; resume one first")
        update = FlagUpdate(paused_accounts=tuple(wanted))
        return await self.update(update, updated_by=updated_by, expected_version=state.version)

    async def _refresh_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that arrives as the
            # event is set, and stop() would then wait for a loop that never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_s):
                    await self._wake.wait()
            self._wake.clear()  # before reading: a write announced during the read wakes the next round
            # A read every second on every replica is no one's request: keep it out of the traces.
            with suppress_instrumentation(), contextlib.suppress(FlagsError):  # logged by refresh
                await self.refresh()

    def _apply(self, state: FlagState) -> None:
        if self._failure is not None:
            log.info("flags.store.recovered", store=self.store.kind)
            self._failure = None
        if state != self._state:
            previous = self._state.version
            self._state = state
            self._applied = self._effective(state.flags)
            log.info("flags.changed", previous_version=previous, **self._fields())

    def _failed(self, exc: FlagsError) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self._failure:  # once per outage (or per new reason), not once per second
            log.warning("flags.store.failed", store=self.store.kind, reason=reason, keeping=self._state.version)
        self._failure = reason

    def _effective(self, flags: Flags) -> Flags:
        if self.forced_off and flags.hybrid_orchestrator_enabled:
            return flags.model_copy(update={"hybrid_orchestrator_enabled": False})
        return flags

    def _fields(self) -> dict[str, object]:
        return {"version": self._state.version, "forced_off": self.forced_off, **_summary(self._state.flags)}


def _summary(flags: Flags) -> dict[str, object]:
    return {
        "enabled": flags.hybrid_orchestrator_enabled,
        "rollout_percentage": flags.rollout_percentage,
        "allow_list_size": len(flags.allow_list),
        "paused_accounts": len(flags.paused_accounts),
    }


def open_flag_client(settings: FlagSettings, *, store: FlagStore | None = None) -> FlagClient:
    """A client on `store` (the one a process's services share: Runtime.shared.flag_store) — left open on
    stop: whoever gave it closes it —, else on Redis when REDIS_URL is set (shared by replicas), else in
    this process."""
    owns_store = store is None
    if store is None:
        store = (
            RedisFlagStore(redis_client(settings.redis_url), key=settings.flags_key)
            if settings.redis_url
            else MemoryFlagStore()
        )
    return FlagClient(
        store,
        settings.flag_defaults(),
        refresh_s=settings.flags_refresh_s,
        watch=settings.flags_pubsub,
        owns_store=owns_store,
        forced_off=not settings.hybrid_orchestrator_enabled,
    )
