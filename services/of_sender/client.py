"""The fan platform's chat API over HTTP, one aiohttp session: the `Platform` the service uses
(docs/architecture.md#delivery-safety).

    POST {base}/accounts/{account}/chats/{recipient}/messages   Idempotency-Key: <delivery id>
    GET  {base}/accounts/{account}/messages/by-key/{key}        the look-up: 200 with the message, 404

Neither call raises for what the platform or the network does; each answer is classified:

- 2xx → Sent (the message id from the body);
- 429 → NotSent, rate_limit_exceeded with the Retry-After; other 4xx → NotSent, onlyfans_api_error,
  permanent; 5xx → NotSent, onlyfans_api_error, retryable;
- the connection never made (refused, DNS, TLS, connect timeout) → NotSent, retryable: nothing was written;
- a timeout or a connection dropped once it was made → Unknown, retryable: the request may have been
  taken, so the sender looks it up before sending again (aiohttp never re-sends a POST by itself).

A look-up answers Sent (200), NotFound (404), or Unknown for anything else.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp

from contracts.enums import ErrorType
from contracts.messages import ErrorInfo
from libs.telemetry import get_logger
from services.of_sender.constants import MAX_ERROR_TEXT
from services.of_sender.platform import LookupOutcome, NotFound, NotSent, Platform, SendOutcome, Sent, Unknown

log = get_logger(__name__)

MESSAGES_PATH = "/accounts/{account}/chats/{recipient}/messages"
LOOKUP_PATH = "/accounts/{account}/messages/by-key/{key}"

# The connection was never made: the request was not written, so the platform cannot have taken it.
# (ConnectionTimeoutError covers the connect phase only; a total timeout after that is a plain TimeoutError.)
NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


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


def _message_id(body: object) -> str:
    message_id = body.get("id") if isinstance(body, dict) else None
    return message_id if isinstance(message_id, str) else ""


class PlatformClient(Platform):
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

    async def ping(self) -> None:
        if self._session is None or self._session.closed:
            raise RuntimeError("the platform client is closed")

    def _ready(self) -> tuple[aiohttp.ClientSession, dict[str, str]]:
        if self._session is None:
            raise RuntimeError("PlatformClient.start() was not called")
        return self._session, {"Authorization": f"Bearer {self._token}"}

    async def send(self, account: str, recipient: str, text: str, *, idempotency_key: str) -> SendOutcome:
        """POST the message with `idempotency_key` (the same on every attempt)."""
        session, headers = self._ready()
        url = self.base_url + MESSAGES_PATH.format(account=quote(account, safe=""), recipient=quote(recipient, safe=""))
        started = time.perf_counter()
        outcome: SendOutcome
        try:
            async with session.post(
                url, json={"text": text}, headers={**headers, "Idempotency-Key": idempotency_key}
            ) as response:
                outcome = await self._outcome(response)
        except NOT_CONNECTED as exc:
            outcome = NotSent(_failure(f"platform unreachable: {type(exc).__name__}", retryable=True))
        except TimeoutError:
            outcome = Unknown(_failure(f"no answer within {self._timeout_s:g}s", retryable=True))
        except aiohttp.ClientError as exc:
            outcome = Unknown(_failure(f"connection lost: {type(exc).__name__}", retryable=True))
        log.info(
            "platform.send",
            outcome=type(outcome).__name__,
            status=outcome.error.status_code if isinstance(outcome, NotSent) else None,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return outcome

    async def lookup(self, account: str, idempotency_key: str) -> LookupOutcome:
        """GET the message taken with `idempotency_key`, if any."""
        session, headers = self._ready()
        url = self.base_url + LOOKUP_PATH.format(account=quote(account, safe=""), key=quote(idempotency_key, safe=""))
        started = time.perf_counter()
        outcome: LookupOutcome
        try:
            async with session.get(url, headers=headers) as response:
                if response.status == 200:
                    outcome = Sent(_message_id(await response.json(content_type=None)))
                elif response.status == 404:
                    outcome = NotFound()
                else:
                    reason = await _reason(response)
                    message = f"look-up failed ({response.status}): {reason}"
                    outcome = Unknown(_failure(message, retryable=True, status=response.status))
        except TimeoutError:
            outcome = Unknown(_failure(f"look-up: no answer within {self._timeout_s:g}s", retryable=True))
        except (aiohttp.ClientError, ValueError) as exc:
            outcome = Unknown(_failure(f"look-up failed: {type(exc).__name__}", retryable=True))
        log.info(
            "platform.lookup",
            outcome=type(outcome).__name__,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return outcome

    async def _outcome(self, response: aiohttp.ClientResponse) -> Sent | NotSent:
        status = response.status
        if 200 <= status < 300:
            try:
                message_id = _message_id(await response.json(content_type=None))
            except ValueError:
                message_id = ""
            if not message_id:
                # Taken (2xx) but unreadable: the message is out, so it must count as sent, not be retried.
                log.warning("platform.send.no_message_id", status=status)
            return Sent(message_id)
        wait = retry_after_s(response.headers.get("Retry-After"))
        reason = await _reason(response)
        if status == 429:
            error = ErrorInfo(
                type=ErrorType.RATE_LIMIT_EXCEEDED,
                message=f"onlyfans_rate_limited: {reason}",
                retryable=True,
                retry_after_s=wait,
                status_code=status,
            )
        elif 400 <= status < 500:
            error = _failure(f"platform refused the message ({status}): {reason}", retryable=False, status=status)
        else:
            error = _failure(f"platform error ({status}): {reason}", retryable=True, status=status, retry_after=wait)
        return NotSent(error)
