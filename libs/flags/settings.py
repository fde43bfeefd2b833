"""The flags' environment: the defaults a replica applies to flags never set in the store, and how it
follows the store. A service that evaluates flags extends FlagSettings (the gateway does).

HYBRID_ORCHESTRATOR_ENABLED=true     the kill switch's default (as originally named); false always wins:
                                     this replica applies "off" whatever the store holds (the stored flag
                                     keeps its value and still applies on the other replicas), so one
                                     process can be stopped from its environment alone
FLAGS_ROLLOUT_PERCENTAGE=100         the rollout percentage's default (0-100)
FLAGS_ALLOW_LIST=                    the allow list's default: user ids, comma-separated
FLAGS_KEY=ho:flags                   the Redis hash (and, + ":changed", the pub/sub channel)
FLAGS_REFRESH_S=1                    re-read the flags at least this often
FLAGS_PUBSUB=true                    also re-read at once when another replica announces a change
                                     (false for a Redis proxy without pub/sub: changes then land within
                                     FLAGS_REFRESH_S)

The store is Redis when REDIS_URL is set, else this process's memory (the embedded mode).
A flag set through the admin API overrides its environment default on every replica — except
HYBRID_ORCHESTRATOR_ENABLED=false, above. The paused accounts have no environment default.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from libs.config import CommonSettings
from libs.flags import constants as c
from libs.flags.model import Flags


class FlagSettings(CommonSettings):
    hybrid_orchestrator_enabled: bool = Field(
        default=True, description="false: this replica is off, whatever the stored flag"
    )
    flags_rollout_percentage: int = Field(default=100, ge=0, le=100, description="share of users let in")
    flags_allow_list: str = Field(default="", description="user ids let in whatever the percentage, comma-separated")
    flags_key: str = Field(default=c.DEFAULT_KEY, min_length=1, description="Redis hash of the flags")
    flags_refresh_s: float = Field(default=c.DEFAULT_REFRESH_S, gt=0, description="longest time between re-reads")
    flags_pubsub: bool = Field(default=True, description="re-read at once on a change announced by pub/sub")

    @field_validator("flags_allow_list")
    @classmethod
    def _valid_list(cls, value: str) -> str:
        Flags(allow_list=_split(value))  # refuse at start-up what the flags would refuse later
        return value

    def flag_defaults(self) -> Flags:
        """The flags this replica applies to whatever the store does not hold (or before it answers)."""
        return Flags(
            hybrid_orchestrator_enabled=self.hybrid_orchestrator_enabled,
            rollout_percentage=self.flags_rollout_percentage,
            allow_list=_split(self.flags_allow_list),
        )


def _split(spec: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in spec.split(",") if part.strip())
