"""The compose stack of tests/containers, driven through podman-compose.

podman-compose 1.6 on podman 4.3 does not wait for `condition: service_healthy`, and healthchecks do not run
on their own without systemd, so the stack comes up in stages (infrastructure, migrate, services, gateway),
each waited for by running its containers' healthchecks (`podman healthcheck run`) until they pass.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.routing import SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
STANDINS_FILE = REPO_ROOT / "deploy" / "podman" / "compose.standins.yml"
OTLP_FILE = REPO_ROOT / "deploy" / "podman" / "compose.otlp.yml"
TEST_FILE = Path(__file__).with_name("compose.test.yml")
PROJECT = "ho-ctest"  # containers, network and volumes of the test carry this prefix, nothing else's
PROFILE = "demo"
STANDINS_IMAGE = "hybrid-orchestrator-standins:local"

INFRASTRUCTURE = ("rabbitmq", "postgres", "redis", "jaeger", "llm-simulator", "platform-simulator")
BACKEND = tuple(s for s in SERVICES if s != "gateway")
STAGE_TIMEOUT_S = 120.0


def podman(*args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


def podman_compose() -> str:
    """podman-compose beside this interpreter (the project's virtualenv), else on PATH."""
    beside = Path(sys.executable).with_name("podman-compose")
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if found is None:
        raise RuntimeError("podman-compose is not installed (make test-containers installs it)")
    return found


def uses_standins() -> bool:
    """Whether the stand-ins replace the upstream infrastructure images (built when those cannot be pulled)."""
    return podman("image", "exists", STANDINS_IMAGE, check=False).returncode == 0


@dataclass
class Stack:
    """One run of the stack: its compose files and its signing keys."""

    files: list[Path]
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    webhook_secret: str = field(default_factory=lambda: secrets.token_hex(32))

    @classmethod
    def create(cls) -> Stack:
        middle = [STANDINS_FILE] if uses_standins() else []
        return cls([COMPOSE_FILE, *middle, OTLP_FILE, TEST_FILE])

    def url(self, service: str, port: int) -> str:
        """The service's address on the stack's network: nothing is published on the host (compose.test.yml)."""
        networks = self.inspect(service)["NetworkSettings"]["Networks"]
        address = next(iter(networks.values()))["IPAddress"]
        return f"http://{address}:{port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "GATEWAY_JWT_SECRET": self.jwt_secret, "WEBHOOK_SECRET": self.webhook_secret}

    def compose(self, *args: str, timeout: float = STAGE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        command = [podman_compose(), "-p", PROJECT, "--profile", PROFILE, *files, *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd=REPO_ROOT, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    @staticmethod
    def container(service: str) -> str:
        return f"{PROJECT}_{service}_1"

    def start(self, services: tuple[str, ...]) -> None:
        """Create and start these services only (their dependencies are earlier stages)."""
        self.compose("up", "-d", "--no-deps", "--no-build", *services)

    def wait_healthy(self, services: tuple[str, ...], timeout: float = STAGE_TIMEOUT_S) -> None:
        """Run each container's healthcheck until it passes; on timeout, fail with the laggards' logs."""
        deadline = time.monotonic() + timeout
        waiting = list(services)
        while waiting:
            waiting = [s for s in waiting if not self.healthy(s)]
            if waiting and time.monotonic() > deadline:
                logs = {s: self.logs(s) for s in waiting}
                raise RuntimeError(f"not healthy after {timeout:.0f} s: {waiting}\n{json.dumps(logs, indent=1)}")
            if waiting:
                time.sleep(1)

    def healthy(self, service: str) -> bool:
        return podman("healthcheck", "run", self.container(service), check=False).returncode == 0

    def run_once(self, service: str, timeout: float = STAGE_TIMEOUT_S) -> None:
        """Start a one-shot service and wait for it to exit 0."""
        self.start((service,))
        code = podman("wait", self.container(service), timeout=timeout).stdout.strip()
        if code != "0":
            raise RuntimeError(f"{service} exited {code}:\n{self.logs(service)}")

    def up(self) -> None:
        self.start(INFRASTRUCTURE)
        self.wait_healthy(INFRASTRUCTURE)
        self.run_once("migrate")
        self.start(BACKEND)
        self.wait_healthy(BACKEND)
        self.start(("gateway",))
        self.wait_healthy(("gateway",))

    def down(self) -> None:
        """Remove the containers, network and volumes; a container still running after 10 s is killed."""
        self.compose("down", "-v", "-t", "10", timeout=300)

    def logs(self, service: str, tail: int = 40) -> str:
        result = podman("logs", "--tail", str(tail), self.container(service), check=False)
        return (result.stdout + result.stderr)[-4000:]

    def inspect(self, service: str) -> dict[str, Any]:
        return dict(json.loads(podman("inspect", self.container(service)).stdout)[0])

    def env_of(self, service: str) -> dict[str, str]:
        """The environment the service's container runs with."""
        return dict(entry.split("=", 1) for entry in self.inspect(service)["Config"]["Env"])

    def exec(self, service: str, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.container(service), *command, check=False)
