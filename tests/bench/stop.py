"""`--mode stop`: how fast the kill switch stops the sends, across two of-sender processes.

After the warm-up (delivery workflows, ?wait=true), ONE campaign of n fans (-n, default 500) with the limits
lifted, so the sends flow continuously; once SWITCH_AFTER_SHARE of its fans were reached the bench PUTs
hybridOrchestratorEnabled=false through the gateway, waits OFF_S, PUTs it true again and waits until the
campaign is terminal. Times are the platform simulator's clock (time.time() on this machine).

   switch_to_last_send_ms   the PUT sent -> the last message the platform received before the switch went
                            on again (0: nothing arrived after the PUT was sent)
   sends_after_switch       messages the platform received between the PUT and the end of the stop
   put_ms                   the PUT's round trip (the flag stored and announced)
   on_to_first_send_ms      the second PUT sent -> the first message after it (how fast sending resumes)
   stopped                  no message arrived in the last OFF_S - STOP_BOUND_S seconds of the stop
   status, fans_reached, fans_twice   the campaign's end: completed, every fan once

The invariants, which make the run exit 1 when broken: the stop held (nothing arrived after the switch +
STOP_BOUND_S while off), every fan reached exactly once, and the campaign completed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp

from services.gateway.auth import make_token
from tests.bench.phases import submit_all
from tests.bench.workload import WARMUP, Workload
from tests.chaos.campaign import campaign_body, campaign_fans, final_status, post_campaign
from tests.chaos.servers import SimulatorProcess

FLAGS_PATH = "/api/admin/feature-flags"
SWITCH_AFTER_SHARE = 0.2  # of the fans reached when the switch goes off: mid-campaign, sending at full pace
STOP_BOUND_S = 3.0  # the bound the stop is held to (the goal is < 1 s; the figure is what is reported)
OFF_S = 6.0  # off this long: the last OFF_S - STOP_BOUND_S seconds must see no send at all
POLL_S = 0.02  # the platform's arrival log, read this often until the switch
POST_DEADLINE_S = 30.0
TIMEOUT_BASE_S = 120.0
TIMEOUT_PER_FAN_S = 0.1


async def switch(session: aiohttp.ClientSession, url: str, on: bool) -> float:
    """PUT the kill switch; answers when the PUT was sent (time.time())."""
    sent_at = time.time()
    async with session.put(url + FLAGS_PATH, json={"hybridOrchestratorEnabled": on}) as response:
        if response.status != 200:
            raise RuntimeError(f"PUT {FLAGS_PATH} answered {response.status}: {await response.text()}")
    return sent_at


async def sent_to(platform: SimulatorProcess, fans: set[str]) -> list[float]:
    """When each message to one of `fans` arrived (outcome sent), sorted."""
    return sorted(
        a["at"] for a in await platform.fetch_arrivals() if a["outcome"] == "sent" and a["recipient_id"] in fans
    )


async def until_reached(platform: SimulatorProcess, fans: set[str], count: float, timeout_s: float) -> None:
    give_up = time.monotonic() + timeout_s
    while True:
        if len(await sent_to(platform, fans)) >= count:
            return
        if time.monotonic() > give_up:
            raise RuntimeError(f"fewer than {count:g} fans reached in {timeout_s:g}s: the campaign did not send")
        await asyncio.sleep(POLL_S)


async def measure_stop(
    workload: Workload, platform: SimulatorProcess, n: int, concurrency: int, secret: str
) -> tuple[dict[str, Any], list[str]]:
    """Warm up, send the campaign, stop it mid-way and go on; returns the numbers and the broken invariants."""
    await submit_all(workload, WARMUP, concurrency, wait=True)
    client = workload.clients[0]
    fans = campaign_fans(f"{workload.run_tag}s", n)
    wanted = set(fans)
    admin = {"Authorization": f"Bearer {make_token(secret, 'bench-admin', role='admin')}"}
    async with aiohttp.ClientSession(headers=admin) as session:
        body = campaign_body(fans, f"bench stop {workload.run_tag}")
        workflow_id = await post_campaign(client, body, key=uuid.uuid4().hex, deadline_s=POST_DEADLINE_S)
        await until_reached(platform, wanted, n * SWITCH_AFTER_SHARE, TIMEOUT_BASE_S)
        off_at = await switch(session, client.base_url, False)
        put_ms = (time.time() - off_at) * 1000
        await asyncio.sleep(OFF_S)
        on_at = await switch(session, client.base_url, True)
        during = [at for at in await sent_to(platform, wanted) if off_at <= at < on_at]
        view = await final_status(client, workflow_id, TIMEOUT_BASE_S + TIMEOUT_PER_FAN_S * n)
    arrivals = [a for a in await platform.fetch_arrivals() if a["outcome"] == "sent" and a["recipient_id"] in wanted]
    counts = Counter(a["recipient_id"] for a in arrivals)
    after_on = [a["at"] for a in arrivals if a["at"] >= on_at]
    stopped = not [at for at in during if at > off_at + STOP_BOUND_S]
    result: dict[str, Any] = {
        "workflow_id": workflow_id,
        "switch_to_last_send_ms": round((max(during) - off_at) * 1000) if during else 0,
        "sends_after_switch": len(during),
        "put_ms": round(put_ms, 1),
        "on_to_first_send_ms": round((min(after_on) - on_at) * 1000) if after_on else None,
        "stopped": stopped,
        "status": view.get("status") if view else None,
        "fans_reached": len(counts),
        "fans_twice": sum(1 for c in counts.values() if c > 1),
    }
    breaches = []
    if not stopped:
        breaches.append(f"a message arrived more than {STOP_BOUND_S:g} s after the switch")
    if len(counts) != n or result["fans_twice"]:
        breaches.append(f"{n - len(counts)} fans not reached, {result['fans_twice']} reached twice")
    if result["status"] != "completed":
        breaches.append(f"the campaign ended {result['status']}")
    return result, breaches
