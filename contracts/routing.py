"""Which service consumes which message type: the one table both transports and the docs derive from.

Replies (`*.reply`) are not routed: they go straight to the requester's reply queue.
"""

from __future__ import annotations

from types import MappingProxyType

from contracts import costs
from contracts import messages as m
from contracts.envelope import Envelope

# Service names are also queue names (prefixed by the bus) and process names.
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
        m.WorkflowStatusQuery.TYPE: (ROUTER,),
        m.WorkflowFanout.TYPE: (ROUTER,),
        m.DeliveryListQuery.TYPE: (ROUTER,),
        m.WorkflowCancelRequest.TYPE: (ROUTER,),
        m.WorkflowListQuery.TYPE: (ROUTER,),
        m.WorkflowRetryRequest.TYPE: (ROUTER,),
        # The of-sender keeps the cancelled workflows so that no approval of theirs is sent from then on; the
        # cost-tracker records the end, as for workflow.completed / .failed.
        m.WorkflowCancelled.TYPE: (OF_SENDER, COST_TRACKER),
        # The router POSTs completion webhooks from its own queue: a retry waits on the bus, not in a handler.
        m.WebhookRequested.TYPE: (ROUTER,),
        f"{m.GenerationRequested.TYPE}.azure": (AZURE_WORKER,),
        f"{m.GenerationRequested.TYPE}.openai": (OPENAI_WORKER,),
        m.DeliveryRequested.TYPE: (RATE_LIMITER,),
        m.DeliveryApproved.TYPE: (OF_SENDER,),
        m.UsageRecorded.TYPE: (COST_TRACKER,),
        m.WorkflowCompleted.TYPE: (COST_TRACKER,),
        m.WorkflowFailed.TYPE: (COST_TRACKER,),
        # The gateway's cost queries and threshold / alert changes (contracts.costs), each answered typed.
        **{request.TYPE: (COST_TRACKER,) for request in costs.COST_REQUESTS},
        # cost-tracker notifies alert channels from its own queue, so a slow Slack never blocks accounting.
        m.CostAlert.TYPE: (COST_TRACKER,),
    }
)


def route_key(envelope: Envelope) -> str:
    """The key a message is routed by (its type, plus the provider for generation requests)."""
    if isinstance(envelope.payload, m.GenerationRequested):
        return f"{envelope.type}.{envelope.payload.provider.value}"
    return envelope.type


def consumers(key: str) -> tuple[str, ...]:
    """The services whose queues receive messages routed by `key` (empty: unroutable)."""
    return ROUTES.get(key, ())


def keys_consumed_by(service: str) -> tuple[str, ...]:
    """The routing keys bound to a service's queue."""
    return tuple(k for k, services in ROUTES.items() if service in services)
