"""One campaign — a single POST with many fans — as `make bench --mode campaign` and the chaos run send it and
read it back through the gateway: the request, its status (progress where the router reports it, otherwise
the listed deliveries), the deliveries list endpoint where the gateway serves it, and the dead-letter queues
of the stack's namespace. tests/chaos/invariants.py `campaign` judges what these return.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from contracts.routing import QUEUES
from libs.bus import DeadLetter, create_bus
from tests.integration.client import TERMINAL, GatewayClient

CAMPAIGN_PATH = "/api/v2/campaigns/hybrid"
DELIVERIES_PATH = "/api/v2/campaigns/deliveries"
OPENAPI_PATH = "/api/openapi.json"
PAGE_LIMIT = 500  # deliveries per page when paging through the list endpoint
POST_RETRY_S = 1.0  # between two tries of a POST that did not answer 202 (a killed gateway, a broker restart)
STATUS_TIMEOUT_S = 10.0  # one status request; longer counts as an error, not as a latency


def campaign_fans(tag: str, n: int) -> list[str]:
    return [f"fan-{tag}-{k}" for k in range(n)]


def campaign_body(fans: list[str], topic: str) -> dict[str, Any]:
    """One text for every fan (not personalized): the campaign measures delivery, not generation."""
    return {
        "type": "campaign_execution",
        "sendToOnlyFans": True,
        "recipientIds": fans,
        "data": {"prompt": "announce the weekend offer", "offer": "20% off", "topic": topic},
    }


async def post_campaign(client: GatewayClient, body: dict[str, Any], key: str, deadline_s: float) -> str:
    """POST until the gateway answers 202; the Idempotency-Key makes every try the same campaign."""
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            code, answer = await _post(client, body, key)
        except Exception as exc:  # a gateway being killed or restarted shows as any client error
            code, answer = 0, {"error": repr(exc)}
        if code == 202:
            return str(answer["data"]["workflowId"])
        if time.monotonic() > give_up:
            raise RuntimeError(f"campaign POST not accepted within {deadline_s}s: {code} {answer}")
        await asyncio.sleep(POST_RETRY_S)


async def _post(client: GatewayClient, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
    headers = {**client.headers, "Idempotency-Key": key}
    async with client.session.post(client.base_url + CAMPAIGN_PATH, json=body, headers=headers) as response:
        return response.status, await response.json()


async def read_status(client: GatewayClient, workflow_id: str) -> tuple[int, dict[str, Any] | None, float]:
    """One GET status: (HTTP code, 0 on a client error or timeout; the view; the round trip in ms)."""
    started = time.perf_counter()
    try:
        code, body = await asyncio.wait_for(client.status(workflow_id), STATUS_TIMEOUT_S)
    except Exception:  # a timeout or a refused connection: the caller counts it, whatever it was
        return 0, None, (time.perf_counter() - started) * 1000
    view = body.get("data") if code == 200 else None
    return code, view, (time.perf_counter() - started) * 1000


async def final_status(client: GatewayClient, workflow_id: str, timeout_s: float) -> dict[str, Any] | None:
    """The campaign's view once it is terminal (None: not terminal, or not readable, within timeout_s)."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        _, view, _ = await read_status(client, workflow_id)
        if view is not None and view.get("status") in TERMINAL:
            return view
        await asyncio.sleep(0.5)
    return None


@dataclass(frozen=True)
class Tally:
    """A campaign's deliveries by state as the router tells them: its status's `progress`, else the
    deliveries its status lists (a small workflow's), else the pages of the deliveries list endpoint."""

    source: str  # "progress", "status deliveries" or "deliveries list"
    total: int
    sent: int
    failed: int

    @classmethod
    def of(cls, view: dict[str, Any], listed: list[dict[str, Any]] | None = None) -> Tally | None:
        """None: the status has neither progress nor deliveries, and no list was read."""
        progress = view.get("progress")
        if progress:
            return cls("progress", progress["total"], progress["sent"], progress["failed"])
        if view.get("deliveries"):
            return cls.counted("status deliveries", view["deliveries"])
        return cls.counted("deliveries list", listed) if listed is not None else None

    @classmethod
    def counted(cls, source: str, deliveries: list[dict[str, Any]]) -> Tally:
        states = Counter(d["status"] for d in deliveries)
        return cls(source, len(deliveries), states["sent"], states["failed"])


async def serves(client: GatewayClient, path: str) -> bool:
    """Whether the gateway's OpenAPI document has `path` (an unknown route and an unknown workflow are both
    404, so the route's presence is read from the document)."""
    async with client.session.get(client.base_url + OPENAPI_PATH) as response:
        document = await response.json()
    return path in document.get("paths", {})


async def listed_deliveries(client: GatewayClient, workflow_id: str) -> list[dict[str, Any]] | None:
    """Every delivery of the campaign through the keyset-paged list endpoint; None where it is not served."""
    if not await serves(client, DELIVERIES_PATH):
        return None
    deliveries: list[dict[str, Any]] = []
    cursor: int | None = None
    while True:
        params: dict[str, str] = {"workflowId": workflow_id, "limit": str(PAGE_LIMIT)}
        if cursor is not None:
            params["cursor"] = str(cursor)
        url = client.base_url + DELIVERIES_PATH
        async with client.session.get(url, params=params, headers=client.headers) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"GET {DELIVERIES_PATH} answered {response.status}: {body}")
        deliveries.extend(body["data"]["deliveries"])
        cursor = body["data"].get("nextCursor")
        if cursor is None:
            return deliveries


async def drain_dead_letters(bus_url: str, namespace: str) -> list[DeadLetter]:
    """Take every message out of every dead-letter queue of the namespace (before the stack deletes it)."""
    bus = create_bus(bus_url, namespace=namespace)
    await bus.connect()
    try:
        taken: list[DeadLetter] = []
        for queue in QUEUES:  # every service's queue per lane
            taken.extend(await bus.dead_letters(queue))
        return taken
    finally:
        await bus.close(grace_s=1)
