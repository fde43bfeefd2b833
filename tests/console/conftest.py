"""The console's browser tests: the embedded system (as `make run` runs it) in a thread of its own, a platform
simulator that lets two messages a second through, and one headless Chromium per module driven by selenium
through Debian's chromedriver. Screenshots go to tmp/artefacts/console/ (ignored by git)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService

from libs.bus import Bus
from libs.runtime import Runtime, Service, Shared
from libs.simulators import LLMSimulator, PlatformLimits, PlatformSimulator
from services import embedded
from services.gateway.auth import make_token
from tests.integration.stack import ROOT

T = TypeVar("T")

SECRET = "console-test-secret-of-at-least-32-bytes!"
ADMIN, USER = "ops-admin", "creator-1"
ARTEFACTS = ROOT / "tmp" / "artefacts" / "console"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
START_TIMEOUT_S = 20.0
# The platform's (and the rate-limiter's) limit: two messages a second from one account, so a campaign of a
# few dozen fans is still sending when the test cancels it.
SENDS_PER_S = 2
ENVIRONMENT = {
    "GATEWAY_JWT_SECRET": SECRET,
    "GATEWAY_PORT": "0",
    "GATEWAY_RATE_LIMIT_RPS": "0",  # the pages refresh every 2 s; the limit is not what is tested here
    "GATEWAY_CONSOLE_TRACE_URL": "http://jaeger.test:16686/trace/{traceId}",
    "OF_ACCOUNT_LIMIT": str(SENDS_PER_S),
    "OF_ACCOUNT_WINDOW_S": "1",
    "OF_RECIPIENT_MIN_INTERVAL_S": "0",
    "OF_SAFETY_MARGIN_S": "0",
}
FOREIGN = ("BUS_URL", "DATABASE_URL", "REDIS_URL", "AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL", "ONLYFANS_API_URL")


@dataclass
class Stack:
    """The embedded system running on an event loop in another thread; `run` executes a coroutine there."""

    loop: asyncio.AbstractEventLoop
    url: str
    bus: Bus
    platform: PlatformSimulator
    admin: str = field(default_factory=lambda: make_token(SECRET, ADMIN, role="admin"))
    user: str = field(default_factory=lambda: make_token(SECRET, USER))

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def arrivals(self) -> int:
        """Message requests the platform simulator has received so far (refused ones too)."""
        return self.run(_count(self.platform))

    def delivered(self) -> int:
        """Messages the platform simulator accepted: those fans received."""
        return self.run(_delivered(self.platform))

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        """The gateway's answer (status, JSON) to one request, as any client sends it."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


async def _count(platform: PlatformSimulator) -> int:
    return len(platform.arrivals())


async def _delivered(platform: PlatformSimulator) -> int:
    return len(platform.delivered())


class _Probe:
    """A service of the embedded process with no handlers: it hands the tests that process's bus."""

    bus: Bus | None = None

    async def create(self, runtime: Runtime) -> Service:
        self.bus = runtime.bus
        return Service(name="console-test-probe")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The embedded system with its simulators, started in a thread; stopped after the module."""
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()
    probe = _Probe()

    async def main() -> None:
        limits = PlatformLimits(account_limit=SENDS_PER_S, window_s=1.0, recipient_min_interval_s=0.0)
        async with LLMSimulator() as llm, PlatformSimulator(limits) as platform:
            stop, up = asyncio.Event(), asyncio.Event()
            shared = Shared(llm_simulator_url=llm.url, platform_simulator_url=platform.url)
            system = asyncio.create_task(embedded.run(stop=stop, started=up, shared=shared, beside=(probe.create,)))
            serving = asyncio.create_task(up.wait())
            try:
                # Whichever comes first: serving, or the system ending (its error is the test's).
                await asyncio.wait({system, serving}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
                if system.done():
                    system.result()
                    raise RuntimeError("the embedded system ended before it served")
                if not up.is_set():
                    raise TimeoutError(f"the embedded system did not serve within {START_TIMEOUT_S} s")
                ready.update(stop=stop, url=shared.gateway_url, platform=platform)
            finally:
                serving.cancel()
                started.set()
            await system

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported by the fixture below, which waits on `started`
            ready["error"] = exc
            started.set()

    with pytest.MonkeyPatch.context() as env:
        for key in FOREIGN:
            env.delenv(key, raising=False)
        for key, value in ENVIRONMENT.items():
            env.setenv(key, value)
        thread = threading.Thread(target=serve, name="embedded-system", daemon=True)
        thread.start()
        assert started.wait(START_TIMEOUT_S + 5), "the embedded system did not start"
        assert "error" not in ready and probe.bus is not None, f"the embedded system failed: {ready.get('error')!r}"
        try:
            yield Stack(loop=loop, url=ready["url"], bus=probe.bus, platform=ready["platform"])
        finally:
            loop.call_soon_threadsafe(ready["stop"].set)
            thread.join(20)
            loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module (starting one takes a second or two)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: `make setup` installs Debian's chromium and chromium-driver "
            "(as root: apt-get install -y chromium chromium-driver)"
        )
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """The page as it is now, saved as a test artefact (tmp/artefacts/console/<name>.png)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
