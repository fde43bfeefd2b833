"""The bus as an AsyncAPI 3.0 document (contracts/asyncapi.json), written by `make contracts` beside the schemas.

A team that consumes `workflow.completed` or `cost.alert` gets a contract it can render, derived from the
tables the code runs on, so it cannot drift (tests/test_asyncapi.py regenerates and compares):

- channels   each service's queue per lane (`{namespace}.{queue}` on RabbitMQ, `{namespace}-{queue}` on SQS,
             contracts.routing.QUEUES) with the messages routed to it (ROUTES), and the requesters' reply
             queues;
- operations who receives what (ROUTES), who sends what (libs.bus.permissions PUBLISHES, the table the
             broker permissions are generated from) and who asks what and gets which reply (REQUESTS);
- messages   every registered (type, version); the payload is the whole envelope, by reference to its JSON
             Schema under contracts/schemas/ (draft 2020-12, so it is given as a multi-format schema).

Delays, retries and dead letters are the bus's own business (docs/architecture.md#the-bus), not operations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from contracts import costs, rate_window
from contracts import messages as m
from contracts.envelope import registered
from contracts.routing import QUEUES, SERVICES, consumers, every_destination, keys_consumed_by, message_type, service_of
from contracts.schema import HERE, file_name

# The senders are declared where the broker permissions are generated from them, so the document and the
# permissions say the same thing; importing them is the one place contracts/ reads libs/.
from libs.bus.permissions import PUBLISHES, REQUESTS

ASYNCAPI_FILE = HERE / "asyncapi.json"
ASYNCAPI_VERSION = "3.0.0"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
REPLY_CHANNEL = "replies"
NAMESPACE_PARAMETER = "namespace"

# The reply each request is answered with (the handler's return value, sent to the requester's reply queue).
REPLIES: dict[str, str] = {
    m.WorkflowRequested.TYPE: m.WorkflowAccepted.TYPE,
    m.WorkflowStatusQuery.TYPE: m.WorkflowStatusReply.TYPE,
    m.DeliveryListQuery.TYPE: m.DeliveryListReply.TYPE,
    m.WorkflowListQuery.TYPE: m.WorkflowListReply.TYPE,
    m.WorkflowCancelRequest.TYPE: m.WorkflowCancelReply.TYPE,
    m.WorkflowRetryRequest.TYPE: m.WorkflowRetryReply.TYPE,
    rate_window.RateWindowQuery.TYPE: rate_window.RateWindow.TYPE,
    **{request.TYPE: request.REPLY.TYPE for request in costs.COST_REQUESTS},
}


def physical(queue: str) -> str:
    """A queue's SQS name after the namespace (libs.bus.sqs_config.physical_name: "." becomes "-")."""
    return queue.replace(".", "-")


def message_ids(type_: str) -> list[str]:
    """The component ids of every registered version of `type_` ("workflow.requested.v1", ...)."""
    return [f"{t}.v{v}" for t, v in sorted(registered()) if t == type_]


def _channel_ref(channel: str, message_id: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{message_id}"}


def _refs(channel: str, types: Iterable[str]) -> list[dict[str, str]]:
    return [_channel_ref(channel, mid) for t in sorted(set(types)) for mid in message_ids(t)]


def _messages() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (type_, version), model in sorted(registered().items()):
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        message: dict[str, Any] = {
            "name": type_,
            "title": f"{type_} v{version}",
            "contentType": "application/json",
            "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"schemas/{file_name(type_, version)}"}},
        }
        if doc and not doc.startswith("Usage docs"):  # pydantic's inherited docstring says nothing of ours
            message["summary"] = " ".join(doc.split())
        out[f"{type_}.v{version}"] = message
    return out


def _channels() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for queue in QUEUES:  # the gateway has no queue: it only publishes and asks
        types = {message_type(k) for k in keys_consumed_by(queue)}
        service = service_of(queue)
        lane = queue.removeprefix(f"{service}.") if queue != service else ""
        sqs = f"{{namespace}}-{physical(queue)}"
        channels[queue] = {
            "address": f"{{{NAMESPACE_PARAMETER}}}.{queue}",
            "title": f"{service}'s queue ({lane} lane)" if lane else f"{service}'s queue",
            "description": (
                f"The messages {service} consumes{f' on its {lane} lane' if lane else ''}. RabbitMQ: durable "
                f"quorum queue `{{namespace}}.{queue}`; SQS: `{sqs}`. A message that fails five times, or cannot "
                f"be decoded, moves to `{{namespace}}.{queue}.dlq` (SQS `{sqs}-dlq`)."
            ),
            "parameters": {NAMESPACE_PARAMETER: {"$ref": f"#/components/parameters/{NAMESPACE_PARAMETER}"}},
            "messages": {
                mid: {"$ref": f"#/components/messages/{mid}"} for t in sorted(types) for mid in message_ids(t)
            },
        }
    replies = sorted(set(REPLIES.values()))
    channels[REPLY_CHANNEL] = {
        "address": None,  # one queue per requesting process (`{namespace}.reply.<instance>`), named at run time
        "title": "a requester's reply queue",
        "description": "Each process that asks (the gateway) has its own reply queue; a reply carries the "
        "request's correlation id.",
        "messages": {mid: {"$ref": f"#/components/messages/{mid}"} for t in replies for mid in message_ids(t)},
    }
    return channels


def _reply(type_: str) -> dict[str, Any]:
    return {
        "address": {
            "description": "the requester's reply queue, named by the request",
            "location": "$message.header#/x-ho-reply-to",
        },
        "channel": {"$ref": f"#/channels/{REPLY_CHANNEL}"},
        "messages": _refs(REPLY_CHANNEL, [REPLIES[type_]]),
    }


def _operations() -> dict[str, Any]:
    ops: dict[str, Any] = {}
    requests = {k for keys in REQUESTS.values() for k in keys}
    for queue in QUEUES:
        service = service_of(queue)
        keys = keys_consumed_by(queue)
        events = [message_type(k) for k in keys if k not in requests]
        if events:
            ops[f"{queue}.receive"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{queue}"},
                "summary": f"{service} handles these messages",
                "messages": _refs(queue, events),
            }
        for key in sorted(k for k in keys if k in requests):
            ops[f"{queue}.answer.{key}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{queue}"},
                "summary": f"{service} answers {key}",
                "messages": _refs(queue, [key]),
                "reply": _reply(key),
            }
    for sender in SERVICES:
        by_target: dict[str, set[str]] = {}
        for key in PUBLISHES.get(sender, ()):
            for target in every_destination(key):
                by_target.setdefault(target, set()).add(message_type(key))
        for target, types in sorted(by_target.items()):
            ops[f"{sender}.send.{target}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{target}"},
                "summary": f"{sender} publishes to {target}",
                "messages": _refs(target, types),
            }
        for key in REQUESTS.get(sender, ()):
            for target in consumers(key):  # the default lane's; a request with a priority goes to its lane
                ops[f"{sender}.request.{key}"] = {
                    "action": "send",
                    "channel": {"$ref": f"#/channels/{target}"},
                    "summary": f"{sender} asks {target} ({key}) and waits for the reply",
                    "messages": _refs(target, [key]),
                    "reply": _reply(key),
                }
    return ops


def document() -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document of the bus."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Hybrid Orchestrator bus",
            "version": "1",
            "description": (
                "Versioned messages between the seven services. Delivery is at least once: de-duplicate on the "
                "envelope's `id`. A v1 schema only ever gains optional fields; an incompatible change is a v2 "
                "message beside it. Trace context travels in transport headers (W3C `traceparent`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "{host}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ: a direct exchange `{namespace}.direct` routes by message type.",
                "variables": {"host": {"default": "localhost:5672"}},
            },
            "sqs": {
                "host": "sqs.{region}.amazonaws.com",
                "protocol": "sqs",
                "description": "AWS SQS: one queue per service and lane, published to directly.",
                "variables": {"region": {"default": "us-east-1"}},
            },
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "messages": _messages(),
            "parameters": {
                NAMESPACE_PARAMETER: {"default": "ho", "description": "the deployment's bus namespace (BUS_URL)"},
            },
        },
    }


def render_document(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
