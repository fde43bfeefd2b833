"""What a service is: a name, handlers by message type, start/stop hooks and readiness checks.

A service module exposes `async def create(runtime: Runtime) -> Service`; the same service then runs as
its own process (libs.runtime.process) or beside the others in one process (the embedded mode).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from libs.bus import Bus, Handler
from libs.config import CommonSettings, load_settings

Check = Callable[[], Awaitable[None]]
"""A readiness check: returns when the dependency is usable, raises (with a reason) when not."""

Hook = Callable[[], Awaitable[None]]

S = TypeVar("S", bound=CommonSettings)


@dataclass
class Runtime:
    """What a service gets from whoever runs it: the bus, the shared settings, and shared resources
    (e.g. simulators the embedded mode started), keyed by name."""

    bus: Bus
    settings: CommonSettings
    resources: dict[str, Any] = field(default_factory=dict)

    def settings_as(self, cls: type[S], resource: str | None = None) -> S:
        """A service's own settings: those the runner put in `resources[resource]`, else the shared settings
        when they are of that class, else read from the environment (a bad value: ConfigError)."""
        given = self.resources.get(resource) if resource else None
        if isinstance(given, cls):
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
