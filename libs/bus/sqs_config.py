"""Settings, limits and queue names of the `sqs://` transport, in one place.

BUS_URL (every parameter optional; unknown ones are an error, so a typo does not silently fall back):

    sqs://?region=us-east-1&endpoint_url=http://127.0.0.1:4566&namespace=ho
          &max_receive_count=10&visibility_timeout=30&wait_time=20&create_queues=true

- `region`: the AWS region; default: the standard chain (AWS_REGION / AWS_DEFAULT_REGION / profile).
- `endpoint_url`: a local SQS (moto's server, ElasticMQ, LocalStack); default: the region's AWS endpoint.
- `namespace`: prefix of every queue name (a `namespace=` keyword to the bus wins over the URL).
- `max_receive_count`: receives after which SQS itself moves a message to the dead-letter queue
  (`RedrivePolicy`). It only counts consumers that died or stalled without deleting the message: the bus's
  own bounded retry re-sends a fresh copy, so handler failures never reach it.
- `visibility_timeout`: seconds a received message stays hidden; a heartbeat extends it while the handler
  runs, so this is only how fast a crashed consumer's messages come back, not a bound on handler time.
- `wait_time`: long-poll seconds of ReceiveMessage (1 to 20).
- `create_queues`: `false` makes `connect` only look queues up (GetQueueUrl) for deployments whose
  services may not create queues; run the provisioning command (`python -m libs.bus.sqs provision`) then.

Credentials always come from the standard AWS chain (environment, profile, container or instance role),
never from the URL.

Queue names: SQS allows only `[A-Za-z0-9_-]{1,80}`, so the bus's logical names (`{ns}.{service}`,
`{ns}.{service}.dlq`, see libs.bus.constants) map to physical ones by replacing "." with "-":
`ho.router` → `ho-router`, `ho.router.dlq` → `ho-router-dlq`, reply queues `ho-reply-<instance>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Final
from urllib.parse import parse_qsl, urlsplit

# --- SQS service limits (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html)
MAX_DELAY_SECONDS: Final = 900  # DelaySeconds of one send; longer delays are re-sent in steps
MAX_BATCH_ENTRIES: Final = 10  # entries per *Batch call and messages per ReceiveMessage
MAX_MESSAGE_ATTRIBUTES: Final = 10  # MessageAttributes per message (system attributes do not count)
# Payload of one SendMessageBatch. SQS raised it to 1 MiB in 2025; 256 KiB is still accepted everywhere.
MAX_BATCH_BYTES: Final = 256 * 1024
MAX_VISIBILITY_TIMEOUT_S: Final = 43_200
MAX_WAIT_TIME_S: Final = 20

# --- Defaults of the BUS_URL parameters.
DEFAULT_MAX_RECEIVE_COUNT: Final = 10
DEFAULT_VISIBILITY_TIMEOUT_S: Final = 30
DEFAULT_WAIT_TIME_S: Final = 20

# --- Queue attributes. Service queues keep messages 4 days (the SQS default); dead-letter queues 14 days,
# the maximum — on standard queues a redriven message keeps its original enqueue time, so a DLQ must retain
# longer than its source or old dead letters vanish early. Reply queues only hold answers someone is
# waiting for right now: the 60 s minimum.
QUEUE_RETENTION_S: Final = 4 * 24 * 3600
DLQ_RETENTION_S: Final = 14 * 24 * 3600
REPLY_RETENTION_S: Final = 60

# --- Reply queues are per process and SQS never deletes a queue by itself: their owner stamps this tag
# every REPLY_HEARTBEAT_S, and `python -m libs.bus.sqs sweep` deletes those not stamped for REPLY_STALE_S
# (left behind by a process that was killed before it could delete its own).
REPLY_HEARTBEAT_TAG: Final = "ho-reply-heartbeat"
REPLY_HEARTBEAT_S: Final = 300.0
REPLY_STALE_S: Final = 3 * REPLY_HEARTBEAT_S

# --- Consumer behaviour.
# The heartbeat extends every in-flight message this often, relative to the visibility timeout, so two
# consecutive extension calls may fail before a running handler's message reappears.
HEARTBEAT_FRACTION: Final = 1 / 3
# Delays shorter than this are waited out in the consumer instead of with DelaySeconds, and so are the
# remainders of longer ones (a message arriving earlier than that before its x-ho-deliver-at goes back to
# the queue with the remaining delay). DelaySeconds has whole seconds only, and a delayed message reaches a
# waiting long poll with some lag (up to a second on moto); a local sleep is exact. The price: a delayed
# message holds a handler slot for less than this long.
LOCAL_WAIT_S: Final = 2.0
# After a failed ReceiveMessage (SQS unreachable, throttled), retry with this backoff: doubling, capped.
POLL_BACKOFF_S: Final = 0.5
POLL_BACKOFF_CAP_S: Final = 10.0
# Listing or replaying dead letters receives them hidden for this long, then makes the ones it leaves visible
# again at once (ChangeMessageVisibility 0); if the process dies meanwhile they reappear after it.
DLQ_PEEK_VISIBILITY_S: Final = 60
# dead_letters() drains with this long-poll wait: a short poll (0) samples only some SQS servers and may
# answer "empty" while messages exist.
DRAIN_WAIT_S: Final = 1
# Batch calls of one kind to one queue running at once; submissions beyond that wait and are merged into
# the next batch (group commit: no added latency when idle, batches of up to 10 under load).
MAX_BATCH_CALLS_IN_FLIGHT: Final = 4
# A batch entry that failed on SQS's side (SenderFault false) is resubmitted this many times.
BATCH_ENTRY_RETRIES: Final = 3

# --- HTTP client. Every consumer holds a connection for its long poll, so the pool is generous; the read
# timeout must outlast the longest poll.
MAX_POOL_CONNECTIONS: Final = 64
CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_MARGIN_S: Final = 10.0
MAX_ATTEMPTS: Final = 4  # botocore "standard" retry mode: throttling, 5xx and connection errors

# --- Message attributes the transport adds to the bus's own headers.
H_BODY_ENCODING: Final = "x-ho-body-encoding"  # "base64" when the body is not text SQS accepts
H_PACKED: Final = "x-ho-headers"  # JSON of the bus headers, used when they would exceed 10 attributes
XRAY_HEADER: Final = "X-Amzn-Trace-Id"  # what the X-Ray propagator reads and writes
AWS_TRACE_ATTRIBUTE: Final = "AWSTraceHeader"  # the SQS system attribute X-Ray itself follows
DLQ_SOURCE_ATTRIBUTE: Final = "DeadLetterQueueSourceArn"
RECEIVE_COUNT_ATTRIBUTE: Final = "ApproximateReceiveCount"
SENT_TIMESTAMP_ATTRIBUTE: Final = "SentTimestamp"

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def physical_name(logical: str) -> str:
    """The SQS queue name of a logical bus queue name (`ho.router.dlq` → `ho-router-dlq`)."""
    name = logical.replace(".", "-")
    if not _QUEUE_NAME.fullmatch(name):
        raise ValueError(f"{logical!r} cannot be an SQS queue name ([A-Za-z0-9_-], at most 80 characters)")
    return name


@dataclass(frozen=True)
class SqsSettings:
    """What an `sqs://` BUS_URL says (see the module docstring)."""

    region: str | None = None
    endpoint_url: str | None = None
    namespace: str | None = None
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT_S
    wait_time: int = DEFAULT_WAIT_TIME_S
    create_queues: bool = True

    @classmethod
    def from_url(cls, url: str) -> SqsSettings:
        parts = urlsplit(url)
        if parts.scheme != "sqs":
            raise ValueError(f"not an sqs:// URL: {parts.scheme!r}")
        if parts.netloc or parts.path not in ("", "/"):
            raise ValueError("sqs:// takes only query parameters, e.g. sqs://?region=us-east-1")
        known = {f.name for f in fields(cls)}
        values: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in known:
                raise ValueError(f"unknown sqs:// parameter {key!r} (known: {', '.join(sorted(known))})")
            values[key] = value
        return cls(
            region=values.get("region") or None,
            endpoint_url=values.get("endpoint_url") or None,
            namespace=values.get("namespace") or None,
            max_receive_count=_int(values, "max_receive_count", DEFAULT_MAX_RECEIVE_COUNT, 1, 1000),
            visibility_timeout=_int(
                values, "visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S, 1, MAX_VISIBILITY_TIMEOUT_S
            ),
            wait_time=_int(values, "wait_time", DEFAULT_WAIT_TIME_S, 1, MAX_WAIT_TIME_S),
            create_queues=_bool(values, "create_queues", True),
        )

    @property
    def heartbeat_s(self) -> float:
        return self.visibility_timeout * HEARTBEAT_FRACTION

    @property
    def read_timeout_s(self) -> float:
        return self.wait_time + READ_TIMEOUT_MARGIN_S


def _int(values: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"sqs:// parameter {key}={raw!r} is not an integer") from exc
    if not low <= value <= high:
        raise ValueError(f"sqs:// parameter {key}={value} is outside {low}..{high}")
    return value


def _bool(values: dict[str, str], key: str, default: bool) -> bool:
    raw = values.get(key, "").lower()
    if raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"sqs:// parameter {key}={raw!r} is not a boolean")
