"""Run a simulator as its own process (`python -m libs.simulators.llm` / `.platform`): the compose demo
profile and the benchmarks use them this way."""

from __future__ import annotations

import asyncio
import signal
from typing import Protocol


class Simulator(Protocol):
    async def start(self, host: str = ..., port: int = ...) -> str: ...

    async def stop(self) -> None: ...


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
