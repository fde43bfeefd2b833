"""How a bus message (bytes + string headers) travels as an SQS message, and botocore errors as BusErrors.

- Headers become String `MessageAttributes`, one per header. SQS allows 10 per message: when the bus
  headers plus trace context would exceed that (or a name is not a legal attribute name), every `x-ho-*`
  header is packed into one JSON attribute, `x-ho-headers`, and the trace headers stay individual so that
  other SQS tooling still sees `traceparent`.
- `X-Amzn-Trace-Id` (written by the X-Ray propagator, when it is on) goes into the `AWSTraceHeader` system
  attribute instead, the one X-Ray and Lambda follow; it does not count towards the 10. On receive it is
  mapped back under its header name, so the propagators find it where they wrote it.
- SQS bodies are text from a restricted character set; a body that is not (raw bytes replayed or fuzzed
  onto a queue) is sent base64-encoded and marked with `x-ho-body-encoding: base64`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from libs.bus.errors import BusError, PublishError, Unroutable
from libs.bus.sqs_config import (
    AWS_TRACE_ATTRIBUTE,
    DLQ_SOURCE_ATTRIBUTE,
    H_BODY_ENCODING,
    H_PACKED,
    MAX_MESSAGE_ATTRIBUTES,
    RECEIVE_COUNT_ATTRIBUTE,
    SENT_TIMESTAMP_ATTRIBUTE,
    XRAY_HEADER,
)

BUS_HEADER_PREFIX = "x-ho-"
# Characters SQS refuses in bodies and attribute values (it accepts #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
# #x10000+).
_ILLEGAL_TEXT = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Message attribute names: letters, digits, "_-.", no "..", not starting or ending with ".", and the
# "AWS." / "Amazon." prefixes are reserved.
_ATTRIBUTE_NAME = re.compile(r"(?!\.)(?!.*\.\.)(?!(?i:aws|amazon)\.)[A-Za-z0-9_.-]{1,256}(?<!\.)")
# Error codes meaning the queue is gone: the legacy query code (botocore's `Code`) and the modeled one.
_NO_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


@dataclass(frozen=True)
class Incoming:
    """One received SQS message, as the bus sees it."""

    body: bytes
    headers: dict[str, str]
    receipt_handle: str
    receive_count: int  # how many times SQS has handed it out, this time included
    source_arn: str | None = None  # the queue SQS's own redrive moved it from (dead-letter queues only)
    sent_at_ms: int | None = None  # SentTimestamp, when asked for (a redriven message keeps its first one)


def outgoing(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """SendMessage / SendMessageBatch entry parameters for `body` and `headers` (no QueueUrl, no Id)."""
    text, encoded = _body_text(body)
    attributes: dict[str, str] = {}
    system: dict[str, Any] = {}
    for key, value in headers.items():
        if not value:
            continue  # SQS rejects empty attribute values; an absent header reads the same
        if _ILLEGAL_TEXT.search(value):
            value = _ILLEGAL_TEXT.sub("\ufffd", value)  # e.g. a control character in an exception message
        if key == XRAY_HEADER:
            system[AWS_TRACE_ATTRIBUTE] = {"DataType": "String", "StringValue": value}
        else:
            attributes[key] = value
    if encoded:
        attributes[H_BODY_ENCODING] = "base64"
    request: dict[str, Any] = {
        "MessageBody": text,
        "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in _fit(attributes).items()},
    }
    if system:
        request["MessageSystemAttributes"] = system
    return request


def entry_size(entry: Mapping[str, Any]) -> int:
    """Bytes an entry counts towards the batch payload limit (body plus attribute names, types, values)."""
    size = len(str(entry.get("MessageBody", "")).encode())
    for name, attribute in (entry.get("MessageAttributes") or {}).items():
        size += len(name) + len(attribute["DataType"]) + len(str(attribute.get("StringValue", "")).encode())
    return size


def incoming(message: Mapping[str, Any]) -> Incoming:
    """The bus view of a ReceiveMessage result entry (headers restored, body decoded)."""
    headers: dict[str, str] = {}
    for name, attribute in (message.get("MessageAttributes") or {}).items():
        if str(attribute.get("DataType", "")).startswith(("String", "Number")):
            headers[name] = str(attribute.get("StringValue", ""))
    packed = headers.pop(H_PACKED, None)
    if packed is not None:
        headers.update(_unpack(packed))
    system = message.get("Attributes") or {}
    if trace := system.get(AWS_TRACE_ATTRIBUTE):
        headers[XRAY_HEADER] = str(trace)
    raw = str(message.get("Body", ""))
    body = raw.encode()
    if headers.pop(H_BODY_ENCODING, None) == "base64":
        # Not valid base64 means not ours after all: the text goes on as it is, to be dead-lettered.
        with contextlib.suppress(binascii.Error, ValueError):
            body = base64.b64decode(raw, validate=True)
    return Incoming(
        body=body,
        headers=headers,
        receipt_handle=str(message["ReceiptHandle"]),
        receive_count=int(system.get(RECEIVE_COUNT_ATTRIBUTE, "1")),
        source_arn=system.get(DLQ_SOURCE_ATTRIBUTE),
        sent_at_ms=int(system[SENT_TIMESTAMP_ATTRIBUTE]) if system.get(SENT_TIMESTAMP_ATTRIBUTE) else None,
    )


def translate(exc: BotoCoreError | ClientError, action: str, default: type[BusError] = PublishError) -> BusError:
    """A BusError for a botocore failure of `action` (raise it `from exc`): Unroutable when the queue does
    not exist, `default` otherwise."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _NO_QUEUE or error.get("QueryErrorCode") in _NO_QUEUE:
            return Unroutable(f"SQS {action}: the queue does not exist")
        return default(f"SQS {action} failed: {code}: {error.get('Message', '')}")
    return default(f"SQS {action} failed: {type(exc).__name__}: {exc}")


def client_error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("QueryErrorCode") or error.get("Code") or "")


def _body_text(body: bytes) -> tuple[str, bool]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True
    if not text or _ILLEGAL_TEXT.search(text):  # SQS also refuses an empty body
        return base64.b64encode(body).decode("ascii"), True
    return text, False


def _fit(attributes: dict[str, str]) -> dict[str, str]:
    """`attributes` within SQS's limit of 10 legal names, packing the bus's own headers when needed."""
    if len(attributes) <= MAX_MESSAGE_ATTRIBUTES and all(_ATTRIBUTE_NAME.fullmatch(k) for k in attributes):
        return attributes
    kept = {k: v for k, v in attributes.items() if not k.startswith(BUS_HEADER_PREFIX) and _ATTRIBUTE_NAME.fullmatch(k)}
    if len(kept) >= MAX_MESSAGE_ATTRIBUTES:
        kept = {}
    packed = {k: v for k, v in attributes.items() if k not in kept}
    return {**kept, H_PACKED: json.dumps(packed, separators=(",", ":"))}


def _unpack(packed: str) -> dict[str, str]:
    try:
        value = json.loads(packed)
    except ValueError:
        return {H_PACKED: packed}
    if not isinstance(value, dict):
        return {H_PACKED: packed}
    return {str(k): str(v) for k, v in value.items()}


__all__ = [
    "Incoming",
    "client_error_code",
    "entry_size",
    "incoming",
    "outgoing",
    "translate",
]
