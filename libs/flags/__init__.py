"""Feature flags shared by every replica: the kill switch, a per-user percentage rollout, an allow list and
the paused creator accounts.

    client = open_flag_client(settings)          # settings: a FlagSettings (env defaults, FLAGS_*)
    await client.start()
    if not client.admits(user_id): ...           # kill switch off, or the user outside the rollout
    if client.held(account_id): ...              # kill switch off or the account paused: hold the send
    await client.update(FlagUpdate(rollout_percentage=25), updated_by="admin-1")

The flags live in one Redis hash (store + pub/sub: redis_store.py) or, without REDIS_URL, in this process
(store.py); each replica caches them and re-reads them on every announced change and every FLAGS_REFRESH_S
(client.py). model.py holds the flags and their evaluation; it does no I/O.
"""

from libs.flags.client import FlagClient, open_flag_client
from libs.flags.errors import FlagsError, FlagsInvalid, FlagsUnavailable, PausedLimit, VersionConflict
from libs.flags.model import (
    AccountId,
    AllowList,
    Flags,
    FlagState,
    FlagUpdate,
    PausedAccounts,
    Percentage,
    UserId,
    bucket,
    in_rollout,
)
from libs.flags.redis_store import RedisFlagStore
from libs.flags.settings import FlagSettings
from libs.flags.store import FlagStore, MemoryFlagStore

__all__ = [
    "AccountId",
    "AllowList",
    "FlagClient",
    "FlagSettings",
    "FlagState",
    "FlagStore",
    "FlagUpdate",
    "Flags",
    "FlagsError",
    "FlagsInvalid",
    "FlagsUnavailable",
    "MemoryFlagStore",
    "PausedAccounts",
    "PausedLimit",
    "Percentage",
    "RedisFlagStore",
    "UserId",
    "VersionConflict",
    "bucket",
    "in_rollout",
    "open_flag_client",
]
