"""What the bench submits, per mode: which services that needs, how many bus hops one workflow makes, and
for `delivery` the platform's limits (lifted) and the check that every fan got its message exactly once.

- generation: the text only (router → worker → router).
- delivery: the text delivered to one fan (router → worker → router → rate-limiter → of-sender → platform →
  router), with `sendToOnlyFans` as tests/chaos/load.py sends it. Every workflow has a fan of its own and
  the workflows go round-robin over ACCOUNTS creator accounts (the JWT subject is the sending account).
- campaign: one workflow with n fans (tests/chaos/campaign.py builds it), one text for all of them, sent
  from one account; the warm-up before it is delivery workflows.
- stop: the same campaign, the kill switch flipped off and on again mid-way (tests/bench/stop.py).
- priority: generation workflows, a backlog at low priority from one user and single critical ones from
  another (tests/bench/priority.py).
- fairness: one account's campaign and another account's single deliveries beside it, the platform's limits
  real (tests/bench/fairness.py).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.servers import SimulatorProcess
from tests.integration.client import GatewayClient

GENERATION, DELIVERY, CAMPAIGN, STOP, PRIORITY = "generation", "delivery", "campaign", "stop", "priority"
FAIRNESS = "fairness"
MODES = (GENERATION, DELIVERY, CAMPAIGN, STOP, PRIORITY, FAIRNESS)
# the modes that run the platform simulator and the delivery services
DELIVERING = (DELIVERY, CAMPAIGN, STOP, FAIRNESS)

SERVICES = {
    GENERATION: ("router", "azure_worker", "openai_worker", "cost_tracker"),
    DELIVERY: ("router", "azure_worker", "openai_worker", "cost_tracker", "rate_limiter", "of_sender"),
    CAMPAIGN: ("router", "azure_worker", "openai_worker", "cost_tracker", "rate_limiter", "of_sender"),
    # and a second of-sender (run.py starts it): the stop is measured across replicas
    STOP: ("router", "azure_worker", "openai_worker", "cost_tracker", "rate_limiter", "of_sender"),
    PRIORITY: ("router", "azure_worker", "openai_worker", "cost_tracker"),
    FAIRNESS: ("router", "azure_worker", "openai_worker", "cost_tracker", "rate_limiter", "of_sender"),
}
# Messages published per workflow (what the raw chain repeats with empty handlers).
# generation, 6: workflow.requested, its reply, generation.requested, generation.completed, usage.recorded,
#   workflow.completed. (No deadline timer: the router's sweep reads overdue workflows from its table.)
# delivery, 10: the same, workflow.completed now after the delivery, plus delivery.requested (router →
#   rate-limiter), delivery.scheduled (rate-limiter → router: the slot), delivery.approved (rate-limiter →
#   of-sender, delayed to the slot: no delay with the limits lifted) and delivery.completed (of-sender →
#   router). No re-queue (no delivery.scheduled from the of-sender) while nothing is throttled.
# campaign, 4 per delivery: delivery.requested, delivery.scheduled, delivery.approved, delivery.completed (the
#   one generation and whatever the router publishes to fan the campaign out are not counted).
HOPS = {GENERATION: 6, DELIVERY: 10, CAMPAIGN: 4, STOP: 4, PRIORITY: 6}
# Warm-up POSTs (?wait=true) before the measured phases: at most this many, never more than half of n; in
# campaign mode exactly this many delivery workflows (n there counts fans, not workflows).
WARMUP = 100

ACCOUNTS = 4
PLATFORM_TOKEN = "bench-platform-token"
# "Limits lifted": the rate-limiter and the of-sender's last check still run for every delivery, but nothing
# waits. The window stays short because on Redis state it has never seen (here: a fresh key prefix) the
# rate-limiter holds every account for one whole window before the first send; the warm-up outlasts that.
LIFTED_ACCOUNT_LIMIT = 1_000_000
LIFTED_WINDOW_S = 1.0


def delivery_env(
    platform: SimulatorProcess, key_prefix: str, account_limit: int = LIFTED_ACCOUNT_LIMIT
) -> dict[str, str]:
    """The delivery services' environment: the simulated platform, the limits (lifted unless `account_limit`
    messages per window is given), Redis keys of this run only (a concurrent bench on the same Redis keeps
    its own plan, and nothing of an earlier run counts)."""
    return {
        "ONLYFANS_API_URL": platform.url,
        "ONLYFANS_API_TOKEN": PLATFORM_TOKEN,
        "OF_ACCOUNT_LIMIT": str(account_limit),
        "OF_ACCOUNT_WINDOW_S": str(LIFTED_WINDOW_S),
        "OF_RECIPIENT_MIN_INTERVAL_S": "0",
        "OF_SAFETY_MARGIN_S": "0",
        "RATE_LIMITER_KEY_PREFIX": f"{key_prefix}rl:",
        "OF_SENDER_KEY_PREFIX": f"{key_prefix}of:",
        # The flags of this run only: --mode stop flips the kill switch, which must stop nobody else's stack.
        "FLAGS_KEY": f"{key_prefix}flags",
    }


def platform_simulator_env() -> dict[str, str]:
    """The platform simulator refuses (429) over its limits: lifted the same way as the services'."""
    return {
        "PLATFORM_SIMULATOR_ACCOUNT_LIMIT": str(LIFTED_ACCOUNT_LIMIT),
        "PLATFORM_SIMULATOR_WINDOW_S": str(LIFTED_WINDOW_S),
        "PLATFORM_SIMULATOR_RECIPIENT_MIN_INTERVAL_S": "0",
        "PLATFORM_SIMULATOR_TOKEN": PLATFORM_TOKEN,
    }


@dataclass
class Workload:
    """Builds and POSTs the workflows of every phase; remembers the fans of delivering ones."""

    mode: str
    clients: list[GatewayClient]
    run_tag: str  # makes the fans of this run distinct from any earlier run's
    fans: list[str] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def create(cls, mode: str, gateway_url: str, secret: str, run_tag: str) -> Workload:
        clients = [GatewayClient(gateway_url, secret, user=f"bench-{run_tag}-{k}") for k in range(ACCOUNTS)]
        return cls(mode, clients, run_tag)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()

    async def submit(
        self, *, wait: bool, priority: str | None = None, client: GatewayClient | None = None
    ) -> tuple[str, float]:
        """POST one workflow (by `client`, else the accounts in turn; at `priority`, else the default);
        returns its id and the client-side latency (ms)."""
        n = next(self._seq)
        body: dict[str, Any] = {"type": "message_generation", "data": {"fanName": f"fan{n}", "topic": "bench"}}
        if priority is not None:
            body["priority"] = priority
        if self.mode in DELIVERING:
            fan = f"fan-{self.run_tag}-{n}"
            body.update(sendToOnlyFans=True, recipientIds=[fan])
            self.fans.append(fan)
        started = time.perf_counter()
        code, answer = await (client or self.clients[n % len(self.clients)]).submit(body, wait=wait)
        latency_ms = (time.perf_counter() - started) * 1000
        if code not in (200, 202):
            raise RuntimeError(f"POST answered {code}: {answer}")
        return str(answer["data"]["workflowId"]), latency_ms


@dataclass(frozen=True)
class DeliveryCheck:
    """What the platform saw, against the fans the bench addressed."""

    expected: int
    delivered: int  # fans that received a message
    twice: int  # fans that received more than one
    outcomes: dict[str, int]  # every request the platform got, by outcome (sent, replayed, rate_limited...)

    @property
    def exactly_once(self) -> bool:
        return self.delivered == self.expected and self.twice == 0


async def check_deliveries(platform: SimulatorProcess, fans: list[str]) -> DeliveryCheck:
    arrivals = await platform.all_arrivals()
    sent = Counter(a["recipient_id"] for a in arrivals if a["outcome"] == "sent")
    expected = set(fans)
    return DeliveryCheck(
        expected=len(expected),
        delivered=sum(1 for fan in expected if sent[fan] > 0),
        twice=sum(1 for count in sent.values() if count > 1),
        outcomes=dict(Counter(a["outcome"] for a in arrivals)),
    )
