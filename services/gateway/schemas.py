"""The HTTP API's request and response bodies: camelCase JSON (the seed's names), validated by pydantic.

These models are the API's single source of truth: handlers build every JSON answer from them
(`dump`), and openapi.py derives the OpenAPI document from them, so the document says what the code does.
They are deliberately separate from contracts/ (the bus's snake_case messages): the bus may add fields
without changing the public API, and the API may rename for clients without a new message version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from contracts.enums import (
    DeliveryState,
    ErrorType,
    IntentType,
    Priority,
    Provider,
    ProviderState,
    RateLimiterState,
    WorkflowStatus,
)
from contracts.messages import Intent, WorkflowView
from services.gateway import constants as c

# pattern \S: documents that an id is trimmed first, so a whitespace-only one is as empty as "".
Id = Annotated[str, StringConstraints(min_length=1, max_length=c.MAX_ID_LENGTH, strip_whitespace=True, pattern=r"\S")]
# Money is a Decimal everywhere inside; on the wire it is a JSON number, as in the seed's answers.
# float() of a Decimal with up to 15 significant digits prints back the same digits, which covers costs.
Money = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class ApiModel(BaseModel):
    """camelCase on the wire; built from snake_case names in code."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    def dump(self, *, exclude_none: bool = False) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=exclude_none)


# --- request -------------------------------------------------------------------------------------------


class CampaignRequest(BaseModel):
    """The body of POST /api/v2/campaigns/hybrid: the seed's intent (the user comes from the token).
    Unknown fields are refused; sendToOnlyFans needs recipientId or recipientIds."""

    # Only camelCase names are accepted and anything unknown is an error naming the field: a typo such as
    # "sendToOnlyfans" must not silently become "don't send".
    # json_schema_extra: _recipient_when_sending's rule, in the document too.
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "anyOf": [
                {"properties": {"sendToOnlyFans": {"const": False}}},
                {"required": ["recipientId"], "properties": {"recipientId": {"type": "string"}}},
                {"required": ["recipientIds"], "properties": {"recipientIds": {"minItems": 1}}},
            ]
        },
    )

    type: IntentType = Field(description="what to do")
    data: dict[str, Any] = Field(default_factory=dict, description="the intent's free-form input")
    platforms: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=c.MAX_PLATFORMS
    )
    content_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    send_to_onlyfans: StrictBool = Field(default=False, alias="sendToOnlyFans")
    recipient_id: Id | None = None
    recipient_ids: list[Id] = Field(default_factory=list, max_length=c.MAX_RECIPIENTS)
    requires_multi_platform: StrictBool = False
    force_provider: Provider | None = Field(default=None, description="skip provider selection")
    priority: Priority = Priority.MEDIUM

    @model_validator(mode="after")
    def _recipient_when_sending(self) -> Self:
        if self.send_to_onlyfans and not (self.recipient_id or self.recipient_ids):
            raise ValueError("sendToOnlyFans needs recipientId or recipientIds")
        return self

    def to_intent(self) -> Intent:
        return Intent(
            type=self.type,
            data=self.data,
            platforms=self.platforms,
            content_type=self.content_type,
            send_to_onlyfans=self.send_to_onlyfans,
            recipient_id=self.recipient_id,
            recipient_ids=self.recipient_ids,
            requires_multi_platform=self.requires_multi_platform,
            force_provider=self.force_provider,
            priority=self.priority,
        )


# --- errors --------------------------------------------------------------------------------------------


class FieldError(ApiModel):
    field: str = Field(description="dotted path in the body or the parameter's name")
    message: str


class ErrorInfoBody(ApiModel):
    code: str = Field(description="machine-readable: validation_error, token_expired, azure_timeout, ...")
    message: str
    details: list[FieldError] | None = None
    retryable: bool | None = None
    retry_after: float | None = Field(default=None, description="seconds")


class ErrorResponse(ApiModel):
    """Every non-2xx answer. A failed ?wait=true workflow also carries its `data` and `metrics`."""

    success: Literal[False] = False
    error: ErrorInfoBody
    data: WaitResultData | None = None
    metrics: WaitMetrics | None = None

    def dump(self, *, exclude_none: bool = True) -> dict[str, Any]:
        """Absent rather than null: the error's optional fields, and data/metrics when there are none."""
        body: dict[str, Any] = {"success": False, "error": self.error.dump(exclude_none=True)}
        if self.data is not None:
            body["data"] = self.data.dump()
        if self.metrics is not None:
            body["metrics"] = self.metrics.dump()
        return body


# --- POST answers --------------------------------------------------------------------------------------


class AcceptedData(ApiModel):
    workflow_id: uuid.UUID
    status: WorkflowStatus = Field(
        description='"accepted", or with ?wait=true the status the workflow had when the wait ran out'
    )
    trace_id: str | None = Field(description="OpenTelemetry trace id of the workflow (32 hex digits)")


class AcceptedResponse(ApiModel):
    success: Literal[True] = True
    data: AcceptedData


class WaitResultData(ApiModel):
    workflow_id: uuid.UUID
    content: str | None
    provider: Provider | None
    status: WorkflowStatus


class CostMetrics(ApiModel):
    tokens: int = Field(ge=0, description="total tokens billed")
    cost: Money | None = Field(description="USD")


class WaitMetrics(ApiModel):
    duration: float = Field(ge=0, description="milliseconds from acceptance to the end of the workflow")
    cost: CostMetrics


class CompletedResponse(ApiModel):
    """?wait=true, the workflow completed (the seed's example answer)."""

    success: Literal[True] = True
    data: WaitResultData
    metrics: WaitMetrics

    @classmethod
    def of(cls, view: WorkflowView) -> CompletedResponse:
        return cls(data=wait_result(view), metrics=wait_metrics(view))


def wait_result(view: WorkflowView) -> WaitResultData:
    return WaitResultData(
        workflow_id=view.workflow_id, content=view.result, provider=view.current_provider, status=view.status
    )


def wait_metrics(view: WorkflowView) -> WaitMetrics:
    end = view.completed_at or view.updated_at
    duration_ms = max(0.0, (end - view.created_at).total_seconds() * 1000)
    tokens = view.usage.total_tokens if view.usage else 0
    return WaitMetrics(duration=round(duration_ms, 1), cost=CostMetrics(tokens=tokens, cost=view.cost_usd))


# --- GET status ----------------------------------------------------------------------------------------
# Field names match contracts.messages.WorkflowView's, so `model_validate(view.model_dump())` converts.


class ProviderStatesBody(ApiModel):
    azure: ProviderState
    openai: ProviderState
    rate_limiter: RateLimiterState
    onlyfans: DeliveryState = Field(alias="onlyFans")


class RetryAttemptsBody(ApiModel):
    azure: int
    openai: int
    onlyfans: int = Field(alias="onlyFans")


class FallbackEntryBody(ApiModel):
    from_provider: Provider = Field(alias="from")
    to: str = Field(description='a provider, or "queue" for a delayed retry of the same one')
    reason: str
    timestamp: AwareDatetime


class UsageBody(ApiModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool = Field(description="true when the provider gave no usage and it was counted locally")


class WorkflowErrorBody(ApiModel):
    type: ErrorType
    message: str
    retryable: bool
    retry_after_s: float | None = Field(alias="retryAfter", description="seconds")
    status_code: int | None = Field(description="the provider's HTTP status, when there was one")


class DeliveryBody(ApiModel):
    delivery_id: uuid.UUID
    recipient_id: str
    status: DeliveryState
    scheduled_for: AwareDatetime | None
    sent_at: AwareDatetime | None
    platform_message_id: str | None
    error: WorkflowErrorBody | None


class WorkflowStatusData(ApiModel):
    """A workflow's whole state, as the router persisted it (DESIGN §5)."""

    workflow_id: uuid.UUID
    user_id: str
    status: WorkflowStatus
    intent_type: IntentType
    priority: Priority
    current_provider: Provider | None
    provider_states: ProviderStatesBody
    fallback_history: list[FallbackEntryBody]
    retry_attempts: RetryAttemptsBody
    result: str | None = Field(description="the generated text")
    model: str | None
    usage: UsageBody | None
    cost_usd: Money | None = Field(alias="cost", description="USD")
    error: WorkflowErrorBody | None
    deliveries: list[DeliveryBody]
    trace_id: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    deadline_at: AwareDatetime
    completed_at: AwareDatetime | None

    @classmethod
    def of(cls, view: WorkflowView) -> WorkflowStatusData:
        return cls.model_validate(view.model_dump())


class StatusResponse(ApiModel):
    success: Literal[True] = True
    data: WorkflowStatusData


# --- health --------------------------------------------------------------------------------------------


class CheckResult(ApiModel):
    status: Literal["ok", "failed"]
    critical: bool = Field(description="a failing critical check makes the whole system unhealthy")
    error: str | None = None
    latency_ms: float
    details: dict[str, str] | None = Field(default=None, description="a remote service's own checks")


class HealthData(ApiModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, CheckResult]
    timestamp: datetime


class HealthResponse(ApiModel):
    success: bool = Field(description="false when unhealthy")
    data: HealthData


ErrorResponse.model_rebuild()
