"""`sqs://`: the bus on AWS SQS (aiobotocore), with the same semantics as on RabbitMQ.

    BUS_URL = sqs://?region=us-east-1&endpoint_url=http://127.0.0.1:4566&namespace=ho
              &max_receive_count=10&visibility_timeout=30&wait_time=20&create_queues=true

(every parameter optional; see libs.bus.sqs_config for what each means; credentials come from the standard AWS
chain). One standard queue per consuming service and lane plus its dead-letter queue, named `{ns}-{queue}` /
`{ns}-{queue}-dlq` (`router-query`: the router's query lane), created idempotently at `connect` and by
`python -m libs.bus.sqs provision` (libs.bus.sqs_provision); dead-letter queues are read, replayed and measured by
libs.bus.sqs_dead. Publishing sends to every queue the routing table names; sends and deletes are batched
(libs.bus.sqs_batch); consuming, the visibility heartbeat and retries live in libs.bus.sqs_consume; headers ↔
MessageAttributes and the X-Ray `AWSTraceHeader` in libs.bus.sqs_wire.

Request/reply: a process's first request creates its reply queue `{ns}-reply-{instance}` and a poller
for it; `close` deletes it. The reply-to header carries that queue's URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from libs.bus import constants as c
from libs.bus import sqs_dead
from libs.bus.base import Bus, Consumer, DeadLetter, deliver_at, new_instance_id
from libs.bus.errors import BusConnectionError, BusError, Unroutable
from libs.bus.sqs_batch import Batcher
from libs.bus.sqs_config import (
    AWS_TRACE_ATTRIBUTE,
    LOCAL_WAIT_S,
    MAX_BATCH_ENTRIES,
    MAX_DELAY_SECONDS,
    POLL_BACKOFF_S,
    RECEIVE_COUNT_ATTRIBUTE,
    REPLY_HEARTBEAT_S,
    REPLY_HEARTBEAT_TAG,
    SqsSettings,
    physical_name,
)
from libs.bus.sqs_consume import Subscription, cancel_task
from libs.bus.sqs_provision import (
    Topology,
    consuming_services,
    delete_queue,
    destroy,
    ensure_queue,
    provision,
    queue_names,
    reply_queue_attributes,
    resolve,
    sqs_client,
)
from libs.bus.sqs_wire import Incoming, entry_size, incoming, outgoing, translate

log = structlog.get_logger("libs.bus.sqs")

_SYSTEM_ATTRIBUTES = (RECEIVE_COUNT_ATTRIBUTE, AWS_TRACE_ATTRIBUTE)


class SqsBus(Bus):
    system = "aws_sqs"  # messaging.system of the OpenTelemetry semantic conventions

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.settings = SqsSettings.from_url(url)
        if "namespace" not in kwargs and self.settings.namespace:
            kwargs["namespace"] = self.settings.namespace
        super().__init__(**kwargs)
        for service in consuming_services():
            queue_names(self.namespace, service)  # raises ValueError now, not at the first publish
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._topology = Topology({}, {})
        self._subscriptions: dict[int, Subscription] = {}
        self._sender = Batcher(self._send_batch, "SendMessageBatch")
        self._deleter = Batcher(self._delete_batch, "DeleteMessageBatch")
        self._reply_name = physical_name(f"{self.namespace}.reply.{new_instance_id()}")
        self._reply_url: str | None = None
        self._reply_poller: asyncio.Task[None] | None = None
        self._reply_lock = asyncio.Lock()

    # --- connection and topology -------------------------------------------------------------------------

    async def connect(self) -> None:
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(sqs_client(self.settings))
            if self.settings.create_queues:
                self._topology = await provision(self._client, self.settings, self.namespace)
            else:
                self._topology = await resolve(self._client, self.namespace)
        except (BotoCoreError, ClientError) as exc:
            await stack.aclose()
            raise translate(exc, "connect", BusConnectionError) from exc
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def _disconnect(self) -> None:
        for subscription in self._subscriptions.values():
            await subscription.close()
        await cancel_task(self._reply_poller)
        await self._sender.drain()
        await self._deleter.drain()
        if self._reply_url is not None:
            try:
                await delete_queue(self._client, self._reply_url)
            except (BotoCoreError, ClientError) as exc:
                log.warning("bus.sqs.reply_queue_not_deleted", queue=self._reply_name, error=repr(exc))
            self._reply_url = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def ping(self) -> None:
        if self._stack is None or not self._topology.queues:
            raise BusConnectionError("not connected to SQS")
        url = next(iter(self._topology.queues.values()))
        try:
            await self._client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "GetQueueAttributes", BusConnectionError) from exc

    async def destroy(self) -> None:
        """Delete this namespace's queues, DLQs and reply queues (tests and temporary environments)."""
        try:
            await destroy(self._client, self.namespace)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "DeleteQueue", BusError) from exc

    # --- the primitives subscriptions use (libs.bus.sqs_consume.Transport) -----------------------------

    async def send_to(self, url: str, body: bytes, headers: Mapping[str, str], delay: float) -> None:
        """Store one message in the queue at `url`, delayed by `delay` rounded down to whole seconds (at most
        900) when it is at least LOCAL_WAIT_S; the consumer waits out the rest (libs.bus.sqs_consume)."""
        params = outgoing(body, headers)
        if delay >= LOCAL_WAIT_S:
            params["DelaySeconds"] = min(int(delay), MAX_DELAY_SECONDS)
        await self._sender.submit(url, params, entry_size(params))

    async def delete(self, url: str, receipt_handle: str) -> None:
        await self._deleter.submit(url, {"ReceiptHandle": receipt_handle})

    async def receive(
        self,
        url: str,
        max_messages: int,
        wait: int,
        system_attributes: tuple[str, ...] = _SYSTEM_ATTRIBUTES,
        visibility: int | None = None,
    ) -> list[Incoming]:
        """Up to `max_messages`, hidden for `visibility` seconds (default: the URL's visibility_timeout)."""
        try:
            response = await self._client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.settings.visibility_timeout if visibility is None else visibility,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=list(system_attributes),
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "ReceiveMessage", BusConnectionError) from exc
        return [incoming(m) for m in response.get("Messages") or ()]

    async def set_visibility(self, url: str, receipt_handles: list[str], seconds: int) -> list[str]:
        refused: list[str] = []
        for start in range(0, len(receipt_handles), MAX_BATCH_ENTRIES):
            chunk = receipt_handles[start : start + MAX_BATCH_ENTRIES]
            entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds} for i, h in enumerate(chunk)]
            try:
                response = await self._client.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                raise translate(exc, "ChangeMessageVisibilityBatch", BusConnectionError) from exc
            refused += [chunk[int(f["Id"])] for f in response.get("Failed") or ()]
        return refused

    async def _send_batch(self, url: str, entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        if len(entries) == 1:
            # A lone message goes as SendMessage: the same cost, and the call every SQS emulator implements
            # fully (moto's SendMessageBatch drops MessageSystemAttributes, so AWSTraceHeader; SQS keeps it).
            single = {k: v for k, v in entries[0].items() if k != "Id"}
            await self._client.send_message(QueueUrl=url, **single)
            return {"Successful": [{"Id": entries[0]["Id"]}], "Failed": []}
        response: Mapping[str, Any] = await self._client.send_message_batch(QueueUrl=url, Entries=entries)
        return response

    async def _delete_batch(self, url: str, entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        response: Mapping[str, Any] = await self._client.delete_message_batch(QueueUrl=url, Entries=entries)
        return response

    # --- publishing --------------------------------------------------------------------------------------

    async def _send(
        self, key: str, services: tuple[str, ...], body: bytes, headers: dict[str, str], delay: float
    ) -> None:
        if not services:
            raise Unroutable(f"no service consumes {key!r}")
        if self._stack is None:
            raise BusConnectionError("SQS bus is not connected")
        urls = []
        for service in services:
            url = self._topology.queues.get(service)
            if url is None:
                raise Unroutable(f"service {service!r} has no queue")
            urls.append(url)
        if delay > 0:
            # publish() already stamped it; publish_raw() did not, and steps beyond 900 s need it.
            headers.setdefault(c.H_DELIVER_AT, deliver_at(delay))
        await asyncio.gather(*(self.send_to(url, body, headers, delay) for url in urls))

    async def _reply(self, reply_to: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            await self.send_to(reply_to, body, headers, 0.0)
        except Unroutable:
            # The requester is gone with its reply queue: not this handler's failure.
            log.info("bus.sqs.reply_dropped", reply_to=reply_to.rsplit("/", 1)[-1])

    # --- request/reply -----------------------------------------------------------------------------------

    async def _reply_queue(self) -> str:
        async with self._reply_lock:
            if self._reply_url is None:
                tags = {REPLY_HEARTBEAT_TAG: str(int(time.time()))}
                try:
                    url = await ensure_queue(
                        self._client, self._reply_name, reply_queue_attributes(self.settings), tags
                    )
                except (BotoCoreError, ClientError) as exc:
                    raise translate(exc, "CreateQueue", BusConnectionError) from exc
                self._reply_url = url
                self._reply_poller = asyncio.create_task(self._poll_replies(url))
            return self._reply_url

    async def _poll_replies(self, url: str) -> None:
        stamped = time.monotonic()
        while True:
            try:
                messages = await self.receive(url, MAX_BATCH_ENTRIES, self.settings.wait_time)
            except Exception as exc:  # the loop must outlive outages, like the consumers' (sqs_consume)
                log.warning("bus.sqs.receive_failed", queue=self._reply_name, error=repr(exc))
                await asyncio.sleep(POLL_BACKOFF_S)
                continue
            for message in messages:
                self._resolve_reply(message.body, message.headers)
            await asyncio.gather(*(self.delete(url, m.receipt_handle) for m in messages), return_exceptions=True)
            if time.monotonic() - stamped >= REPLY_HEARTBEAT_S:
                stamped = time.monotonic()
                try:
                    await self._client.tag_queue(QueueUrl=url, Tags={REPLY_HEARTBEAT_TAG: str(int(time.time()))})
                except (BotoCoreError, ClientError) as exc:
                    log.warning("bus.sqs.reply_heartbeat_failed", queue=self._reply_name, error=repr(exc))

    # --- consuming ---------------------------------------------------------------------------------------

    async def _start_consumer(self, consumer: Consumer) -> None:
        url = self._topology.queues.get(consumer.service)
        dlq_url = self._topology.dead_letter_queues.get(consumer.service)
        if url is None or dlq_url is None:
            raise BusError(f"service {consumer.service!r} consumes nothing in the routing table: no queue")
        subscription = Subscription(self, consumer, url, dlq_url)
        self._subscriptions[id(consumer)] = subscription
        subscription.start()

    async def _stop_consumer(self, consumer: Consumer) -> None:
        subscription = self._subscriptions.get(id(consumer))
        if subscription is not None:
            await subscription.stop_polling()

    # --- operations --------------------------------------------------------------------------------------

    async def dead_letters(self, service: str) -> list[DeadLetter]:
        url = self._topology.dead_letter_queues.get(service)
        return [] if url is None else await sqs_dead.drain(self, url)

    async def peek_dead_letters(self, service: str, limit: int) -> list[DeadLetter]:
        """Received hidden, then made visible again at once (libs.bus.sqs_dead explains why and how)."""
        return await sqs_dead.peek(self, self._dead_letter_url(service), limit)

    async def replay_dead_letters(self, service: str, message_id: str | None = None) -> int:
        target = self._topology.queues.get(service)
        if target is None:
            raise Unroutable(f"service {service!r} has no queue")
        return await sqs_dead.replay(self, self._dead_letter_url(service), target, message_id, new_instance_id())

    async def dead_letter_depth(self, service: str) -> int:
        return await sqs_dead.depth(self._client, self._dead_letter_url(service))

    def _dead_letter_url(self, service: str) -> str:
        url = self._topology.dead_letter_queues.get(service)
        if url is None:
            raise Unroutable(f"service {service!r} has no dead-letter queue")
        return url


if __name__ == "__main__":
    from libs.bus.sqs_provision import main

    raise SystemExit(main())
