"""The dead-letter admin API's bodies (camelCase, like every gateway body): the listing, the replay request
and its answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator
from pydantic.json_schema import SkipJsonSchema

from libs.bus.dead_letters import DeadLetterInfo
from libs.bus.permissions import consuming_services
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

    # camelCase, unknown fields refused, and exactly one of id / all: true — in the document too, so that
    # what it allows is exactly what is accepted.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=lambda schema: _exact(schema))

    service: StrictStr = Field(
        description="the service whose dead-letter queue it is",
        json_schema_extra={"enum": list(consuming_services())},
    )
    id: StrictStr | SkipJsonSchema[None] = Field(
        default=None, min_length=1, max_length=200, description="the dead letter's id (from the listing)"
    )
    all: StrictBool | SkipJsonSchema[None] = Field(
        default=None, description="every dead letter of the service", json_schema_extra={"const": True}
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(key in data and data[key] is None for key in ("id", "all")):
            raise ValueError("id and all may be left out, not null")
        return data

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.all is False:
            raise ValueError('all can only be true (give "id" for one dead letter)')
        if (self.id is None) == (self.all is None):
            raise ValueError('give either "id" or "all": true')
        return self


def _exact(schema: dict[str, Any]) -> None:
    """Exactly one of id / all, and no `default: null` (null is not accepted: the document must not say it)."""
    schema["oneOf"] = [
        {"required": ["id"], "not": {"required": ["all"]}},
        {"required": ["all"], "not": {"required": ["id"]}},
    ]
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class ReplayData(ApiModel):
    service: str
    replayed: int = Field(ge=0, description="dead letters sent back to the service's queue")


class ReplayResponse(ApiModel):
    success: Literal[True] = True
    data: ReplayData
