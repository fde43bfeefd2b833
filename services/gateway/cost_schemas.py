"""The cost API's request and response bodies: camelCase models derived from the contract classes the
gateway and the cost-tracker exchange (contracts/costs.py declares every field once; derive.py says how).

HTTP names differ from the contract's where the original plan has its own: a threshold's `type` and
`threshold`, an alert's `threshold`, `currentValue` and `timestamp`, a range's `from` and `to`. Amounts are
Decimal inside and JSON numbers with the same digits on the wire (schemas.Money); an amount in a request is
a positive number or decimal string, documented as such (Amount).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from contracts import costs as cc
from contracts import experiments as ex
from services.gateway.constants import CALLBACK_URL_PATTERN
from services.gateway.derive import derived
from services.gateway.schemas import ApiModel, Money

# Money in a request: a positive JSON number (or a decimal string), read exactly (0.1 is one tenth).
# Pydantic documents a Decimal as any string; the document says what is accepted instead: a positive
# amount with at most 10 digits before the point and 10 after (max_digits=20, decimal_places=10).
AMOUNT_MAX: Final = 10**10
AMOUNT_STEP: Final = 1e-10
AMOUNT_PATTERN: Final = r"^0*([1-9]\d{0,9}(\.\d{0,10}0*)?|\.\d{0,9}[1-9]0*)$"
Amount = Annotated[
    Money,
    Field(gt=0, allow_inf_nan=False, max_digits=20, decimal_places=10),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": AMOUNT_MAX, "multipleOf": AMOUNT_STEP},
                {"type": "string", "pattern": AMOUNT_PATTERN},
            ]
        },
        mode="validation",
    ),
]

# --- requests ------------------------------------------------------------------------------------------


class CostRequest(BaseModel):
    """Request bodies: camelCase only, unknown fields refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=False, validate_by_alias=True, extra="forbid", frozen=True
    )


# A budget (action downgrade or block) is on every provider's spend over a period: the contract's rule.
_BUDGET: JsonDict = {"required": ["action"], "properties": {"action": {"enum": ["downgrade", "block"]}}}
_PER_REQUEST: JsonDict = {"required": ["type"], "properties": {"type": {"const": "per_request"}}}


class _GlobalHasNoUser(CostRequest):
    # The contract's rules, in the document too: a global threshold has no user id; a per-request threshold,
    # or one on a provider's spend, has no action.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "not": {
                        "required": ["global", "userId"],
                        "properties": {"global": {"const": True}, "userId": {"type": "string"}},
                    }
                },
                {
                    "not": {
                        **_BUDGET,
                        "anyOf": [
                            _PER_REQUEST,
                            {"required": ["provider"], "properties": {"provider": {"type": "string"}}},
                        ],
                    }
                },
            ]
        }
    )


class _PerRequestHasNoAction(CostRequest):
    model_config = ConfigDict(json_schema_extra={"not": {"allOf": [_BUDGET, _PER_REQUEST]}})


def _webhook_url_pattern(schema: JsonDict) -> None:
    properties = schema["properties"]
    assert isinstance(properties, dict)
    webhook = properties["webhookUrl"]
    assert isinstance(webhook, dict) and isinstance(webhook["anyOf"], list) and isinstance(webhook["anyOf"][0], dict)
    webhook["anyOf"][0]["pattern"] = CALLBACK_URL_PATTERN


class _WebhookUrlDocumented(CostRequest):
    # The gateway holds a user's webhook URL to a workflow's callbackUrl rules (costs.py); the document says so.
    model_config = ConfigDict(json_schema_extra=_webhook_url_pattern)


_THRESHOLD_NAMES = {"period": "type", "limit_usd": "threshold"}
ThresholdCreateRequest = derived(
    cc.ThresholdCreate, "ThresholdCreateRequest", base=_GlobalHasNoUser, money=Amount,
    aliases={**_THRESHOLD_NAMES, "is_global": "global"},
)  # fmt: skip
ThresholdUpdateRequest = derived(
    cc.ThresholdUpdate, "ThresholdUpdateRequest", base=_PerRequestHasNoAction, money=Amount, aliases=_THRESHOLD_NAMES
)
AlertCreateRequest = derived(
    cc.AlertCreate, "AlertCreateRequest", base=CostRequest, money=Amount, aliases=_THRESHOLD_NAMES
)
AlertUpdateRequest = derived(cc.AlertUpdate, "AlertUpdateRequest", base=CostRequest)
AlertDestinationRequest = derived(cc.AlertDestinationUpdate, "AlertDestinationRequest", base=_WebhookUrlDocumented)
PolicyApplyRequest = derived(cc.PolicyApply, "PolicyApplyRequest", base=CostRequest)
PolicyRevertRequest = derived(cc.PolicyRevert, "PolicyRevertRequest", base=CostRequest)
AutoOptimizeRequest = derived(cc.AutoOptimizeUpdate, "AutoOptimizeRequest", base=CostRequest)

# --- responses: the contract's shapes, and `{success: true, data}` around each -------------------------


class CostAnswer(ApiModel):
    # Fields with a default are always sent, so the document lists them as required in answers.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


_RANGE = {"start": "from", "end": "to"}
ProviderAmounts = derived(cc.ProviderAmounts, "ProviderAmounts", base=CostAnswer)
CostStatsData = derived(cc.CostStats, "CostStatsData", base=CostAnswer)
BreakdownPart = derived(cc.BreakdownPart, "BreakdownPart", base=CostAnswer)
BreakdownGroup = derived(cc.BreakdownGroup, "BreakdownGroup", base=CostAnswer)
CostBreakdownData = derived(cc.CostBreakdown, "CostBreakdownData", base=CostAnswer, aliases=_RANGE)
CallCost = derived(cc.CallCost, "CallCost", base=CostAnswer)
WorkflowCost = derived(cc.WorkflowCost, "WorkflowCost", base=CostAnswer)
CampaignCostsData = derived(cc.CampaignCosts, "CampaignCostsData", base=CostAnswer, aliases=_RANGE)
Threshold = derived(cc.Threshold, "Threshold", base=CostAnswer, aliases=_THRESHOLD_NAMES)
ThresholdSummary = derived(cc.ThresholdSummary, "ThresholdSummary", base=CostAnswer, aliases={"by_period": "byType"})
ThresholdsData = derived(cc.Thresholds, "ThresholdsData", base=CostAnswer)
AlertDelivery = derived(cc.AlertDelivery, "AlertDelivery", base=CostAnswer)
Alert = derived(
    cc.Alert, "Alert", base=CostAnswer,
    aliases={"spent_usd": "currentValue", "limit_usd": "threshold", "raised_at": "timestamp"},
)  # fmt: skip
AlertSummary = derived(cc.AlertSummary, "AlertSummary", base=CostAnswer)
AlertsData = derived(cc.Alerts, "AlertsData", base=CostAnswer)
DailyCost = derived(cc.DailyCost, "DailyCost", base=CostAnswer)
ForecastWindow = derived(cc.ForecastWindow, "ForecastWindow", base=CostAnswer)
ForecastData = derived(cc.CostForecast, "ForecastData", base=CostAnswer)
Recommendation = derived(cc.Recommendation, "Recommendation", base=CostAnswer)
OptimizationData = derived(cc.CostOptimization, "OptimizationData", base=CostAnswer, aliases=_RANGE)
AlertDestination = derived(cc.AlertDestination, "AlertDestination", base=CostAnswer)
Policy = derived(cc.Policy, "Policy", base=CostAnswer)
PoliciesData = derived(cc.Policies, "PoliciesData", base=CostAnswer)
AutoOptimizeData = derived(cc.AutoOptimize, "AutoOptimizeData", base=CostAnswer)


# Experiments: the answers' Arm is derived first (nested answers use it); a request's arms are ArmSpec.
Arm = derived(ex.Arm, "Arm", base=CostAnswer)
ArmSpec = derived(ex.Arm, "ArmSpec", base=CostRequest)
ExperimentCreateRequest = derived(
    cc.ExperimentCreate,
    "ExperimentCreateRequest",
    base=CostRequest,
    types={"arms": list[ArmSpec]},  # type: ignore[valid-type]
)
ExperimentStopRequest = derived(
    cc.ExperimentStop, "ExperimentStopRequest", base=CostRequest, exclude=("requester", "experiment_id")
)
Experiment = derived(ex.Experiment, "Experiment", base=CostAnswer)
ExperimentsData = derived(ex.Experiments, "ExperimentsData", base=CostAnswer)
ExperimentResultsData = derived(ex.ExperimentResults, "ExperimentResultsData", base=CostAnswer)


def _answer(name: str, data: Any) -> type[BaseModel]:
    """`{success: true, data}` of `data`."""
    model: type[BaseModel] = create_model(name, __base__=ApiModel, success=(Literal[True], True), data=(data, ...))
    return model


CostStatsResponse = _answer("CostStatsResponse", CostStatsData)
CostBreakdownResponse = _answer("CostBreakdownResponse", CostBreakdownData)
CampaignCostsResponse = _answer("CampaignCostsResponse", CampaignCostsData | WorkflowCost)
ThresholdsResponse = _answer("ThresholdsResponse", ThresholdsData)
ThresholdResponse = _answer("ThresholdResponse", Threshold)
AlertsResponse = _answer("AlertsResponse", AlertsData)
AlertResponse = _answer("AlertResponse", Alert)
ForecastResponse = _answer("ForecastResponse", ForecastData)
OptimizationResponse = _answer("OptimizationResponse", OptimizationData)
AlertDestinationResponse = _answer("AlertDestinationResponse", AlertDestination)
PolicyResponse = _answer("PolicyResponse", Policy)
PoliciesResponse = _answer("PoliciesResponse", PoliciesData)
AutoOptimizeResponse = _answer("AutoOptimizeResponse", AutoOptimizeData)
ExperimentResponse = _answer("ExperimentResponse", Experiment)
ExperimentsResponse = _answer("ExperimentsResponse", ExperimentsData)
ExperimentResultsResponse = _answer("ExperimentResultsResponse", ExperimentResultsData)
