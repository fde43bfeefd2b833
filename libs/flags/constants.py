"""Redis layout, flag names and tunables of the feature flags, in one place.

One Redis hash holds every flag a replica should apply, so one HGETALL reads a consistent set::

    {key}                 hash, default key ``ho:flags`` (FLAGS_KEY)
        <flag name>       the flag's value as JSON (only flags set through the admin API; an absent flag
                          takes this replica's environment default)
        @version          counter, +1 on every write (the version the admin API shows and checks)
        @updated_at       ISO 8601 UTC time of the last write
        @updated_by       user id of the admin who wrote last
    {key}:changed         pub/sub channel; every write publishes the new version on it

Metadata fields start with "@", which no flag name can, so they never collide with a flag.
"""

from __future__ import annotations

from typing import Final

DEFAULT_KEY: Final = "ho:flags"
CHANNEL_SUFFIX: Final = ":changed"
VERSION_FIELD: Final = "@version"
UPDATED_AT_FIELD: Final = "@updated_at"
UPDATED_BY_FIELD: Final = "@updated_by"

# --- The flags (their Redis field names; the HTTP API spells them in camelCase).
KILL_SWITCH: Final = "hybrid_orchestrator_enabled"
ROLLOUT_PERCENTAGE: Final = "rollout_percentage"
ALLOW_LIST: Final = "allow_list"
PAUSED_ACCOUNTS: Final = "paused_accounts"
FLAG_NAMES: Final = (KILL_SWITCH, ROLLOUT_PERCENTAGE, ALLOW_LIST, PAUSED_ACCOUNTS)

# A user's rollout bucket is sha256(f"{len(name)}:{name}:{user}") mod ROLLOUT_BUCKETS, with this name.
# Never change it: every user would land in a new bucket, and a 10 % rollout would swap its users.
ROLLOUT_FLAG: Final = "hybrid_orchestrator"
ROLLOUT_BUCKETS: Final = 100

# --- Bounds of the values (an allow list is for named testers and accounts, not a user table).
MAX_USER_ID_LENGTH: Final = 128
MAX_ALLOW_LIST: Final = 1000
MAX_UPDATED_BY_LENGTH: Final = 128
# Paused creator accounts are the few an operator stopped by hand while looking into them; the whole set
# travels in every read of the hash, so it stays small.
MAX_ACCOUNT_ID_LENGTH: Final = 128
MAX_PAUSED_ACCOUNTS: Final = 1000
# A pause or resume is a read, then a write at the version read (two admins pausing two accounts at once
# must both land). A replica makes its own pauses one at a time, so it races only the other replicas; after
# a lost race it waits up to PAUSE_RETRY_JITTER_S (random, so two replicas do not meet again in step) and
# after this many lost races it gives up with VersionConflict.
PAUSE_WRITE_ATTEMPTS: Final = 8
PAUSE_RETRY_JITTER_S: Final = 0.02

# --- Why FlagClient.held keeps work waiting (logged, and the services' reason for a hold).
HELD_DISABLED: Final = "disabled"
HELD_ACCOUNT_PAUSED: Final = "account_paused"

# --- Refresh. Every replica re-reads the hash at least this often (FLAGS_REFRESH_S), so a change lands
# everywhere within about this long even when a pub/sub notification is lost; with pub/sub it lands at once.
DEFAULT_REFRESH_S: Final = 1.0
# A flag read must not hold a request or the start-up for long when Redis is down: the last known flags
# (or the environment defaults) apply meanwhile.
REDIS_SOCKET_TIMEOUT_S: Final = 1.0
# The pub/sub listener reconnects with this backoff after losing its connection.
RESUBSCRIBE_INITIAL_S: Final = 0.1
RESUBSCRIBE_MAX_S: Final = 5.0
# An idle pub/sub connection is pinged this often, so a connection dropped without a FIN is replaced.
PUBSUB_HEALTH_CHECK_S: Final = 10.0
# stop() cancels the background tasks again every STOP_WAIT_S until they end (see FlagClient.stop).
STOP_WAIT_S: Final = 0.1
STOP_ATTEMPTS: Final = 50
