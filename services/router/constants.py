"""Names and fixed tunables of the router, in one place, each with the reason for its value.

Everything an operator may want to change lives in config.RouterSettings instead.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Final

from contracts.enums import ErrorType

SERVICE_NAME: Final = "router"

# PostgreSQL schema owned by the router (no service reads another's tables: docs/architecture.md#services) and
# its migrations.
DB_SCHEMA: Final = "router"
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Failures that never deserve another attempt, whatever the worker's `retryable` flag says: the request
# itself is wrong, so another provider would refuse it too.
NEVER_RETRY: Final = frozenset({ErrorType.INVALID_REQUEST, ErrorType.COMPLIANCE_VIOLATION})

# Failures that count against a provider's circuit breaker: the provider is slow, overloaded or broken.
# A refused request (400, compliance) says nothing about the provider's health and is not counted.
BREAKER_FAILURES: Final = frozenset(
    {
        ErrorType.AZURE_TIMEOUT,
        ErrorType.OPENAI_TIMEOUT,
        ErrorType.PROVIDER_UNAVAILABLE,
        ErrorType.RATE_LIMIT_EXCEEDED,
    }
)

# An attempt that would get less time than this before the workflow's deadline is not worth starting:
# the workflow fails with the reason instead of sending a request doomed to time out.
MIN_ATTEMPT_S: Final = 1.0

# A deadline message (the sweep's own, handled after the deadline was moved meanwhile) this much earlier
# than the deadline (clock skew between replicas) changes nothing: the sweep handles the workflow when due.
DEADLINE_TOLERANCE_S: Final = 0.5
# A workflow whose work is held (the kill switch is off, or its account paused) is not failed at its
# deadline: the deadline moves this far on, again and again, until the work may go on.
DEADLINE_HOLD_S: Final = 30.0

# The longest deadline a workflow may ask for: retries and delivery slots travel as delayed bus messages,
# guaranteed up to 15 minutes on every transport (SQS's DelaySeconds limit), and none may outlive it.
MAX_DEADLINE_S: Final = 900.0

# The deadline sweep (Router.fail_overdue) handles at most this many overdue workflows per pass; a full
# batch is followed at once by the next pass.
DEADLINE_SWEEP_BATCH: Final = 200
# Namespace of the sweep's deadline message ids (uuid5 of workflow id and deadline).
DEADLINE_NAMESPACE: Final = uuid.UUID("3a1c9e52-7d4b-5f60-8e21-94b7c0d5a6f3")

# A status query with wait_s (the gateway's ?wait=true) is answered when this replica finishes the workflow;
# when another replica finishes it, a re-read of the store every RECHECK finds it. MAX bounds the hold.
STATUS_WAIT_RECHECK_S: Final = 0.25
STATUS_WAIT_MAX_S: Final = 30.0

# How often a handler reloads and retries when another handler moved the same workflow between its read
# and its write (optimistic concurrency); after that the bus redelivers the message later.
MAX_CONFLICT_RETRIES: Final = 5

# A campaign's shared text is requested for delivery in chunks of this many (one workflow.fanout message
# each): no handler publishes, or keeps in its outbox, more than this at once.
FANOUT_CHUNK: Final = 200
# Fan-out pacing (fair share between accounts at the delivery stage): a chunk is requested only while fewer
# than FANOUT_CHUNK + finished (at most FANOUT_AHEAD) of the campaign's deliveries are unfinished — one chunk
# at first, more as the campaign shows it drains them; otherwise its workflow.fanout comes back after
# FANOUT_RECHECK_S, growing by FANOUT_RECHECK_GROWTH each time up to FANOUT_RECHECK_MAX_S (slowly: a chunk
# that goes late leaves the pipeline idle; one paused for long is looked at every few seconds). A 10,000-fan
# campaign so keeps at most FANOUT_AHEAD deliveries between the router and the platform — in the
# rate-limiter's lane, in the of-sender's delayed slots — and another account's message waits behind at most
# these (docs/architecture.md#fair-share-between-accounts).
FANOUT_AHEAD: Final = 3 * FANOUT_CHUNK
FANOUT_RECHECK_S: Final = 0.1
FANOUT_RECHECK_GROWTH: Final = 1.25
FANOUT_RECHECK_MAX_S: Final = 5.0
# Namespaces of derived message ids: a fan-out chunk (workflow, first seq) and a settling transition
# (workflow, status it settles from) — the same whoever emits them, so duplicates de-duplicate.
FANOUT_NAMESPACE: Final = uuid.UUID("0b6f2d8a-3e4c-5a71-9c0d-7e5f4a2b1c39")
SETTLE_NAMESPACE: Final = uuid.UUID("5c2e9a41-8b7d-5f03-a6e1-2d4c8f0b9e17")
# A failed workflow's retry: uuid5(this, failed workflow id) — asking twice answers the same new workflow.
RETRY_NAMESPACE: Final = uuid.UUID("7e3b1f90-4a2c-5d86-b0e7-1c9a5f3d2e48")
# Delivery reports written in one commit at most (report_batch.py); the router's prefetch bounds how many wait.
REPORT_BATCH_MAX: Final = 64
# A retry reads the failed campaign's deliveries in pages of this many.
RETRY_PAGE: Final = 1000
# The status view lists a workflow's deliveries when it has at most this many (the original plan's shape); a larger
# campaign's status carries its progress, and delivery.list.query pages through the deliveries.
STATUS_DELIVERIES_LISTED: Final = 100

# Workflow ids this replica saw reach a terminal state: later timers and late results for them are dropped
# without a database read. Terminal is forever, so the cache is never stale; it only bounds memory.
TERMINAL_CACHE_SIZE: Final = 50_000

# Workflows this replica wrote last, as it wrote them: a generation result they wait for is decided on that
# copy and saved under the version check without reading the row first (one round trip instead of two). A
# copy gone stale (another replica wrote since) or a message handled before makes the save write nothing,
# and the handler reads the database as usual. Only workflows in flight are kept (at 60 workflows/s and a
# few seconds each, a few hundred); the size bounds memory when others finish them (a copy is a few KiB).
WRITTEN_CACHE_SIZE: Final = 2_000

# How often the processed-messages table is trimmed, and how many rows one trim deletes at most (short
# transactions; the next run continues).
PURGE_INTERVAL_S: Final = 3600.0
PURGE_BATCH: Final = 10_000
