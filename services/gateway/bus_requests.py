"""Asking a service over the bus (the router, the rate-limiter, the cost-tracker): one request, its typed
reply, and what a failure answers — 503 when the bus fails or nobody answers in time, 502 when the answer is
not the reply asked for; either names the service asked."""

from __future__ import annotations

import uuid
from typing import TypeVar

from contracts import Envelope, Message
from libs.bus import Bus, BusError
from libs.telemetry import get_logger
from services.gateway.errors import BadGateway, Unavailable

log = get_logger(__name__)

M = TypeVar("M", bound=Message)


WORKFLOWS = "the workflow service"  # the router: what the gateway asks most


async def ask(
    bus: Bus,
    payload: Message,
    kind: type[M],
    *,
    user_id: str,
    timeout: float,
    workflow_id: uuid.UUID | None = None,
    service: str = WORKFLOWS,
) -> M:
    """`service`'s `kind` answer to `payload`, asked as `user_id` (raises Unavailable, BadGateway)."""
    try:
        reply = await bus.request(Envelope.new(payload, workflow_id=workflow_id, user_id=user_id), timeout=timeout)
    except BusError as exc:
        raise unavailable(exc, service) from exc
    return expect(reply, kind, service)


def expect(reply: Envelope, kind: type[M], service: str = WORKFLOWS) -> M:
    """`reply`'s payload if it is a `kind`; otherwise 502 (`service` answered something else)."""
    if not isinstance(reply.payload, kind):
        log.error("gateway.reply.unexpected", expected=kind.__name__, got=reply.type)
        raise BadGateway("bad_gateway", f"{service} answered something unexpected")
    return reply.payload


def unavailable(exc: BusError, service: str = WORKFLOWS) -> Unavailable:
    """The 503 of a request the bus could not carry or nobody answered."""
    log.error("gateway.bus.failed", service=service, reason=f"{type(exc).__name__}: {exc}")
    return Unavailable("unavailable", f"{service} is unavailable; try again", headers={"Retry-After": "1"})
