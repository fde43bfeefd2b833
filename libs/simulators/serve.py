"""Serving a simulator: the HTTP lifecycle both simulators share, and running one as its own process
(`python -m libs.simulators.llm` / `.platform`), as the compose demo profile and the benchmarks do."""

from __future__ import annotations

import asyncio
import signal
from typing import ClassVar, Protocol, Self

import structlog
from aiohttp import web

from libs.simulators.errors import SimulatorStartError

# Handlers still running when the server stops get this long (the LLM simulator releases hung ones first,
# so this only bounds genuinely slow, latency-faulted requests).
SHUTDOWN_TIMEOUT_S = 5.0

log = structlog.get_logger("libs.simulators")


class Simulator(Protocol):
    async def start(self, host: str = ..., port: int = ...) -> str: ...

    async def stop(self) -> None: ...


class HttpSimulator:
    """Listens for one simulator's aiohttp app; subclasses give `_app()` and a log `EVENT_PREFIX`."""

    EVENT_PREFIX: ClassVar[str]

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0: a free port) and return the base URL, e.g. ``http://127.0.0.1:41234``."""
        if self._runner is not None:
            raise SimulatorStartError(f"already listening on {self._url}")
        # Handler cancellation: a client that gives up on a hung request frees its handler at once.
        runner = web.AppRunner(
            self._app(), handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise SimulatorStartError(f"cannot listen on {host}:{port}") from exc
        bound_port = runner.addresses[0][1]
        self._runner = runner
        self._url = f"http://[{host}]:{bound_port}" if ":" in host else f"http://{host}:{bound_port}"
        log.info(f"{self.EVENT_PREFIX}.started", url=self._url)
        return self._url

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()
        log.info(f"{self.EVENT_PREFIX}.stopped", url=self._url)
        self._url = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL of the running simulator."""
        if self._url is None:
            raise SimulatorStartError("the simulator is not running")
        return self._url


async def serve_forever(simulator: Simulator, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    """Serve `simulator` on host:port until SIGTERM/SIGINT (or `stop` is set), then stop it."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await simulator.start(host, port)
        await stop.wait()
    finally:
        await simulator.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
