"""The feature-flag admin API's bodies (camelCase, like every gateway body): what PUT takes and both answer,
and the answer of an account's pause or resume.

The flags' own rules (ranges, list sizes) come from libs.flags, so the API cannot accept a value the
store would refuse.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator
from pydantic.alias_generators import to_camel

from libs.flags import AllowList, FlagState, FlagUpdate, Percentage
from services.gateway.schemas import ApiModel


class FeatureFlagsUpdate(BaseModel):
    """PUT /api/admin/feature-flags: the flags given change, the others keep their value."""

    # camelCase only, unknown fields refused: a misspelt "hybridOrchestratorEnable" must not be a no-op
    # that the admin believes switched the orchestrator off.
    # json_schema_extra: _changes_something's rule (at least one flag, not null) in the document too.
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                for name in ("hybridOrchestratorEnabled", "rolloutPercentage", "allowList")
            ]
        },
    )

    hybrid_orchestrator_enabled: StrictBool | None = Field(
        default=None, description="the kill switch: false refuses every new workflow (503 disabled)"
    )
    rollout_percentage: Percentage | None = Field(
        default=None, description="0-100: the share of users let in, by a stable hash of their id"
    )
    allow_list: AllowList | None = Field(default=None, description="user ids let in whatever the percentage")
    expected_version: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None, description="write only if the flags are still at this version (else 409 version_conflict)"
    )

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.hybrid_orchestrator_enabled is None and self.rollout_percentage is None and self.allow_list is None:
            raise ValueError("give at least one of hybridOrchestratorEnabled, rolloutPercentage, allowList")
        return self

    def to_update(self) -> FlagUpdate:
        return FlagUpdate(
            hybrid_orchestrator_enabled=self.hybrid_orchestrator_enabled,
            rollout_percentage=self.rollout_percentage,
            allow_list=self.allow_list,
        )


class FeatureFlagsData(ApiModel):
    hybrid_orchestrator_enabled: bool = Field(description="the kill switch")
    rollout_percentage: int = Field(ge=0, le=100, description="share of users let in")
    allow_list: list[str] = Field(description="user ids let in whatever the percentage (sorted)")
    paused_accounts: list[str] = Field(
        description="creator accounts paused (PUT /api/admin/accounts/{accountId}/pause): nothing is sent from "
        "them until they are resumed (sorted)"
    )
    version: int = Field(ge=0, description="+1 on every change; 0: never changed (environment defaults)")
    updated_at: AwareDatetime | None = Field(description="when the flags last changed")
    updated_by: str | None = Field(description="the admin who changed them last")
    store: Literal["redis", "memory"] = Field(
        description="redis: shared by every replica; memory: this process only (embedded mode without REDIS_URL)"
    )

    @classmethod
    def of(cls, state: FlagState, store: str) -> FeatureFlagsData:
        flags = state.flags
        return cls.model_validate(
            {
                "hybrid_orchestrator_enabled": flags.hybrid_orchestrator_enabled,
                "rollout_percentage": flags.rollout_percentage,
                "allow_list": list(flags.allow_list),
                "paused_accounts": list(flags.paused_accounts),
                "version": state.version,
                "updated_at": state.updated_at,
                "updated_by": state.updated_by,
                "store": store,
            }
        )


class FeatureFlagsResponse(ApiModel):
    success: Literal[True] = True
    data: FeatureFlagsData


class AccountPauseData(ApiModel):
    account_id: str = Field(description="the creator account")
    paused: bool = Field(description="true: its deliveries are held (none is sent) until it is resumed")
    version: int = Field(ge=0, description="the flags' version after the change (unchanged if it already was so)")
    updated_at: AwareDatetime | None = Field(description="when the flags last changed")
    updated_by: str | None = Field(description="the admin who changed them last")

    @classmethod
    def of(cls, account_id: str, state: FlagState) -> AccountPauseData:
        return cls.model_validate(
            {
                "account_id": account_id,
                "paused": state.flags.is_paused(account_id),
                "version": state.version,
                "updated_at": state.updated_at,
                "updated_by": state.updated_by,
            }
        )


class AccountPauseResponse(ApiModel):
    success: Literal[True] = True
    data: AccountPauseData
