"""What a service is: a name, handlers by message type, start/stop hooks, readiness checks and health reports.

A service module exposes `async def create(runtime: Runtime) -> Service`; the same service then runs as
its own process (libs.runtime.process) or beside the others in one process (the embedded mode).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from libs.bus import Bus, Handler
from libs.config import CommonSettings, load_settings
from libs.flags import FlagStore

Check = Callable[[], Awaitable[None]]
"""A readiness check: returns when the dependency is usable, raises (with a reason) when not."""

Hook = Callable[[], Awaitable[None]]

S = TypeVar("S", bound=CommonSettings)


@dataclass
class Shared:
    """What a runner shares with every service it runs (the embedded mode; tests), each in a field of its
    own; a process running one service shares nothing but its health checks. What one service alone is
    handed (its settings, a store) is an argument of that service's `create` instead."""

    # The feature-flag store of the whole process (the embedded mode without REDIS_URL: one MemoryFlagStore,
    # so a switch flipped through the gateway holds the of-sender too). None: each service opens its own.
    flag_store: FlagStore | None = None
    llm_simulator_url: str | None = None  # an LLM simulator the runner started (workers without a provider)
    platform_simulator_url: str | None = None  # a platform simulator the runner started (the of-sender)
    # Every readiness check of the process by name, for whoever aggregates health (the gateway, embedded).
    health_checks: dict[str, Check] = field(default_factory=dict)
    gateway_url: str | None = None  # where the gateway listens, once it does (the embedded banner, tests)


@dataclass
class Runtime:
    """What a service gets from whoever runs it: the bus, the shared settings, and what the runner shares."""

    bus: Bus
    settings: CommonSettings
    shared: Shared = field(default_factory=Shared)

    def settings_as(self, cls: type[S], given: S | None = None) -> S:
        """A service's own settings: `given` (handed to its `create`), else the shared settings when they
        are of that class, else read from the environment (a bad value: ConfigError)."""
        if given is not None:
            return given
        if isinstance(self.settings, cls):
            return self.settings
        return load_settings(cls)


@dataclass
class Service:
    name: str
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)
    # Health reported on /readyz and the gateway's health (as a degradation when failing) that never
    # withholds readiness: a provider's outage or an open circuit is no reason to take this replica out
    # (docs/decisions/0017-health-reports-never-withhold-readiness.md).
    reports: dict[str, Check] = field(default_factory=dict)
    prefetch: int | None = None

    async def start(self, runtime: Runtime) -> None:
        """Run the start hooks, then take messages (nothing is consumed before the service is ready)."""
        for hook in self.on_start:
            await hook()
        if self.handlers:
            await runtime.bus.subscribe(
                self.name, self.handlers, prefetch=self.prefetch or runtime.settings.bus_prefetch
            )

    async def stop(self) -> None:
        """Release resources (called after the bus drained in-flight handlers)."""
        for hook in reversed(self.on_stop):
            await hook()


ServiceFactory = Callable[[Runtime], Awaitable[Service]]
