"""A whole distributed stack for tests: every service its own OS process on real servers.

`Stack` starts `python -m services.<package>` processes with the environment a deployment would give them
(a fresh PostgreSQL database, a private bus namespace, the simulators' URLs), waits for each one's /readyz,
and can SIGKILL and restart any of them — what the crash, compliance, trace and chaos tests and the bench
need. The bus is whatever `bus_url` names (amqp:// or sqs://); closing deletes the namespace's queues there.
Each process writes its log to the stack's directory; `logs()` shows them when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from libs.bus import create_bus
from libs.bus.amqp import AmqpBus
from libs.bus.sqs import SqsBus

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def destroy_namespace(bus_url: str, namespace: str) -> None:
    """Delete a bus namespace's queues (and exchanges) on the broker: what a test or bench run leaves behind."""
    bus = create_bus(bus_url, namespace=namespace)
    if not isinstance(bus, AmqpBus | SqsBus):  # memory://: nothing outlives the process
        return
    await bus.connect()
    try:
        await bus.destroy()
    finally:
        await bus.close(grace_s=1)


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@dataclass
class Proc:
    name: str
    package: str
    env: dict[str, str]
    health_port: int
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class Stack:
    bus_url: str  # every service's BUS_URL: amqp://… or sqs://…
    postgres_dsn: str
    redis_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    namespace: str = field(default_factory=lambda: f"it{uuid.uuid4().hex[:8]}")
    procs: dict[str, Proc] = field(default_factory=dict)
    database: str = field(default_factory=lambda: f"ho_it_{uuid.uuid4().hex[:8]}")

    @property
    def database_url(self) -> str:
        return _with_database(self.postgres_dsn, self.database)

    async def __aenter__(self) -> Stack:
        conn = await asyncpg.connect(self.postgres_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BUS_", "ROUTER_"))}
        env.update(
            BUS_URL=self.bus_url,
            BUS_NAMESPACE=self.namespace,
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            # The stack's own feature flags: a test flipping the kill switch never holds another run's stack.
            FLAGS_KEY=f"ho:flags:{self.namespace}",
            LOG_FORMAT="json",
            SHUTDOWN_GRACE_S="5",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        return env

    async def start(self, package: str, *, name: str | None = None, env: dict[str, str] | None = None) -> Proc:
        """Start one service process and wait until it is ready."""
        name = name or package
        proc = Proc(
            name=name,
            package=package,
            env={**self.base_env(), **(env or {})},
            health_port=free_port(),
            log_path=self.workdir / f"{name}.log",
        )
        proc.env["HEALTH_PORT"] = str(proc.health_port)
        self.procs[name] = proc
        await self._spawn(proc)
        return proc

    async def _spawn(self, proc: Proc) -> None:
        log = proc.log_path.open("ab")
        proc.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{proc.package}",
            cwd=ROOT,
            env=proc.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        await self.wait_ready(proc)

    async def wait_ready(self, proc: Proc) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"http://127.0.0.1:{proc.health_port}/readyz"
        async with aiohttp.ClientSession() as session:
            while True:
                assert proc.process is not None
                if proc.process.returncode is not None:
                    raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{self.logs(proc.name)}")
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{proc.name} not ready in {READY_TIMEOUT_S}s:\n{self.logs(proc.name)}")
                await asyncio.sleep(0.1)

    async def kill(self, name: str) -> None:
        """SIGKILL: no draining, no acks — what a crashed node looks like to the broker."""
        proc = self.procs[name]
        assert proc.process is not None
        proc.process.send_signal(signal.SIGKILL)
        await proc.process.wait()

    async def stop(self, name: str) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        proc = self.procs[name]
        assert proc.process is not None
        if proc.process.returncode is None:
            proc.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                proc.process.kill()
                await proc.process.wait()
        return proc.process.returncode or 0

    async def restart(self, name: str) -> None:
        proc = self.procs[name]
        proc.restarts += 1
        await self._spawn(proc)

    def logs(self, name: str | None = None, tail: int = 60) -> str:
        names = [name] if name else list(self.procs)
        out = []
        for n in names:
            path = self.procs[n].log_path
            lines = path.read_text(errors="replace").splitlines()[-tail:] if path.exists() else []
            out.append(f"----- {n} -----\n" + "\n".join(lines))
        return "\n".join(out)

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(n) for n in self.procs), return_exceptions=True)
        await destroy_namespace(self.bus_url, self.namespace)
        conn = await asyncpg.connect(self.postgres_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await conn.close()
