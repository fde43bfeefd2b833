"""The fan platform's chat API as the of-sender sees it (DESIGN §11), over one aiohttp session.

`send` never raises for what the platform or the network does: it returns `Sent` or a classified
`ErrorInfo` (DESIGN §6) — 429 → rate_limit_exceeded with the Retry-After, other 4xx → onlyfans_api_error,
permanent; 5xx, timeouts and dropped connections → onlyfans_api_error, retryable.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp

from contracts.enums import ErrorType
from contracts.messages import ErrorInfo
from libs.telemetry import get_logger
from services.of_sender.constants import MAX_ERROR_TEXT

log = get_logger(__name__)

MESSAGES_PATH = "/accounts/{account}/chats/{recipient}/messages"


@dataclass(frozen=True, slots=True)
class Sent:
    platform_message_id: str


def retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date (None when absent or unreadable)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def _reason(response: aiohttp.ClientResponse) -> str:
    """The platform's error code/message, short (never the message text we sent)."""
    try:
        body = await response.json(content_type=None)
        error = body.get("error", {}) if isinstance(body, dict) else {}
        reason = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    except (aiohttp.ClientError, ValueError, AttributeError):
        reason = ""
    return (reason or response.reason or "")[:MAX_ERROR_TEXT]


def _failure(
    message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
) -> ErrorInfo:
    return ErrorInfo(
        type=ErrorType.ONLYFANS_API_ERROR,
        message=message,
        retryable=retryable,
        retry_after_s=retry_after,
        status_code=status,
    )


class PlatformClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed

    async def send(self, account: str, recipient: str, text: str, *, idempotency_key: str) -> Sent | ErrorInfo:
        """POST the message; the same `idempotency_key` on every retry makes the platform deliver it once."""
        if self._session is None:
            raise RuntimeError("PlatformClient.start() was not called")
        url = self.base_url + MESSAGES_PATH.format(account=quote(account, safe=""), recipient=quote(recipient, safe=""))
        headers = {"Authorization": f"Bearer {self._token}", "Idempotency-Key": idempotency_key}
        started = time.perf_counter()
        try:
            async with self._session.post(url, json={"text": text}, headers=headers) as response:
                outcome = await self._outcome(response)
        except TimeoutError:
            outcome = _failure(f"no answer within {self._timeout_s:g}s", retryable=True)
        except aiohttp.ClientError as exc:
            outcome = _failure(f"connection failed: {type(exc).__name__}", retryable=True)
        log.info(
            "platform.send",
            status=outcome.status_code if isinstance(outcome, ErrorInfo) else 200,
            sent=isinstance(outcome, Sent),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return outcome

    async def _outcome(self, response: aiohttp.ClientResponse) -> Sent | ErrorInfo:
        status = response.status
        if 200 <= status < 300:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            message_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(message_id, str) or not message_id:
                # Taken (2xx) but unreadable: the message is out, so it must count as sent, not be retried.
                log.warning("platform.send.no_message_id", status=status)
                message_id = ""
            return Sent(message_id)
        wait = retry_after_s(response.headers.get("Retry-After"))
        reason = await _reason(response)
        if status == 429:
            return ErrorInfo(
                type=ErrorType.RATE_LIMIT_EXCEEDED,
                message=f"onlyfans_rate_limited: {reason}",
                retryable=True,
                retry_after_s=wait,
                status_code=status,
            )
        if 400 <= status < 500:
            return _failure(f"platform refused the message ({status}): {reason}", retryable=False, status=status)
        return _failure(f"platform error ({status}): {reason}", retryable=True, status=status, retry_after=wait)
