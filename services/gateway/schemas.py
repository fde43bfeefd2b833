"""The HTTP API's request and response bodies: camelCase JSON (the original plan's names), validated by pydantic.

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

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
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
from contracts.ids import USER_ID_MAX_LENGTH, USER_ID_PATTERN
from contracts.messages import Intent, Recipient, WorkflowView
from services.gateway import constants as c

# pattern \S: documents that an id is trimmed first, so a whitespace-only one is as empty as "".
Id = Annotated[str, StringConstraints(min_length=1, max_length=c.MAX_ID_LENGTH, strip_whitespace=True, pattern=r"\S")]
# A user id (a token's sub, an admin's userId): never "*", the global scope of budgets (contracts.ids). Not
# trimmed: " alice" is not alice.
UserId = Annotated[str, StringConstraints(min_length=1, max_length=USER_ID_MAX_LENGTH, pattern=USER_ID_PATTERN)]
# A fan's or an account's id on the platform (constants.PLATFORM_ID_PATTERN says why it is strict).
PlatformId = Annotated[str, StringConstraints(min_length=1, max_length=c.MAX_ID_LENGTH, pattern=c.PLATFORM_ID_PATTERN)]
VarName = Annotated[
    str, StringConstraints(min_length=1, max_length=c.MAX_VAR_NAME_LENGTH, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
]
VarValue = Annotated[str, StringConstraints(max_length=c.MAX_VAR_VALUE_LENGTH)] | StrictInt | StrictFloat | StrictBool
# Money is a Decimal everywhere inside; on the wire it is a JSON number, as in the original plan's answers.
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


class RecipientBody(BaseModel):
    """One fan of a campaign, with what to say to that fan (`vars`, used with `data.personalize`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: PlatformId
    # additionalProperties: the document's patternProperties alone would let any other name through.
    vars: dict[VarName, VarValue] = Field(
        default_factory=dict, max_length=c.MAX_VARS, json_schema_extra={"additionalProperties": False}
    )

    def to_recipient(self) -> Recipient:
        values = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in self.vars.items()}
        return Recipient(id=self.id, vars=values)


def _free_form_json(schema: dict[str, Any]) -> None:
    """`data`'s schema: every value a JsonValue (storable.JSON_VALUE), every key without control characters."""
    schema.pop("patternProperties", None)
    schema["propertyNames"] = {"pattern": c.TEXT_PATTERN}
    schema["additionalProperties"] = {"$ref": "#/components/schemas/JsonValue"}


class CampaignRequest(BaseModel):
    """The body of POST /api/v2/campaigns/hybrid: the original plan's intent (the user comes from the token).
    Unknown fields are refused; sendToOnlyFans needs recipientId, recipientIds or recipients. A fan given
    more than once gets one message (at its first place; the vars of its last `recipients` entry)."""

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
                {"required": ["recipients"], "properties": {"recipients": {"minItems": 1}}},
            ]
        },
    )

    type: IntentType = Field(description="what to do")
    # Its strings are checked by storable.refuse_unstorable before the model; this states that rule.
    data: dict[str, Any] = Field(
        default_factory=dict,
        description=f"the intent's free-form input (at most {c.MAX_JSON_DEPTH} levels deep in the body)",
        json_schema_extra=_free_form_json,
    )
    platforms: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=c.MAX_PLATFORMS
    )
    content_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    send_to_onlyfans: StrictBool = Field(default=False, alias="sendToOnlyFans")
    recipient_id: PlatformId | None = None
    recipient_ids: list[PlatformId] = Field(
        default_factory=list, description="the fans (at most CAMPAIGN_MAX_RECIPIENTS, with `recipients`)"
    )
    recipients: list[RecipientBody] = Field(
        default_factory=list, description="the fans with their personalisation (`data.personalize: true`)"
    )
    callback_url: Annotated[str, StringConstraints(max_length=c.MAX_CALLBACK_URL_LENGTH)] | None = Field(
        default=None,
        description="https URL POSTed the signed summary when the workflow ends (embedded mode: also http to "
        "localhost)",
        json_schema_extra={"pattern": c.CALLBACK_URL_PATTERN},
    )
    requires_multi_platform: StrictBool = False
    force_provider: Provider | None = Field(default=None, description="skip provider selection")
    priority: Priority = Priority.MEDIUM
    account_id: PlatformId | None = Field(
        default=None,
        description="the creator's platform account the messages are sent from: the caller's own id (the "
        "default), an account in the token's `accounts` claim, or any account for an admin",
    )

    @model_validator(mode="after")
    def _recipient_when_sending(self) -> Self:
        if self.send_to_onlyfans and not (self.recipient_id or self.recipient_ids or self.recipients):
            raise ValueError("sendToOnlyFans needs recipientId, recipientIds or recipients")
        return self

    @model_validator(mode="after")
    def _data_bounded(self) -> Self:
        # `data` travels with every generation request (and an SQS message holds 256 KiB at most).
        if len(orjson.dumps(self.data, default=str)) > c.MAX_DATA_BYTES:
            raise ValueError(f"data must be at most {c.MAX_DATA_BYTES} bytes as JSON")
        return self

    def recipient_count(self) -> int:
        """How many fans, each counted once (a fan given twice gets one message: contracts' recipients_of)."""
        given = ([self.recipient_id] if self.recipient_id else []) + self.recipient_ids
        return len({*given, *(r.id for r in self.recipients)})

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

    def to_recipients(self) -> list[Recipient]:
        return [r.to_recipient() for r in self.recipients]


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


class WaitMetadata(ApiModel):
    total_retries: int = Field(
        ge=0, description="retries of the workflow's provider calls and deliveries (the status's retryAttempts summed)"
    )


class CompletedResponse(ApiModel):
    """?wait=true, the workflow completed (the original plan's example answer)."""

    success: Literal[True] = True
    data: WaitResultData
    metrics: WaitMetrics
    metadata: WaitMetadata

    @classmethod
    def of(cls, view: WorkflowView) -> CompletedResponse:
        retries = view.retry_attempts
        total = retries.azure + retries.openai + retries.onlyfans
        return cls(data=wait_result(view), metrics=wait_metrics(view), metadata=WaitMetadata(total_retries=total))


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
    seq: int | None = Field(default=None, description="position in the campaign (the page cursor)")
    text: str | None = Field(default=None, description="a personalized campaign: this fan's own text")


class ProgressBody(ApiModel):
    """Where a workflow's deliveries stand."""

    total: int
    generated: int = Field(description="deliveries whose text exists")
    scheduled: int = Field(description="deliveries that got a platform slot")
    sent: int
    failed: int
    cancelled: int
    next_slot_at: AwareDatetime | None = Field(description="the earliest slot of an unfinished delivery")
    estimated_completion_at: AwareDatetime | None = Field(
        description="the last reserved slot once every delivery has one, else the pace so far carried forward"
    )


class WorkflowStatusData(ApiModel):
    """A workflow's whole state, as the router persisted it (docs/architecture.md#workflow-states)."""

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
    deliveries: list[DeliveryBody] = Field(
        description=f"listed for a workflow of at most 100 deliveries; page through any with {c.PATH_DELIVERIES}"
    )
    trace_id: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    deadline_at: AwareDatetime
    completed_at: AwareDatetime | None
    progress: ProgressBody | None = Field(default=None, description="a workflow with deliveries")
    account_id: str | None = Field(default=None, description="the account it sends from (null: userId)")
    retry_of: uuid.UUID | None = Field(default=None, description="the failed workflow this one retries")
    routing_policy_id: uuid.UUID | None = Field(
        default=None, description="the routing policy (an applied cost recommendation) its provider was chosen by"
    )
    experiment_id: uuid.UUID | None = Field(default=None, description="the experiment it runs an arm of")
    arm: str | None = Field(default=None, description="its experiment arm")

    @classmethod
    def of(cls, view: WorkflowView) -> WorkflowStatusData:
        return cls.model_validate(view.model_dump())


class StatusResponse(ApiModel):
    success: Literal[True] = True
    data: WorkflowStatusData


class CancelData(ApiModel):
    workflow: WorkflowStatusData = Field(description="the workflow as the cancel left it (status cancelled)")
    sent_before: int = Field(description="deliveries sent before the cancel took effect")


class CancelResponse(ApiModel):
    success: Literal[True] = True
    data: CancelData


class RetryData(AcceptedData):
    retry_of: uuid.UUID = Field(description="the failed workflow this new one retries")


class RetryResponse(ApiModel):
    success: Literal[True] = True
    data: RetryData


class DeliveriesPage(ApiModel):
    workflow_id: uuid.UUID
    deliveries: list[DeliveryBody]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page; null: this was the last")


class DeliveriesResponse(ApiModel):
    success: Literal[True] = True
    data: DeliveriesPage


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
