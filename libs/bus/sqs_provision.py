"""The SQS topology: every queue the routing table needs, created idempotently — and the command that does it.

Per namespace `ns` and queue `q` the routing table names (contracts.routing.QUEUES: a service's name for its
default lane, `{service}.{lane}` for another, "." becoming "-"):

    {ns}-{q}-dlq   dead-letter queue, 14 days retention
    {ns}-{q}       the queue; RedrivePolicy → its DLQ after `max_receive_count` receives
    {ns}-reply-*   one per requesting process, deleted by it on close (and by `sweep` if it was killed)

Creating is idempotent: CreateQueue returns the existing queue when the attributes match; when they do not
(say `max_receive_count` changed) it fails with QueueNameExists and we converge with SetQueueAttributes.

    python -m libs.bus.sqs provision   create or update every queue and DLQ for BUS_URL (prints them)
    python -m libs.bus.sqs sweep       delete reply queues whose process stopped stamping them
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from contracts.routing import QUEUES
from libs.bus import constants as c
from libs.bus.errors import BusConnectionError
from libs.bus.sqs_config import (
    CONNECT_TIMEOUT_S,
    DLQ_RETENTION_S,
    MAX_ATTEMPTS,
    MAX_POOL_CONNECTIONS,
    QUEUE_RETENTION_S,
    REPLY_HEARTBEAT_TAG,
    REPLY_RETENTION_S,
    REPLY_STALE_S,
    SqsSettings,
    physical_name,
)
from libs.bus.sqs_wire import client_error_code, translate

_EXISTS = {"QueueNameExists", "QueueAlreadyExists"}
_MISSING = {"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}


@dataclass(frozen=True)
class Topology:
    """Queue URLs by queue name (contracts.routing.QUEUES)."""

    queues: Mapping[str, str]
    dead_letter_queues: Mapping[str, str]


def consuming_services() -> tuple[str, ...]:
    """Every queue of the routing table (a service's queue per lane)."""
    return QUEUES


def queue_names(namespace: str, service: str) -> tuple[str, str]:
    """Physical names of a service's queue and of its dead-letter queue."""
    return physical_name(c.queue_name(namespace, service)), physical_name(c.dlq_name(namespace, service))


def reply_prefix(namespace: str) -> str:
    return physical_name(f"{namespace}.reply.")


# One session per event loop: a session caches the service model and the resolved credentials for the
# clients it creates (saving ~50 ms of CPU per client), but refreshable credentials hold asyncio locks,
# which belong to one loop.
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AioSession] = weakref.WeakKeyDictionary()


def _session() -> AioSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None:
        session = _sessions[loop] = get_session()
    return session


@asynccontextmanager
async def sqs_client(settings: SqsSettings) -> AsyncIterator[Any]:
    """An aiobotocore SQS client for `settings` (credentials from the standard AWS chain)."""
    config = AioConfig(
        max_pool_connections=MAX_POOL_CONNECTIONS,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=settings.read_timeout_s,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    )
    async with _session().create_client(
        "sqs", region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    ) as client:
        yield client


def service_queue_attributes(settings: SqsSettings, dlq_arn: str) -> dict[str, str]:
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
    return {
        "VisibilityTimeout": str(settings.visibility_timeout),
        "MessageRetentionPeriod": str(QUEUE_RETENTION_S),
        "SqsManagedSseEnabled": "true",
        "RedrivePolicy": json.dumps(redrive, separators=(",", ":")),
    }


def dead_letter_queue_attributes() -> dict[str, str]:
    return {"MessageRetentionPeriod": str(DLQ_RETENTION_S), "SqsManagedSseEnabled": "true"}


def reply_queue_attributes(settings: SqsSettings) -> dict[str, str]:
    return {
        "VisibilityTimeout": str(settings.visibility_timeout),
        "MessageRetentionPeriod": str(REPLY_RETENTION_S),
        "SqsManagedSseEnabled": "true",
    }


async def ensure_queue(client: Any, name: str, attributes: dict[str, str], tags: dict[str, str] | None = None) -> str:
    """Create queue `name` with `attributes`, or bring an existing one to them; its URL."""
    request: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if tags:
        request["tags"] = tags
    try:
        response = await client.create_queue(**request)
        return str(response["QueueUrl"])
    except ClientError as exc:
        if client_error_code(exc) not in _EXISTS:
            raise
    url = str((await client.get_queue_url(QueueName=name))["QueueUrl"])
    await client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


async def provision(client: Any, settings: SqsSettings, namespace: str) -> Topology:
    """Create (or update) every service queue and DLQ of `namespace`, all services in parallel."""

    async def one(service: str) -> tuple[str, str]:
        name, dlq = queue_names(namespace, service)
        dlq_url = await ensure_queue(client, dlq, dead_letter_queue_attributes())
        attributes = await client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        arn = str(attributes["Attributes"]["QueueArn"])
        return await ensure_queue(client, name, service_queue_attributes(settings, arn)), dlq_url

    services = consuming_services()
    urls = await asyncio.gather(*(one(s) for s in services))
    return Topology(
        queues={s: u for s, (u, _) in zip(services, urls, strict=True)},
        dead_letter_queues={s: d for s, (_, d) in zip(services, urls, strict=True)},
    )


async def resolve(client: Any, namespace: str) -> Topology:
    """Look up the URLs of queues someone else provisioned (`create_queues=false`)."""

    async def url(name: str) -> str:
        try:
            return str((await client.get_queue_url(QueueName=name))["QueueUrl"])
        except ClientError as exc:
            if client_error_code(exc) not in _MISSING:
                raise
            raise BusConnectionError(f"SQS queue {name} is missing: run `python -m libs.bus.sqs provision`") from exc

    services = consuming_services()
    names = [queue_names(namespace, s) for s in services]
    queues = await asyncio.gather(*(url(n) for n, _ in names))
    dlqs = await asyncio.gather(*(url(d) for _, d in names))
    return Topology(dict(zip(services, queues, strict=True)), dict(zip(services, dlqs, strict=True)))


async def list_queues(client: Any, prefix: str) -> list[str]:
    urls: list[str] = []
    request: dict[str, Any] = {"QueueNamePrefix": prefix, "MaxResults": 1000}
    while True:
        response = await client.list_queues(**request)
        urls += [str(u) for u in response.get("QueueUrls", ())]
        if not response.get("NextToken"):
            return urls
        request["NextToken"] = response["NextToken"]


async def sweep_reply_queues(client: Any, namespace: str, now: float | None = None) -> list[str]:
    """Delete `namespace`'s reply queues not stamped for REPLY_STALE_S; the deleted URLs."""
    cutoff = (time.time() if now is None else now) - REPLY_STALE_S

    async def stale(url: str) -> bool:
        tags = (await client.list_queue_tags(QueueUrl=url)).get("Tags") or {}
        if REPLY_HEARTBEAT_TAG in tags:
            return float(tags[REPLY_HEARTBEAT_TAG]) < cutoff
        attributes = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["CreatedTimestamp"])
        return float(attributes["Attributes"]["CreatedTimestamp"]) < cutoff

    urls = await list_queues(client, reply_prefix(namespace))
    doomed = [u for u, old in zip(urls, await asyncio.gather(*(stale(u) for u in urls)), strict=True) if old]
    await asyncio.gather(*(delete_queue(client, u) for u in doomed))
    return doomed


async def destroy(client: Any, namespace: str) -> list[str]:
    """Delete every queue of `namespace` — service queues, DLQs, reply queues; the deleted URLs."""
    names = {name for service in consuming_services() for name in queue_names(namespace, service)}
    prefix = reply_prefix(namespace)
    urls = [
        url
        for url in await list_queues(client, physical_name(f"{namespace}."))
        if (name := url.rsplit("/", 1)[-1]) in names or name.startswith(prefix)
    ]
    await asyncio.gather(*(delete_queue(client, url) for url in urls))
    return urls


async def delete_queue(client: Any, url: str) -> None:
    """Delete a queue; one that is already gone is fine."""
    try:
        await client.delete_queue(QueueUrl=url)
    except ClientError as exc:
        if client_error_code(exc) not in _MISSING:
            raise


async def _command(action: str, url: str, namespace: str | None) -> dict[str, Any]:
    settings = SqsSettings.from_url(url)
    ns = namespace or settings.namespace or c.DEFAULT_NAMESPACE
    async with sqs_client(settings) as client:
        if action == "provision":
            topology = await provision(client, settings, ns)
            return {
                "namespace": ns,
                "queues": dict(topology.queues),
                "dead_letter_queues": dict(topology.dead_letter_queues),
            }
        return {"namespace": ns, "deleted_reply_queues": await sweep_reply_queues(client, ns)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.bus.sqs", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["provision", "sweep"])
    parser.add_argument("--url", default=os.environ.get("BUS_URL", ""), help="sqs:// URL (default: $BUS_URL)")
    parser.add_argument("--namespace", default=None, help="overrides the URL's namespace")
    args = parser.parse_args(argv)
    if not args.url.startswith("sqs://"):
        parser.error("BUS_URL (or --url) must be an sqs:// URL")
    try:
        result = asyncio.run(_command(args.action, args.url, args.namespace))
    except (BotoCoreError, ClientError) as exc:
        print(translate(exc, args.action, BusConnectionError), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
