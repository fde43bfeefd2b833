"""The bus interface every transport implements, and the consume logic they all share.

A transport only moves bytes and headers: `_send` (to the queues of the given services, optionally delayed),
`_reply` (to a requester's reply queue) and the consume loop of its broker, which hands each message to
`Consumer.handle` and then does what the returned `Outcome` says: acknowledge it, or first requeue a copy
after `delay_s` or dead-letter it — in both cases with the `Outcome.headers` decided here.
Everything else — routing, trace context, redelivery bounds and counts, request/reply — is decided here, once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING

import structlog

from contracts import ContractError, Envelope, Message
from contracts.enums import Priority
from contracts.routing import destinations, lane_prefetch, lanes_for, priority_of, route_key, service_of
from libs.bus import constants as c
from libs.bus.errors import PublishError, Reject, RequestTimeout, Unroutable, is_permanent
from libs.bus.metrics import get_bus_metrics
from libs.telemetry.messaging import consumer_span, producer_span

if TYPE_CHECKING:
    from libs.bus.dead_letters import DeadLetterInfo

Handler = Callable[[Envelope], Awaitable[Message | None]]
"""Handles one message. A returned payload is sent back as the reply when the message was a request."""

log = structlog.get_logger("libs.bus")

# The service whose handler is running: publishes made inside it are attributed to it in traces.
current_service: ContextVar[str | None] = ContextVar("current_service", default=None)
# The priority of the message being handled: what the handler publishes inherits it (contracts.routing).
_current_priority: ContextVar[Priority | None] = ContextVar("current_priority", default=None)


def message_priority() -> Priority | None:
    """Inside a handler: the priority of the message being handled (None: none stated; the default lane)."""
    return _current_priority.get()


def header_priority(headers: Mapping[str, str]) -> Priority | None:
    """The priority header of a message (a missing or unknown one: None, the default lane's)."""
    try:
        return Priority(headers.get(c.H_PRIORITY, ""))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    """Where the reply to a request goes: for a handler that answers after it returned (`Bus.reply_later`)."""

    reply_to: str
    correlation_id: str
    request: Envelope


# The request being handled, if the running handler's message is one (set by Consumer around the handler).
_current_request: ContextVar[ReplyAddress | None] = ContextVar("current_request", default=None)


def reply_address() -> ReplyAddress | None:
    """Inside a handler: where its message's reply goes (None: the message is not a request). A handler
    that returns None sends no reply; it may keep the address and answer later with `Bus.reply_later`,
    which is how a request can wait for an event without holding a prefetch slot."""
    return _current_request.get()


def int_header(headers: Mapping[str, str], key: str) -> int:
    """A bus counter or timestamp header as an int; a missing or garbled one counts as 0.

    Headers come from the wire: garbage in one must never make a message undeliverable (an exception
    here, outside the handler's try, would leave it unacknowledged and jam a prefetch slot for good)."""
    try:
        return int(headers.get(key) or 0)
    except ValueError:
        return 0


def deliver_at(delay_s: float) -> str:
    """The `x-ho-deliver-at` value of a message due `delay_s` from now (epoch milliseconds)."""
    return str(int((time.time() + delay_s) * 1000))


def retry_headers(headers: Mapping[str, str], deliveries: int, delay_s: float) -> dict[str, str]:
    """`headers` of the copy that retries a message after its `deliveries`-th failed handler run, due in
    `delay_s` (the broker's own count stays behind: the copy is a new message to the broker)."""
    kept = {k: v for k, v in headers.items() if k != c.H_BROKER_DELIVERIES}
    return {**kept, c.H_DELIVERIES: str(deliveries), c.H_DELIVER_AT: deliver_at(delay_s)}


def dead_headers(headers: Mapping[str, str], reason: str) -> dict[str, str]:
    """`headers` of a message being dead-lettered now because of `reason` (what every transport stores)."""
    return {
        **headers,
        c.H_DEAD_REASON: reason[: c.DEAD_REASON_MAX_CHARS],
        c.H_DEAD_AT: str(int(time.time() * 1000)),
    }


@dataclass(frozen=True)
class RedeliveryPolicy:
    max_deliveries: int = c.MAX_DELIVERIES
    base_s: float = c.RETRY_BASE_S
    cap_s: float = c.RETRY_CAP_S

    def delay(self, deliveries: int) -> float:
        """Backoff before the next delivery, after `deliveries` failed ones (full jitter on the upper half)."""
        ceiling: float = min(self.cap_s, self.base_s * 2.0 ** (deliveries - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Verdict(Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    """What the transport does with a handled message: ACK it; RETRY: requeue a copy with `headers` after
    `delay_s`, then ack; DEAD: put it in the dead-letter queue with `headers`, then ack."""

    verdict: Verdict
    reason: str = ""
    delay_s: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue, with the reason it was put there."""

    body: bytes
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Consumer:
    """One queue's subscription (a service's lane): its handlers and what is in flight (graceful shutdown)."""

    bus: Bus
    service: str  # the queue: a service's name, or `{service}.{lane}` (contracts.routing.queue)
    handlers: Mapping[str, Handler]
    prefetch: int
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, body: bytes, headers: Mapping[str, str], broker_deliveries: int = 0) -> Outcome:
        """Decode, run the handler inside a CONSUMER span, reply if asked; say what to do with the message
        and with which headers. `broker_deliveries`: earlier deliveries the broker counted that never
        reached an outcome (a consumer died holding the message)."""
        started = time.perf_counter()
        deliveries = int_header(headers, c.H_DELIVERIES) + broker_deliveries + 1
        outcome = await self._handle(body, headers, deliveries)
        get_bus_metrics().record_message(
            queue=self.service,
            duration_ms=(time.perf_counter() - started) * 1000,
            failed=outcome.verdict is not Verdict.ACK,
        )
        if outcome.verdict is Verdict.RETRY:
            return replace(outcome, headers=retry_headers(headers, deliveries, outcome.delay_s))
        if outcome.verdict is Verdict.DEAD:
            return replace(outcome, headers=dead_headers(headers, outcome.reason))
        return outcome

    async def _handle(self, body: bytes, headers: Mapping[str, str], deliveries: int) -> Outcome:
        try:
            envelope = Envelope.decode(body)
        except ContractError as exc:
            log.warning("bus.message.undecodable", service=self.service, reason=str(exc))
            return Outcome(Verdict.DEAD, f"undecodable: {exc}")
        handler = self.handlers.get(envelope.type)
        if handler is None:
            return Outcome(Verdict.DEAD, f"service {self.service} has no handler for {envelope.type}")
        workflow_id = str(envelope.workflow_id) if envelope.workflow_id else None
        token = current_service.set(service_of(self.service))
        priority_token = _current_priority.set(header_priority(headers))
        try:
            # bind/reset rather than `bound_contextvars`, which copies the whole context on every message to
            # save what it replaces; the logs of the outcome below are made without it, as before.
            log_context = structlog.contextvars.bind_contextvars(workflow_id=workflow_id, user_id=envelope.user_id)
            try:
                with consumer_span(
                    system=self.bus.system,
                    destination=c.queue_name(self.bus.namespace, self.service),
                    message_type=envelope.type,
                    message_id=str(envelope.id),
                    workflow_id=workflow_id,
                    user_id=envelope.user_id,
                    component=service_of(self.service),
                    headers=headers,
                ):
                    reply_to = headers.get(c.H_REPLY_TO)
                    address = ReplyAddress(reply_to, headers.get(c.H_CORRELATION, ""), envelope) if reply_to else None
                    request_token = _current_request.set(address)
                    try:
                        result = await handler(envelope)
                    finally:
                        _current_request.reset(request_token)
                    if result is not None and address is not None:
                        await self.bus.reply_later(address, result)
            finally:
                structlog.contextvars.reset_contextvars(**log_context)
        except Reject as exc:
            log.warning("bus.message.rejected", service=self.service, type=envelope.type, reason=str(exc))
            return Outcome(Verdict.DEAD, f"rejected: {exc}")
        except Exception as exc:
            policy = self.bus.policy
            reason = f"{type(exc).__name__}: {exc}"
            if is_permanent(exc):  # the same data fails the same way: retries would only delay the dead letter
                log.warning("bus.message.permanent", service=self.service, type=envelope.type, reason=reason)
                return Outcome(Verdict.DEAD, f"permanent: {reason}")
            if deliveries >= policy.max_deliveries:
                log.error("bus.message.exhausted", service=self.service, type=envelope.type, reason=reason)
                return Outcome(Verdict.DEAD, f"failed {deliveries} times, last: {reason}")
            log.warning(
                "bus.message.retry",
                service=self.service,
                type=envelope.type,
                deliveries=deliveries,
                reason=reason,
            )
            return Outcome(Verdict.RETRY, reason, policy.delay(deliveries))
        finally:
            current_service.reset(token)
            _current_priority.reset(priority_token)
        return Outcome(Verdict.ACK)

    def track(self, task: asyncio.Task[None]) -> None:
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def wait_idle(self, grace_s: float) -> None:
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=grace_s)


class Bus(ABC):
    """Publish (routed by the contracts' table), subscribe a service's handlers, request/reply."""

    system: str  # OpenTelemetry `messaging.system`

    def __init__(self, *, namespace: str = c.DEFAULT_NAMESPACE, policy: RedeliveryPolicy | None = None) -> None:
        self.namespace = namespace
        self.policy = policy or RedeliveryPolicy()
        self._consumers: list[Consumer] = []
        self._pending: dict[str, asyncio.Future[Envelope]] = {}
        self._closing = False

    # --- what services call ----------------------------------------------------------------------------

    @abstractmethod
    async def connect(self) -> None:
        """Connect and declare the whole topology (idempotent), so publishes never wait for consumers."""

    async def publish(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        """Send to every consuming service's queue (a prioritized service's: the lane of the message's
        priority); returns once the broker confirmed it is stored."""
        await self._publish_to(envelope, delay=delay, extra={})

    async def publish_all(self, envelopes: Sequence[Envelope], *, delays: Sequence[float] = ()) -> None:
        """Publish several messages (each after its delay in `delays`, else at once) without waiting for one
        confirm before sending the next: the broker confirms them together, one round trip for all instead
        of one each. They leave in this order; returns once every one is stored, else raises the first
        failure (the others may be stored: consumers de-duplicate by id, as after any retried publish)."""
        if len(envelopes) == 1:
            await self.publish(envelopes[0], delay=delays[0] if delays else 0.0)
            return
        due = delays or [0.0] * len(envelopes)
        await asyncio.gather(*(self.publish(e, delay=d) for e, d in zip(envelopes, due, strict=True)))

    async def publish_raw(
        self, service: str, body: bytes, headers: Mapping[str, str] | None = None, *, delay: float = 0.0
    ) -> None:
        """Put bytes as they are on one service's queue (replaying dead letters; fuzzing the consumers)."""
        await self._send(f"raw.{service}", (service,), body, dict(headers or {}), delay)

    async def subscribe(
        self, service: str, handlers: Mapping[str, Handler], *, prefetch: int = c.DEFAULT_PREFETCH
    ) -> None:
        """Start handling `service`'s queues: each lane's queue that `handlers` serve (contracts.routing),
        consumed on its own with at most the lane's share of `prefetch` messages at a time (no handlers: its
        default lane's)."""
        lanes = lanes_for(service, handlers) or {service: []}
        for queue, types in lanes.items():
            consumer = Consumer(self, queue, {t: handlers[t] for t in types}, lane_prefetch(queue, prefetch))
            self._consumers.append(consumer)
            await self._start_consumer(consumer)

    async def request(self, envelope: Envelope, *, timeout: float) -> Envelope:
        """Publish a request and wait for the handler's reply (raises RequestTimeout)."""
        correlation = str(envelope.id)
        async with self.expecting(correlation) as (reply_to, (future,)):
            extra = {c.H_REPLY_TO: reply_to, c.H_CORRELATION: correlation}
            try:
                await self._publish_to(envelope, delay=0.0, extra=extra)
                return await asyncio.wait_for(future, timeout)
            except TimeoutError as exc:
                raise RequestTimeout(f"no reply to {envelope.type} within {timeout}s") from exc

    @asynccontextmanager
    async def expecting(self, *correlation_ids: str) -> AsyncIterator[tuple[str, tuple[asyncio.Future[Envelope], ...]]]:
        """This instance's reply queue and, per correlation id, a future that the first reply with that id
        resolves: for replies other services send later, to an address this instance handed out in a
        message (contracts.messages.Notify), instead of being asked. Forgotten on exit."""
        reply_to = await self._reply_queue()
        loop = asyncio.get_running_loop()
        futures = tuple(loop.create_future() for _ in correlation_ids)
        self._pending.update(zip(correlation_ids, futures, strict=True))
        try:
            yield reply_to, futures
        finally:
            for correlation in correlation_ids:
                self._pending.pop(correlation, None)

    async def close(self, grace_s: float = c.SHUTDOWN_GRACE_S) -> None:
        """Graceful shutdown: stop taking messages, let in-flight handlers finish, then disconnect."""
        if self._closing:
            return
        self._closing = True
        for consumer in self._consumers:
            await self._stop_consumer(consumer)
        await asyncio.gather(*(consumer.wait_idle(grace_s) for consumer in self._consumers))
        await self._disconnect()

    @abstractmethod
    async def dead_letters(self, service: str) -> list[DeadLetter]:
        """Take every message out of `service`'s dead-letter queue (tests; operators list and replay)."""

    async def list_dead_letters(self, service: str, *, limit: int = c.DEAD_LETTER_LIST_DEFAULT) -> list[DeadLetterInfo]:
        """Up to `limit` of `service`'s dead letters, oldest first where the broker keeps an order, described
        for an operator (libs.bus.dead_letters.describe) and left in the queue."""
        from libs.bus.dead_letters import describe  # it builds on this module

        return [describe(dead) for dead in await self.peek_dead_letters(service, limit)]

    @abstractmethod
    async def peek_dead_letters(self, service: str, limit: int) -> list[DeadLetter]:
        """Up to `limit` of `service`'s dead letters, left where they are (each transport says how)."""

    @abstractmethod
    async def replay_dead_letters(self, service: str, message_id: str | None = None) -> int:
        """Send `service`'s dead letters with id `message_id` (None: all of them) back to its queue with
        `replay_headers`; each leaves the dead-letter queue only once its copy is stored. How many went."""

    @abstractmethod
    async def dead_letter_depth(self, service: str) -> int:
        """Messages in `service`'s dead-letter queue (the broker's count; approximate on SQS)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise when the broker is not reachable (readiness checks)."""

    async def reply_later(self, address: ReplyAddress, payload: Message) -> None:
        """Send `payload` as the reply to the request at `address` (see `reply_address`). A requester that
        gave up waiting simply never reads it."""
        # A random id is fine: the requester takes the first reply by correlation id and drops the rest.
        await self.reply(address.reply_to, address.correlation_id, address.request.child(payload))

    # --- used by Consumer --------------------------------------------------------------------------------

    async def reply(self, reply_to: str, correlation_id: str, envelope: Envelope) -> None:
        headers = {c.H_CORRELATION: correlation_id}
        with producer_span(
            system=self.system,
            destination=reply_to,
            message_type=envelope.type,
            message_id=str(envelope.id),
            workflow_id=str(envelope.workflow_id) if envelope.workflow_id else None,
            user_id=envelope.user_id,
            component=current_service.get(),
            headers=headers,
        ):
            await self._reply(reply_to, envelope.encode(), headers)

    def _resolve_reply(self, body: bytes, headers: Mapping[str, str]) -> None:
        """A transport got a message on its reply queue: complete the waiting request, if still waiting."""
        future = self._pending.get(headers.get(c.H_CORRELATION, ""))
        if future is None or future.done():
            return
        try:
            future.set_result(Envelope.decode(body))
        except ContractError as exc:
            future.set_exception(exc)

    # --- what a transport implements ---------------------------------------------------------------------

    async def _publish_to(self, envelope: Envelope, *, delay: float, extra: Mapping[str, str]) -> None:
        key = route_key(envelope)
        priority = priority_of(envelope) or _current_priority.get()
        services = destinations(key, priority)
        headers = {c.H_ROUTE: key, **extra}
        if priority is not None:
            headers[c.H_PRIORITY] = priority.value
        if delay > 0:
            headers[c.H_DELIVER_AT] = deliver_at(delay)
        with producer_span(
            system=self.system,
            destination=key,
            message_type=envelope.type,
            message_id=str(envelope.id),
            workflow_id=str(envelope.workflow_id) if envelope.workflow_id else None,
            user_id=envelope.user_id,
            component=current_service.get(),
            headers=headers,
        ):
            await self._send(key, services, envelope.encode(), headers, delay)

    @abstractmethod
    async def _send(
        self, key: str, services: tuple[str, ...], body: bytes, headers: dict[str, str], delay: float
    ) -> None:
        """Store `body` in each service's queue (after `delay`); raise Unroutable when `services` is empty
        or the broker routes it nowhere, PublishError when the broker does not confirm."""

    @abstractmethod
    async def _reply(self, reply_to: str, body: bytes, headers: dict[str, str]) -> None: ...

    @abstractmethod
    async def _reply_queue(self) -> str:
        """This instance's reply queue (created on first use; replies arrive through `_resolve_reply`)."""

    @abstractmethod
    async def _start_consumer(self, consumer: Consumer) -> None: ...

    @abstractmethod
    async def _stop_consumer(self, consumer: Consumer) -> None:
        """Stop taking new messages for `consumer` (in-flight ones finish)."""

    @abstractmethod
    async def _disconnect(self) -> None: ...


def new_instance_id() -> str:
    return uuid.uuid4().hex[:12]


__all__ = [
    "Bus",
    "Consumer",
    "DeadLetter",
    "Handler",
    "Outcome",
    "PublishError",
    "RedeliveryPolicy",
    "Unroutable",
    "Verdict",
]
