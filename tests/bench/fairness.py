"""`--mode fairness`: another account's single messages while one account's big campaign is delivering.

The limits are real here, FAIR_LIMIT messages per second per account in the rate-limiter and the of-sender
(the platform simulator's are lifted: its own accounting is not under test), so a campaign's sends trickle
out at its account's pace for minutes while the rest of its deliveries wait to be planned and sent — the
case where one account's work could crowd out everyone else's (docs/architecture.md#fair-share-between-accounts).
After the warm-up (delivery workflows, ?wait=true), account B sends SINGLES single-fan delivery workflows
one at a time (POST, wait until the router's table says it is terminal, pause SINGLE_GAP_S): B alone. Then
account A POSTs one campaign of n fans (-n, default 5000) at the same (default) priority; FAIR_START_S later
B sends SINGLES more the same way: B beside A. Then A itself sends OWN_URGENT critical single-fan delivery
workflows the same way, beside its own campaign (the rate-limiter gives each a slot ahead of the campaign's
planned ones). Then A's campaign is cancelled through the gateway.

   alone_p50_ms / alone_p99_ms   B's accepted -> completed (router-stamped) with nothing else running
   beside_p50_ms / p99 / max_ms  the same while A's campaign was delivering
   added_p99_ms                  beside_p99_ms - alone_p99_ms: what A's campaign cost B
   own_urgent_p50_ms / p99 / max_ms  A's critical ones beside its own campaign (accepted -> completed)
   a_sent_beside                 A's fans the platform received while B was measured (A kept its pace)
   a_status                      A's campaign after the cancel (cancelled), a_sent_before_cancel its sends
   fans_twice                    fans (A's or B's) that received more than one message
   targets                       added_p99_ms < ADDED_P99_TARGET_MS, own_urgent_p99_ms <
                                 OWN_URGENT_P99_TARGET_MS: met or missed, reported only

The invariants, which make the run exit 1 when broken: every single's fan (B's, A's critical ones) reached
exactly once, no fan twice, the singles completed, and A's campaign cancelled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from tests.bench.phases import WATCH_POLL_S, CompletionWatcher, pct, submit_all
from tests.bench.workload import WARMUP, Workload
from tests.chaos.campaign import campaign_body, campaign_fans, post_campaign
from tests.chaos.servers import SimulatorProcess
from tests.integration.client import GatewayClient

FAIR_LIMIT = 10  # messages per second per account, in the rate-limiter and the of-sender
SINGLES = 30  # B's single messages, alone and again beside A's campaign
SINGLE_GAP_S = 0.5  # B alone and beside A for ~15 s each: beside, A's campaign is well under way
FAIR_START_S = 1.0  # after A's POST: its fan-out under way
POST_DEADLINE_S = 30.0
CANCEL_PATH = "/api/v2/campaigns/cancel"
ADDED_P99_TARGET_MS = 1000.0
OWN_URGENT = 10  # A's critical single messages beside its own campaign
# The slot an urgent delivery may take is past the planner's margin (PREEMPT_MARGIN_MS, 0.5 s), at most a
# window (1 s) after it, and the of-sender's last check may still hold it back while the campaign's actual
# sends lag their plan: about 2 s at worst, against up to 60 s of campaign planned ahead (600 at 10/s).
OWN_URGENT_P99_TARGET_MS = 2500.0


async def singles(
    workload: Workload,
    client: GatewayClient,
    watcher: CompletionWatcher,
    count: int = SINGLES,
    priority: str | None = None,
) -> tuple[list[float], list[str]]:
    """`count` delivery workflows of `client`, one at a time: each one's accepted -> completed (ms), and
    their fans."""
    first = len(workload.fans)
    latencies = []
    for _ in range(count):
        workflow_id, _ = await workload.submit(wait=False, priority=priority, client=client)
        finished = await watcher.finished(workflow_id)
        if finished.status != "completed":
            raise RuntimeError(f"single workflow {workflow_id} ended {finished.status}")
        latencies.append(finished.latency_ms)
        await asyncio.sleep(SINGLE_GAP_S)
    return latencies, workload.fans[first:]


async def cancel(client: GatewayClient, workflow_id: str) -> dict[str, Any]:
    url = f"{client.base_url}{CANCEL_PATH}"
    async with client.session.post(url, params={"workflowId": workflow_id}, headers=client.headers) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 200:
            raise RuntimeError(f"cancel answered {response.status}: {body}")
        return dict(body["data"])


async def measure_fairness(
    workload: Workload, platform: SimulatorProcess, dsn: str, n: int, concurrency: int
) -> tuple[dict[str, Any], list[str]]:
    """The phases above on a running stack (delivery services): account A is the workload's first client,
    B its second."""
    await submit_all(workload, WARMUP, concurrency, wait=True)
    a, b = workload.clients[0], workload.clients[1]
    fans = campaign_fans(f"{workload.run_tag}-a", n)
    async with CompletionWatcher(dsn, WATCH_POLL_S) as watcher:
        alone, alone_fans = await singles(workload, b, watcher)
        campaign_id = await post_campaign(a, campaign_body(fans, "fairness"), str(uuid.uuid4()), POST_DEADLINE_S)
        await asyncio.sleep(FAIR_START_S)
        started = time.time()
        beside, beside_fans = await singles(workload, b, watcher)
        ended = time.time()
        own, own_fans = await singles(workload, a, watcher, OWN_URGENT, "critical")
    cancelled = await cancel(a, campaign_id)
    arrivals = await platform.all_arrivals()
    sent = [x for x in arrivals if x["outcome"] == "sent"]
    campaign_fan = set(fans)
    twice = sum(1 for count in Counter(x["recipient_id"] for x in sent).values() if count > 1)
    single_fans = {*alone_fans, *beside_fans, *own_fans}
    reached = {x["recipient_id"] for x in sent} & single_fans
    result: dict[str, Any] = {
        "alone_p50_ms": pct(alone, 0.50),
        "alone_p99_ms": pct(alone, 0.99),
        "beside_p50_ms": pct(beside, 0.50),
        "beside_p99_ms": pct(beside, 0.99),
        "beside_max_ms": round(max(beside), 1),
        "added_p99_ms": round(pct(beside, 0.99) - pct(alone, 0.99), 1),
        "singles": len(beside),
        "own_urgent_p50_ms": pct(own, 0.50),
        "own_urgent_p99_ms": pct(own, 0.99),
        "own_urgent_max_ms": round(max(own), 1),
        "a_sent_beside": sum(1 for x in sent if x["recipient_id"] in campaign_fan and started <= x["at"] <= ended),
        "beside_s": round(ended - started, 1),
        "a_status": cancelled["workflow"]["status"],
        "a_sent_before_cancel": cancelled["sentBefore"],
        "fans_twice": twice,
        "limit_per_account_s": FAIR_LIMIT,
    }
    result["targets"] = {
        f"added_p99_ms < {ADDED_P99_TARGET_MS:g}": "met" if result["added_p99_ms"] < ADDED_P99_TARGET_MS else "missed",
        f"own_urgent_p99_ms < {OWN_URGENT_P99_TARGET_MS:g}": (
            "met" if result["own_urgent_p99_ms"] < OWN_URGENT_P99_TARGET_MS else "missed"
        ),
    }
    breaches = []
    if reached != single_fans:
        breaches.append(f"{len(single_fans - reached)} of the singles' {len(single_fans)} fans not reached")
    if twice:
        breaches.append(f"{twice} fans received more than one message")
    if result["a_status"] != "cancelled":
        breaches.append(f"A's campaign is {result['a_status']} after the cancel")
    return result, breaches
