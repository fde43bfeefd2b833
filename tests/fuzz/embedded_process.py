"""The embedded system (`make run`) as a child process, for tests that talk to it over HTTP only.

A process of its own, not a task in the test's event loop: schemathesis calls the API with blocking
`requests`, which would stall a gateway running on the caller's loop, and the embedded runner installs
signal handlers, which only the main thread of a process may do.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.stack import ROOT, free_port

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# Whatever points a service at a real server or a collector: the embedded system must run on its own.
FOREIGN_ENV_PREFIXES = ("BUS_", "DATABASE_", "REDIS_", "AZURE_OPENAI_", "OPENAI_", "ONLYFANS_", "OTEL_", "GATEWAY_")


@dataclass
class EmbeddedProcess:
    """`python -m services.embedded` on a free port, memory bus, in-memory stores and simulators."""

    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES)}
        env.update(
            GATEWAY_JWT_SECRET=self.secret,
            GATEWAY_PORT=str(self.port),
            GATEWAY_HOST="127.0.0.1",
            HEALTH_PORT="0",
            LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
            **self.env,
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.embedded"], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the embedded system exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/openapi.json", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the embedded system was not ready in {READY_TIMEOUT_S}s:\n{self.logs()}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM, wait for the drain; returns the exit code (SIGKILL after STOP_TIMEOUT_S)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self, tail: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
