"""The things the chaos suite breaks besides our services: the simulators as their own processes (so the
platform API can really refuse connections), a private Redis (so it can really lose its data), and the
machine's shared RabbitMQ and PostgreSQL (restarted in place, only when CHAOS_RESTART_SERVERS=1)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.integration.stack import ROOT

SIM_READY_S = 15.0
SERVER_READY_S = 60.0
RABBITMQCTL = ("rabbitmqctl",)
PG_RESTART = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"


@dataclass
class SimulatorProcess:
    """`python -m libs.simulators.<module>` on a fixed port: stop() makes the port refuse connections."""

    module: str  # "llm" or "platform"
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    # The platform's arrival log lives in the simulator's memory: kept here across its restarts.
    arrivals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_path(self) -> str:
        return "/_sim/requests" if self.module == "llm" else "/_sim/arrivals"

    async def start(self) -> None:
        env = {**os.environ, **self.env, "LOG_LEVEL": "warning"}
        env[f"{'LLM' if self.module == 'llm' else 'PLATFORM'}_SIMULATOR_PORT"] = str(self.port)
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"libs.simulators.{self.module}", cwd=ROOT, env=env, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + SIM_READY_S
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.url + self.admin_path) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"simulator {self.module} did not start: {self.log_path.read_text()[-2000:]}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Collect the arrival log (platform), then SIGTERM and wait."""
        if self.process is None or self.process.returncode is not None:
            return
        if self.module == "platform":
            self.arrivals.extend(await self.fetch_arrivals())
        self.process.terminate()
        await self.process.wait()

    async def fetch_arrivals(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.get(self.url + "/_sim/arrivals") as response:
            return list((await response.json())["arrivals"])

    async def all_arrivals(self) -> list[dict[str, Any]]:
        """Every arrival over every incarnation of the platform simulator, oldest first."""
        current = await self.fetch_arrivals() if self.process and self.process.returncode is None else []
        return self.arrivals + current

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with aiohttp.ClientSession() as session, session.request(method, self.url + path, json=body) as response:
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()


async def run(*argv: str, shell: bool = False) -> None:
    """Run a command; raise with its output when it fails."""
    if shell:
        proc = await asyncio.create_subprocess_shell(
            argv[0], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: {out.decode(errors='replace')}")


async def wait_tcp(host: str, port: int, timeout: float = SERVER_READY_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def restart_rabbitmq() -> None:
    """stop_app/start_app on the shared broker: every connection drops, durable queues survive."""
    await run(*RABBITMQCTL, "stop_app")
    await run(*RABBITMQCTL, "start_app")
    await wait_tcp("127.0.0.1", 5672)


async def restart_postgres(dsn: str) -> None:
    """Restart the shared PostgreSQL cluster and wait until it answers queries again."""
    await run(PG_RESTART, shell=True)
    deadline = time.monotonic() + SERVER_READY_S
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
            await conn.close()
            return
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
