"""The vocabulary shared by every message: the original plan's enums, spelled exactly as it spells them
(docs/deviations.md)."""

from enum import StrEnum


class IntentType(StrEnum):
    CONTENT_PLANNING = "content_planning"
    MESSAGE_GENERATION = "message_generation"
    CONTENT_VALIDATION = "content_validation"
    CAMPAIGN_EXECUTION = "campaign_execution"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Provider(StrEnum):
    AZURE = "azure"
    OPENAI = "openai"


class WorkflowStatus(StrEnum):
    ACCEPTED = "accepted"
    GENERATING = "generating"
    GENERATED = "generated"
    DELIVERING = "delivering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # an owner or an admin cancelled it: nothing more is generated or sent


# The statuses a workflow never leaves.
TERMINAL_STATUSES = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})


class ProviderState(StrEnum):
    """State of one LLM provider within a workflow (`provider_states.azure` / `.openai`)."""

    PENDING = "pending"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"


class RateLimiterState(StrEnum):
    PENDING = "pending"
    CHECKING = "checking"
    THROTTLED = "throttled"
    APPROVED = "approved"
    REJECTED = "rejected"


class DeliveryState(StrEnum):
    """State of the platform send (`provider_states.onlyFans`)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    RATE_LIMITED = "rate_limited"
    CANCELLED = "cancelled"  # its workflow was cancelled before it was sent


class ErrorType(StrEnum):
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    INVALID_REQUEST = "invalid_request"
    ONLYFANS_API_ERROR = "onlyfans_api_error"
    COST_LIMIT_EXCEEDED = "cost_limit_exceeded"
    COMPLIANCE_VIOLATION = "compliance_violation"
    AZURE_TIMEOUT = "azure_timeout"
    OPENAI_TIMEOUT = "openai_timeout"
    SQS_ERROR = "sqs_error"
    DATABASE_ERROR = "database_error"


class BudgetAction(StrEnum):
    """What the router does with new workflows of a user whose budget is spent."""

    ALLOW = "allow"
    DOWNGRADE = "downgrade"
    BLOCK = "block"


class CostPeriod(StrEnum):
    """What a threshold measures: spend over a UTC calendar hour, day or month, or one billed call's cost.

    Budgets (budget.status) and running totals use the three periods; per_request is a threshold type only.
    """

    HOURLY = "hourly"
    DAILY = "daily"
    MONTHLY = "monthly"
    PER_REQUEST = "per_request"
