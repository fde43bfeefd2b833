"""Names and fixed tunables of the of-sender, in one place, each with the reason for its value.

Everything an operator may want to change lives in config.OfSenderSettings instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# PostgreSQL schema owned by the of-sender (no service reads another's tables: docs/architecture.md#services)
# and its migrations.
DB_SCHEMA: Final = "of_sender"
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Without ONLYFANS_API_URL the of-sender sends to the platform simulator the runner shares; the simulator
# accepts any bearer token, this one is sent.
SIMULATOR_TOKEN: Final = "simulator-token"

# Attempt rows (the durable record the send log is rebuilt from) matter for one window; they are kept a
# day for operations and trimmed once an hour, at most PURGE_BATCH rows per statement.
ATTEMPT_RETENTION_S: Final = 24 * 3600.0
PURGE_INTERVAL_S: Final = 3600.0
PURGE_BATCH: Final = 10_000

# A last check refused for less than this is re-checked by a re-published approval anyway; the margin
# keeps the re-check from landing a hair before the slot frees up (clock resolution, rounding).
RECHECK_SLACK_S: Final = 0.005

# An approval held by the flags (kill switch off, account paused) asks again this long later, plus up to
# HOLD_JITTER_S so that the held approvals of a campaign do not come back in lockstep. Short, so sending
# resumes within about a second of the switch; each round costs one record write and one publish per held
# delivery, which is what a longer period would save.
HOLD_RECHECK_S: Final = 1.0
HOLD_JITTER_S: Final = 0.25

# A handling whose compare-and-set on the delivery's record lost reads the record again and goes on; each
# loss means another handling moved the delivery, so more than a few in a row is a storm of copies, left
# to the bus's redelivery backoff (the handler raises) rather than spun on here.
MAX_RECORD_CONFLICTS: Final = 3

# Error texts from the platform are cut to this length before they are stored and reported.
MAX_ERROR_TEXT: Final = 300
