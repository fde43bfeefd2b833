"""`make run` (python -m services.embedded) as an operator meets it: it listens on 127.0.0.1 only unless told
otherwise, and prints a user's and an admin's token and a sample request that work as printed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.embedded_process import FOREIGN_ENV_PREFIXES
from tests.integration.stack import ROOT, free_port

BANNER_TIMEOUT_S = 30.0
LISTEN = "0A"  # /proc/net/tcp state of a listening socket
LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


@dataclass
class Embedded:
    process: subprocess.Popen[bytes]
    url: str
    banner: str


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    """The embedded system with no GATEWAY_HOST / HEALTH_HOST set, once its banner is out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*FOREIGN_ENV_PREFIXES, "HEALTH_", "WEBHOOK_"))}
    port = free_port()
    env.update(GATEWAY_PORT=str(port), LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    err = tmp_path / "stderr"
    with err.open("wb") as stderr, (tmp_path / "stdout").open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.embedded"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr
        )
    try:
        deadline = time.monotonic() + BANNER_TIMEOUT_S
        while "admin token" not in (banner := err.read_text()) or not banner.endswith("\n\n"):
            assert process.poll() is None, f"exited {process.returncode}: {banner}"
            assert time.monotonic() < deadline, f"no banner within {BANNER_TIMEOUT_S}s: {banner}"
            time.sleep(0.1)
        yield Embedded(process, f"http://127.0.0.1:{port}", banner)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def listening_addresses(pid: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) of every socket `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match[1])
    addresses = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                addresses.append(fields[1].split(":")[0])
    return addresses


def token_after(banner: str, label: str) -> str:
    lines = banner.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(label))
    return lines[index + 1].strip()


def call(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class TestEmbeddedMode:
    def test_listens_on_loopback_only(self, embedded: Embedded) -> None:
        """Gateway, health server and simulators all listen on 127.0.0.1: nothing on 0.0.0.0 or another address."""
        addresses = listening_addresses(embedded.process.pid)
        assert len(addresses) >= 2, addresses  # the gateway and the health server at least
        assert set(addresses) == {LOOPBACK_HEX}, addresses
        assert f"gateway:  {embedded.url}\n" in embedded.banner

    def test_printed_tokens_and_sample_request_work(self, embedded: Embedded) -> None:
        """The admin token reads the flags, the user token may not; the sample request, as printed, completes."""
        user, admin = token_after(embedded.banner, "user token"), token_after(embedded.banner, "admin token")
        flags = f"{embedded.url}/api/admin/feature-flags"
        assert call(flags, admin)[0] == 200
        assert call(flags, user)[0] == 403
        sample = re.search(r"curl -s -X POST '([^']+)'.*?-d '([^']+)'", embedded.banner, re.S)
        assert sample is not None and f"Bearer {user}" in embedded.banner
        status, answer = call(sample[1], user, json.loads(sample[2]))
        assert status == 200, answer
        assert answer["data"]["status"] == "completed"

    def test_prints_the_console_login_link(self, embedded: Embedded) -> None:
        """The console's link carries the admin token in its fragment, and the page it names is served."""
        admin = token_after(embedded.banner, "admin token")
        assert f"console:  {embedded.url}/console#token={admin}\n" in embedded.banner
        with urllib.request.urlopen(f"{embedded.url}/console", timeout=10) as response:
            assert response.status == 200
            assert b'<script type="module" src="/console/console.js">' in response.read()
