"""Which queue receives which message type: the one table every transport and the docs derive from.

A service consumes one queue per lane. Its default lane's queue is named after the service; another lane's
is `{service}.{lane}` (`router.query`). Each lane's queue is consumed on its own (RabbitMQ: its own channel
and prefetch; SQS: its own poller; memory: its own loop), so a lane's messages never wait behind another
lane's backlog: the router answers status queries while a campaign's fan-out and reports queue up, the
rate-limiter an account's window while a campaign's deliveries wait to be planned.

Priority lanes: on the services a workflow's work passes through, from its request to its sends (PRIORITIZED),
a message goes to the lane of its priority (PRIORITY_LANES: critical and high to `urgent`, low to `bulk`,
medium to the default lane). Each lane is consumed with its share of the service's prefetch (LANE_SHARES):
an urgent message never waits behind a bulk backlog, and when every lane is backlogged the bulk lane still
takes its share of the handler slots — low is never starved. A message's priority is its intent's
(workflow.requested, generation.requested), else the priority of the message whose handler publishes it
(the bus carries it in a header), else none: the default lane.

Replies (`*.reply`) are not routed: they go straight to the requester's reply queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from contracts import costs, rate_window
from contracts import messages as m
from contracts.enums import Priority
from contracts.envelope import Envelope

# Service names are also process names and their default lane's queue names (prefixed by the bus).
GATEWAY = "gateway"
ROUTER = "router"
AZURE_WORKER = "azure-worker"
OPENAI_WORKER = "openai-worker"
RATE_LIMITER = "rate-limiter"
OF_SENDER = "of-sender"
COST_TRACKER = "cost-tracker"

SERVICES: tuple[str, ...] = (
    GATEWAY,
    ROUTER,
    AZURE_WORKER,
    OPENAI_WORKER,
    RATE_LIMITER,
    OF_SENDER,
    COST_TRACKER,
)

# The services whose default queue is split into priority lanes: generation, rate-limiting and sending, and the
# router that hands work from one to the next.
PRIORITIZED: tuple[str, ...] = (ROUTER, AZURE_WORKER, OPENAI_WORKER, RATE_LIMITER, OF_SENDER)

# Lanes other than the default one.
QUERY = "query"  # read-only requests (status, lists): answered ahead of the writes waiting on the default lane
URGENT = "urgent"  # critical and high priority
BULK = "bulk"  # low priority

PRIORITY_LANES: MappingProxyType[Priority, str | None] = MappingProxyType(
    {Priority.CRITICAL: URGENT, Priority.HIGH: URGENT, Priority.MEDIUM: None, Priority.LOW: BULK}
)

# Each lane's prefetch as a share of its service's (at least 1). With the default, urgent and bulk lanes all
# backlogged, bulk holds 1/9 of the handler slots (0.25 of 2.25), so it keeps about a ninth of the throughput.
# Small on purpose: an urgent message waits for no queue, but it shares the process (event loop, database
# pool, HTTP connections) with the bulk handlers in flight, and each one more delays it (priority bench, 64
# bulk-capable slots: 0.5 → critical p99 about 2 s, 0.125 → 0.56 s). 0.25 of the default 32 is 8, what a
# campaign generates at once anyway (CAMPAIGN_GENERATION_CONCURRENCY).
LANE_SHARES: MappingProxyType[str | None, float] = MappingProxyType({None: 1.0, QUERY: 1.0, URGENT: 1.0, BULK: 0.25})


def queue(service: str, lane: str | None = None) -> str:
    """The name of `service`'s queue for `lane` (None: its default lane), before the bus's namespace."""
    return service if lane is None else f"{service}.{lane}"


def service_of(queue_: str) -> str:
    """The service that consumes `queue_` (service names have no ".")."""
    return queue_.split(".", 1)[0]


# A message's routing key is its type, except generation.requested, which is consumed by exactly one
# worker: its key carries the provider ("generation.requested.azure"), so a worker never sees the other's.
ROUTES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        m.WorkflowRequested.TYPE: (ROUTER,),
        m.GenerationCompleted.TYPE: (ROUTER,),
        m.GenerationFailed.TYPE: (ROUTER,),
        m.DeliveryScheduled.TYPE: (ROUTER,),
        m.DeliveryCompleted.TYPE: (ROUTER,),
        m.DeliveryFailed.TYPE: (ROUTER,),
        m.BudgetStatus.TYPE: (ROUTER,),
        m.WorkflowStatusQuery.TYPE: (queue(ROUTER, QUERY),),
        m.WorkflowFanout.TYPE: (ROUTER,),
        m.DeliveryListQuery.TYPE: (queue(ROUTER, QUERY),),
        m.WorkflowCancelRequest.TYPE: (ROUTER,),
        m.WorkflowListQuery.TYPE: (queue(ROUTER, QUERY),),
        m.WorkflowRetryRequest.TYPE: (ROUTER,),
        # The of-sender keeps the cancelled workflows so that no approval of theirs is sent from then on; the
        # cost-tracker records the end, as for workflow.completed / .failed.
        m.WorkflowCancelled.TYPE: (OF_SENDER, COST_TRACKER),
        # The router POSTs completion webhooks from its own queue: a retry waits on the bus, not in a handler.
        m.WebhookRequested.TYPE: (ROUTER,),
        f"{m.GenerationRequested.TYPE}.azure": (AZURE_WORKER,),
        f"{m.GenerationRequested.TYPE}.openai": (OPENAI_WORKER,),
        m.DeliveryRequested.TYPE: (RATE_LIMITER,),
        # An account's window, read from the slot plan ahead of the deliveries waiting to be planned.
        rate_window.RateWindowQuery.TYPE: (queue(RATE_LIMITER, QUERY),),
        m.DeliveryApproved.TYPE: (OF_SENDER,),
        m.DeliveryReplanned.TYPE: (OF_SENDER,),
        m.UsageRecorded.TYPE: (COST_TRACKER,),
        m.WorkflowCompleted.TYPE: (COST_TRACKER,),
        m.WorkflowFailed.TYPE: (COST_TRACKER,),
        # The gateway's cost queries and threshold / alert changes (contracts.costs), each answered typed.
        **{request.TYPE: (COST_TRACKER,) for request in costs.COST_REQUESTS},
        # cost-tracker notifies alert channels from its own queue, so a slow Slack never blocks accounting.
        m.CostAlert.TYPE: (COST_TRACKER,),
        # The routing policy applied from the cost recommendations: stored by the router that takes it, read
        # from there by every replica (services/router/policy.py).
        costs.RoutingPolicy.TYPE: (ROUTER,),
    }
)


def route_key(envelope: Envelope) -> str:
    """The key a message is routed by (its type, plus the provider for generation requests)."""
    if isinstance(envelope.payload, m.GenerationRequested):
        return f"{envelope.type}.{envelope.payload.provider.value}"
    return envelope.type


def priority_of(envelope: Envelope) -> Priority | None:
    """The priority a message states itself: its intent's (None: it has none, it inherits its cause's)."""
    if isinstance(envelope.payload, m.WorkflowRequested | m.GenerationRequested):
        return envelope.payload.intent.priority
    return None


def message_type(key: str) -> str:
    """The message type a routing key carries (generation.requested.azure → generation.requested)."""
    return m.GenerationRequested.TYPE if key.startswith(f"{m.GenerationRequested.TYPE}.") else key


def consumers(key: str) -> tuple[str, ...]:
    """The queues that receive messages routed by `key` (empty: unroutable)."""
    return ROUTES.get(key, ())


def lane_of(priority: Priority | None) -> str | None:
    """The lane of `priority` (None: the default lane, as for no priority stated)."""
    return PRIORITY_LANES[priority] if priority is not None else None


def destinations(key: str, priority: Priority | None) -> tuple[str, ...]:
    """The queues a message routed by `key` goes to: a prioritized service's lane for `priority`, where the
    table names that service's default queue."""
    lane = lane_of(priority)
    if lane is None:
        return consumers(key)
    return tuple(queue(q, lane) if q in PRIORITIZED else q for q in consumers(key))


def every_destination(key: str) -> tuple[str, ...]:
    """The queues a message routed by `key` may go to, whatever its priority (permissions, documents)."""
    lanes = sorted({lane for lane in PRIORITY_LANES.values() if lane is not None})
    return tuple(sorted({*consumers(key), *(d for lane in lanes for d in _laned(consumers(key), lane))}))


def _laned(queues: tuple[str, ...], lane: str) -> tuple[str, ...]:
    return tuple(queue(q, lane) for q in queues if q in PRIORITIZED)


# A prioritized service's priority lane queue → its default queue, whose keys it takes.
_PRIORITY_QUEUES: MappingProxyType[str, str] = MappingProxyType(
    {queue(s, lane): s for s in PRIORITIZED for lane in PRIORITY_LANES.values() if lane is not None}
)


def keys_consumed_by(queue_: str) -> tuple[str, ...]:
    """The routing keys bound to a queue (a priority lane's: those of its service's default queue)."""
    base = _PRIORITY_QUEUES.get(queue_, queue_)
    return tuple(k for k, queues in ROUTES.items() if base in queues)


# Every queue the table routes to, with the priority lanes (each with its dead-letter queue), sorted.
QUEUES: tuple[str, ...] = tuple(sorted({q for key in ROUTES for q in every_destination(key)}))


def queues_of(service: str) -> tuple[str, ...]:
    """`service`'s queues, its default lane's first (empty: it consumes nothing)."""
    own = [q for q in QUEUES if service_of(q) == service]
    return tuple(sorted(own, key=lambda q: (q != service, q)))


def lane_prefetch(queue_: str, prefetch: int) -> int:
    """How many messages of `queue_` its consumer takes at once, of its service's `prefetch` (LANE_SHARES)."""
    service = service_of(queue_)
    lane = None if queue_ == service else queue_.removeprefix(f"{service}.")
    return max(1, round(prefetch * LANE_SHARES.get(lane, 1.0)))


def lanes_for(service: str, types: Iterable[str]) -> dict[str, list[str]]:
    """Which of `service`'s queues each of its handled message `types` is consumed from: by queue, the types
    routed to it; a type the table routes to none of them (a test's, a fuzzer's) goes to the default lane."""
    queues = queues_of(service) or (service,)
    lanes: dict[str, list[str]] = {}
    for type_ in types:
        routed = [q for q in queues if any(message_type(k) == type_ for k in keys_consumed_by(q))]
        for q in routed or [queue(service)]:
            lanes.setdefault(q, []).append(type_)
    return lanes
