"""The image and the compose stack, built and run for real (`make test-containers`, which builds the images
first): every service container runs as the Kubernetes manifests run it, and the demo profile answers a
workflow with delivery end to end through the gateway, traced into the OTLP receiver.

Run only when HO_CONTAINER_TESTS=1 (the make target sets it): it needs podman and root, and takes minutes.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest

from contracts.routing import AZURE_WORKER, OPENAI_WORKER, SERVICES
from tests.containers.stack import Stack, podman
from tests.deploy.manifests import containers, one, rendered
from tests.integration.client import GatewayClient

if os.environ.get("HO_CONTAINER_TESTS") != "1":
    pytest.skip("run by `make test-containers` (needs podman, builds images)", allow_module_level=True)

GATEWAY_PORT, PLATFORM_PORT, OTLP_PORT = 8080, 8091, 4318
WORKFLOW_TIMEOUT_S = 60.0
TRACE_TIMEOUT_S = 30.0  # the exporters send in batches, every few seconds
ROOT_READ_ONLY_ERRNO = 30  # EROFS
WORKERS = {AZURE_WORKER, OPENAI_WORKER}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack.create()
    stack.down()  # whatever an interrupted earlier run left
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def manifest_security(service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's and the container's securityContext of `service` in deploy/k8s/base."""
    deployment = one(rendered("base"), "Deployment", service)
    container = next(iter(containers(deployment)))
    return deployment["spec"]["template"]["spec"]["securityContext"], container["securityContext"]


def proc_status(stack: Stack, service: str) -> dict[str, str]:
    """/proc/self/status of a process started in the service's running container."""
    result = stack.exec(service, "cat", "/proc/self/status")
    assert result.returncode == 0, result.stderr
    return dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)


@pytest.mark.parametrize("service", SERVICES)
def test_service_runs_as_the_manifests_run_it(stack: Stack, service: str) -> None:
    """Each service's container runs as the manifest's non-root uid and gid, with no capability at all and a
    read-only root filesystem (only /tmp writable), and answers its readiness probe so."""
    pod, container = manifest_security(service)
    assert container["readOnlyRootFilesystem"] is True and container["capabilities"]["drop"] == ["ALL"]
    status = proc_status(stack, service)
    assert status["Uid"].split()[0] == str(pod["runAsUser"])
    assert status["Gid"].split()[0] == str(pod["runAsGroup"])
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities], 16) == 0, (capabilities, status[capabilities])
    assert status["NoNewPrivs"].strip() == "1"  # allowPrivilegeEscalation: false
    write = "import errno, sys\ntry: open('/app/probe', 'w')\nexcept OSError as e: sys.exit(e.errno)"
    assert stack.exec(service, "python", "-c", write).returncode == ROOT_READ_ONLY_ERRNO
    assert stack.exec(service, "touch", "/tmp/probe").returncode == 0
    assert stack.healthy(service)


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_a_workflow_with_delivery_completes_through_the_gateway(stack: Stack) -> None:
    """A workflow sent to the gateway with delivery to one fan completes, its delivery is sent, the platform
    simulator received exactly that one message, and its trace reached the OTLP receiver from every service
    on its path (one of the two workers: the router picks the provider)."""
    client = GatewayClient(stack.url("gateway", GATEWAY_PORT), stack.jwt_secret, user=f"ctest-{uuid.uuid4().hex[:8]}")
    fan = f"fan-{uuid.uuid4().hex[:12]}"
    body = {
        "type": "message_generation",
        "data": {"fanName": "Sam", "topic": "the weekend"},
        "sendToOnlyFans": True,
        "recipientIds": [fan],
    }
    try:
        code, answer = await client.submit(body)
        assert code == 202, answer
        view = await client.wait_terminal(answer["data"]["workflowId"], timeout=WORKFLOW_TIMEOUT_S)
    finally:
        await client.close()
    assert view["status"] == "completed", view
    assert [d["status"] for d in view["deliveries"]] == ["sent"], view

    arrivals = (await get_json(f"{stack.url('platform-simulator', PLATFORM_PORT)}/_sim/arrivals"))["arrivals"]
    to_fan = [a for a in arrivals if a["recipient_id"] == fan]
    assert [a["outcome"] for a in to_fan] == ["sent"], to_fan

    def on_path(services: set[str]) -> bool:
        return services >= set(SERVICES) - WORKERS and bool(services & WORKERS)

    seen: set[str] = set()
    deadline = time.monotonic() + TRACE_TIMEOUT_S
    while not on_path(seen) and time.monotonic() < deadline:
        spans = (await get_json(f"{stack.url('jaeger', OTLP_PORT)}/_sim/spans"))["spans"]
        seen = {s["service"] for s in spans if s["trace_id"] == view["traceId"]}
        await asyncio.sleep(1)
    assert on_path(seen), f"services in trace {view['traceId']}: {sorted(seen)}"


def test_services_stop_on_their_own_after_the_broker(stack: Stack) -> None:
    """With RabbitMQ stopped first (as `compose down`, stopping everything at once, can do), every service
    still drains and exits by itself on SIGTERM within SHUTDOWN_GRACE_S, before the stop timeout would
    kill it. Runs last: it stops the stack."""
    grace_s = float(stack.env_of("router")["SHUTDOWN_GRACE_S"])
    podman("stop", "-t", "10", stack.container("rabbitmq"))
    started = time.monotonic()
    with ThreadPoolExecutor(len(SERVICES)) as pool:
        stops = list(pool.map(lambda s: podman("stop", "-t", str(int(grace_s) + 10), stack.container(s)), SERVICES))
    elapsed = time.monotonic() - started
    assert all(stop.returncode == 0 for stop in stops), [stop.stderr for stop in stops]
    exits = {s: stack.inspect(s)["State"]["ExitCode"] for s in SERVICES}
    assert exits == dict.fromkeys(SERVICES, 0), exits  # 137 would be the kill after the timeout
    assert elapsed < grace_s, f"the services took {elapsed:.1f} s to stop"
