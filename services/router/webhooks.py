"""The webhook.requested handler: POST a finished workflow's summary to its callback URL, signed, at least once.

The body is JSON, camelCase — the workflow's summary with the event around it:

    {"eventId": "…uuid…", "event": "workflow.completed" | "workflow.failed", "sentAt": "2026-05-20T12:00:03Z",
     "workflowId": "…", "userId": "…", "status": "completed" | "failed", "intentType": "message_generation",
     "deliveries": {"total": 3, "sent": 2, "failed": 1, "cancelled": 0} | null,
     "error": {"type": "…", "message": "…", "retryable": false, "retryAfterS": null, "statusCode": null} | null,
     "traceId": "…" | null, "createdAt": "…", "completedAt": "…"}

Headers: `X-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, key WEBHOOK_SECRET>`, `X-Event-Id`
(the eventId, the same on every retry: the receiver's de-duplication key), `X-Event-Type` (the event),
`Content-Type: application/json`. The signature scheme is libs/callbacks.py's `sign`.

Replay protection needs no extra header: `sentAt` (this attempt's time) is inside the signed body, so a
receiver drops a body older than a few minutes, and one it saw already by its eventId. A timestamp header
would have to be folded into the signed material, making the signature more than "HMAC of the body".

Outcomes of one POST: 2xx → done. A timeout, a connection error, 5xx, 408 or 429 → the same request is
re-published to the router's queue, delayed (WEBHOOK_RETRY_BASE_S doubling, jittered, capped at
RETRY_CAP_S; a longer numeric Retry-After is honoured up to the cap), until WEBHOOK_MAX_ATTEMPTS, then
dead-lettered with the last reason. Like the cost alerts (services/cost_tracker/notify.py), the handler
returns instead of waiting, so a receiver that is down never holds up the queue. Any other status
(another 4xx, a redirect — never followed, the URL was checked, its target was not) is permanent:
dead-lettered at once. The URL is checked again (libs.callbacks.callback_url_problem) before each POST,
and without WEBHOOK_SECRET nothing is sent: the message is dead-lettered, to be replayed once it is set.

Logs carry the event id, the receiver's host, the attempt and the status — never the URL (its query may
hold the receiver's token), the body or the secret.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from contracts import Envelope
from contracts.enums import ErrorType, IntentType, WorkflowStatus
from contracts.messages import WebhookRequested
from libs.bus import Bus, Handler, RedeliveryPolicy, Reject
from libs.callbacks import H_EVENT_ID, H_EVENT_TYPE, H_SIGNATURE, callback_url_problem, sign
from libs.telemetry import get_logger
from services.router.config import RouterSettings

log = get_logger(__name__)

# The longest wait between two POSTs: a receiver down for an hour still gets the webhook within 15 minutes
# of coming back, and the delay stays within what every transport delays natively (SQS: 15 minutes).
RETRY_CAP_S: Final = 900.0

# Besides 5xx and timeouts, the 4xx that mean "later", not "never": 408 Request Timeout, 429 Too Many Requests.
RETRYABLE_4XX: Final = frozenset({408, 429})

USER_AGENT: Final = "hybrid-orchestrator-webhooks/1"


# --- the body ------------------------------------------------------------------------------------------------


class BodyModel(BaseModel):
    """camelCase on the wire (as the gateway's ApiModel), snake_case in code."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True)


class BodyDeliveries(BodyModel):
    total: int
    sent: int
    failed: int
    cancelled: int


class BodyError(BodyModel):
    type: ErrorType
    message: str
    retryable: bool
    retry_after_s: float | None = None
    status_code: int | None = None


class WebhookBody(BodyModel):
    """What the receiver gets: the summary's fields, and the event around them (see the module docstring)."""

    event_id: uuid.UUID
    event: Literal["workflow.completed", "workflow.failed"]
    sent_at: AwareDatetime
    workflow_id: uuid.UUID
    user_id: str
    status: WorkflowStatus
    intent_type: IntentType
    deliveries: BodyDeliveries | None
    error: BodyError | None
    trace_id: str | None
    created_at: AwareDatetime
    completed_at: AwareDatetime

    @classmethod
    def of(cls, request: WebhookRequested, sent_at: datetime) -> WebhookBody:
        summary = request.summary.model_dump()
        return cls.model_validate({**summary, "event_id": request.event_id, "event": request.event, "sent_at": sent_at})

    def encode(self) -> bytes:
        """The exact bytes that are signed and sent."""
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))


# --- one POST ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """How one POST went: delivered, worth another attempt, or never going to work."""

    delivered: bool
    retryable: bool
    reason: str = ""
    retry_after_s: float | None = None
    status: int | None = None


def answer_for(status: int, retry_after: str | None) -> Answer:
    """Classify the receiver's HTTP status (see the module docstring)."""
    if 200 <= status < 300:
        return Answer(delivered=True, retryable=False, status=status)
    reason = f"receiver answered {status}"
    if 300 <= status < 400:
        return Answer(delivered=False, retryable=False, reason=f"{reason} (redirects are not followed)", status=status)
    retryable = status >= 500 or status in RETRYABLE_4XX
    wait = _seconds(retry_after) if retryable else None
    return Answer(delivered=False, retryable=retryable, reason=reason, retry_after_s=wait, status=status)


def _seconds(value: str | None) -> float | None:
    """A delta-seconds Retry-After (an HTTP-date one is ignored: the backoff applies)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# --- the handler ---------------------------------------------------------------------------------------------


class WebhookSender:
    """Consumes webhook.requested on the router's queue, over one aiohttp session per process."""

    def __init__(self, bus: Bus, settings: RouterSettings) -> None:
        self._bus = bus
        self._settings = settings
        self._backoff = RedeliveryPolicy(base_s=settings.webhook_retry_base_s, cap_s=RETRY_CAP_S)
        self._session: aiohttp.ClientSession | None = None

    def handlers(self) -> dict[str, Handler]:
        return {WebhookRequested.TYPE: self.on_webhook}

    async def start(self) -> None:
        if self._settings.webhook_secret is None:
            log.warning("webhook.secret_unset", effect="webhooks are dead-lettered, not sent")
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def on_webhook(self, envelope: Envelope) -> None:
        request = envelope.payload
        assert isinstance(request, WebhookRequested)
        attempt, event_id = envelope.attempt, str(request.event_id)
        secret = self._settings.webhook_secret
        if secret is None:
            raise Reject("WEBHOOK_SECRET is not set: a webhook is never sent unsigned")
        problem = callback_url_problem(request.url, allow_local_http=self._settings.webhook_allow_local_http)
        if problem is not None:
            raise Reject(f"callback URL refused: {problem}")
        answer = await self._post(request, secret.get_secret_value().encode(), attempt)
        if answer.delivered:
            return
        if not answer.retryable:
            raise Reject(f"permanent failure on attempt {attempt}: {answer.reason}")
        if attempt >= self._settings.webhook_max_attempts:
            raise Reject(f"gave up after {attempt} attempts, last: {answer.reason}")
        delay = max(self._backoff.delay(attempt), min(RETRY_CAP_S, answer.retry_after_s or 0.0))
        await self._bus.publish(envelope.derived_child(request, key="retry", attempt=attempt + 1), delay=delay)
        log.info("webhook.retry_scheduled", event_id=event_id, attempt=attempt, delay_s=round(delay, 3))

    async def _post(self, request: WebhookRequested, secret: bytes, attempt: int) -> Answer:
        if self._session is None:
            raise RuntimeError("WebhookSender.start() was not called")
        body = WebhookBody.of(request, datetime.now(UTC)).encode()
        headers = {
            "Content-Type": "application/json",
            H_SIGNATURE: sign(secret, body),
            H_EVENT_ID: str(request.event_id),
            H_EVENT_TYPE: request.event,
        }
        started = time.perf_counter()
        try:
            # No redirects: the URL was checked, where it points to was not (an https URL answering 307 to
            # an internal http address).
            async with self._session.post(request.url, data=body, headers=headers, allow_redirects=False) as response:
                answer = answer_for(response.status, response.headers.get("Retry-After"))
        except TimeoutError:
            reason = f"no answer within {self._settings.webhook_timeout_s:g}s"
            answer = Answer(delivered=False, retryable=True, reason=reason)
        except aiohttp.ClientError as exc:  # its text names the host and port: the type is enough
            answer = Answer(delivered=False, retryable=True, reason=f"connection failed: {type(exc).__name__}")
        log.info(
            "webhook.post",
            event_id=str(request.event_id),
            host=urlsplit(request.url).hostname,
            attempt=attempt,
            status=answer.status,
            delivered=answer.delivered,
            retryable=answer.retryable,
            reason=answer.reason or None,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return answer
