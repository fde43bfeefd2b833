"""Queue names, header keys and defaults of the bus, in one place.

Queue layout (every transport): one durable queue per consuming service and lane, `{ns}.{queue}` (`queue`:
the service's name for its default lane, `{service}.{lane}` for another; contracts.routing), and its
dead-letter queue, `{ns}.{queue}.dlq`. `ns` (namespace) lets test runs and environments share a broker.
"""

from __future__ import annotations

from libs.config import DEFAULT_BUS_PREFETCH, DEFAULT_SHUTDOWN_GRACE_S

# Transport headers the bus itself reads and writes (trace context headers come from OpenTelemetry).
H_DELIVERIES = "x-ho-deliveries"  # how many times this message was already handed to a handler
H_DELIVER_AT = "x-ho-deliver-at"  # epoch milliseconds before which the message must not be handled
H_TARGET = "x-ho-target"  # the one service a delayed/retried message is for
H_DEAD_REASON = "x-ho-dead-reason"  # why a message was dead-lettered
H_DEAD_AT = "x-ho-dead-at"  # epoch milliseconds when it was dead-lettered
H_REPLAYS = "x-ho-replays"  # how many times an operator replayed it from its dead-letter queue
H_REPLAY_ID = "x-ho-replay-id"  # the replay that sent it back (that replay never picks it up again)
H_ROUTE = "x-ho-route"  # the routing key the message was published with
H_REPLY_TO = "x-ho-reply-to"  # reply queue of a request (transports with native reply-to use theirs)
H_CORRELATION = "x-ho-correlation-id"
H_PRIORITY = "x-ho-priority"  # the message's priority (contracts.enums.Priority), which lane it goes to
# RabbitMQ quorum queues' own count of a message's redeliveries (a consumer crashed holding it): read as
# deliveries the handler never finished, and never carried over to a retry copy, which starts its own count.
H_BROKER_DELIVERIES = "x-delivery-count"
# A dead letter's reason is cut to this many characters: header values are bounded on every broker, and
# the first thousand characters of an error say what happened.
DEAD_REASON_MAX_CHARS = 1000

DEFAULT_NAMESPACE = "ho"
DEFAULT_PREFETCH = DEFAULT_BUS_PREFETCH  # BUS_PREFETCH's default: what a service's subscription takes

# Bounded redelivery of a message whose handler raised: at most MAX_DELIVERIES handler runs, the n-th retry
# delayed RETRY_BASE_S * 2**(n-1) (capped, with jitter), then the dead-letter queue with the last error.
MAX_DELIVERIES = 5
RETRY_BASE_S = 0.5
RETRY_CAP_S = 30.0

# Graceful shutdown waits this long for in-flight handlers before giving up on them (they are redelivered).
SHUTDOWN_GRACE_S = DEFAULT_SHUTDOWN_GRACE_S  # SHUTDOWN_GRACE_S's default (libs.config)

# Dead-letter queues are bounded: beyond this many messages the broker drops the oldest (RabbitMQ
# `x-max-length` with `x-overflow: drop-head`; the memory bus does the same). 100,000 dead letters means
# something is badly broken; keeping the newest ones keeps today's reasons visible. SQS bounds by age instead
# (14 days of retention, libs.bus.sqs_config.DLQ_RETENTION_S). Alert on the depth gauge long before this.
DEAD_LETTER_MAX_LENGTH = 100_000
# Listing dead letters (Bus.list_dead_letters): how many by default and at most per call.
DEAD_LETTER_LIST_DEFAULT = 50
DEAD_LETTER_LIST_MAX = 1000
# How often a DeadLetterDepth monitor reads every dead-letter queue's depth for the gauge.
DEAD_LETTER_DEPTH_INTERVAL_S = 30.0

# Delays up to this long are supported (at least 15 minutes are needed: a workflow's longest deadline,
# docs/architecture.md#deadlines).
MAX_DELAY_S = 24 * 3600.0


def queue_name(namespace: str, service: str) -> str:
    return f"{namespace}.{service}"


def dlq_name(namespace: str, service: str) -> str:
    return f"{namespace}.{service}.dlq"
