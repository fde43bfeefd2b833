"""The dead-letter admin API's bodies (camelCase, like every gateway body): the listing, the replay request
and its answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator
from pydantic.alias_generators import to_camel

from libs.bus.dead_letters import DeadLetterInfo
from services.gateway.schemas import ApiModel


class DeadLetterBody(ApiModel):
    id: str = Field(description="the message id (envelope id; `sha256:…` for bytes that are no envelope)")
    type: str | None = Field(description="the message type (null: not an envelope)")
    version: int | None = Field(description="the message type's version")
    reason: str = Field(description="why it was dead-lettered (the x-ho-dead-reason header)")
    dead_lettered_at: AwareDatetime | None = Field(description="when (null: by a release that did not stamp it)")
    age_s: float | None = Field(description="seconds since then")
    workflow_id: str | None = Field(description="the workflow it belongs to, if any")
    replays: int = Field(ge=0, description="times it was already replayed (a replay that failed again)")
    preview: Any = Field(
        description="the payload with message text, variables, results and secret-like fields as "
        '"[redacted]"; ids, types, states and counts kept'
    )

    @classmethod
    def of(cls, info: DeadLetterInfo, now: datetime) -> DeadLetterBody:
        age = info.age_s(now)
        return cls.model_validate(
            {
                "id": info.id,
                "type": info.type,
                "version": info.version,
                "reason": info.reason,
                "dead_lettered_at": info.dead_lettered_at,
                "age_s": round(age, 3) if age is not None else None,
                "workflow_id": info.workflow_id,
                "replays": info.replays,
                "preview": info.preview,
            }
        )


class DeadLettersData(ApiModel):
    service: str
    depth: int = Field(ge=0, description="messages in the service's dead-letter queue (approximate on SQS)")
    dead_letters: list[DeadLetterBody] = Field(description="the first `limit`, oldest first (SQS: in no order)")


class DeadLettersResponse(ApiModel):
    success: Literal[True] = True
    data: DeadLettersData


class DeadLetterReplayRequest(BaseModel):
    """POST /api/admin/dead-letters/replay: one dead letter by id, or all of a service's."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        extra="forbid",
        frozen=True,
        json_schema_extra={"oneOf": [{"required": ["id"]}, {"required": ["all"]}]},
    )

    service: StrictStr = Field(description="the service whose dead-letter queue it is")
    id: StrictStr | None = Field(default=None, min_length=1, max_length=200, description="the dead letter's id")
    all: StrictBool | None = Field(default=None, description="true: every dead letter of the service")

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.id is None) == (self.all is not True):
            raise ValueError('give either "id" or "all": true')
        return self


class ReplayData(ApiModel):
    service: str
    replayed: int = Field(ge=0, description="dead letters sent back to the service's queue")


class ReplayResponse(ApiModel):
    success: Literal[True] = True
    data: ReplayData
