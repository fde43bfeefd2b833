"""A failed provider call → the `ErrorInfo` the router's fallback matrix acts on
(docs/architecture.md#generation-and-fallback).

Classification reads the openai SDK's exception classes and the HTTP status and error code they carry —
never the wording of a message, which providers change at will:

    APITimeoutError, 408, our own deadline      azure_timeout / openai_timeout       retryable
      (unless its cause is a refused or dropped connection: see `_timed_out`)
    429 (RateLimitError)                        rate_limit_exceeded                  retryable, Retry-After
    429 with code insufficient_quota            provider_unavailable                 retryable (fall back)
    5xx, 409, APIConnectionError                provider_unavailable                 retryable
    400 with code content_filter, a filtered
    or refused completion                       compliance_violation                 not retryable
    other 4xx (400, 401, 403, 404, 422, ...)    invalid_request                      not retryable
    malformed JSON, missing choices/content,
    APIResponseValidationError                  provider_unavailable                 retryable

Anything else is not a provider failure but a bug of ours: `classify` returns None and the caller re-raises.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping

import openai

from contracts.enums import ErrorType, Provider
from contracts.messages import ErrorInfo
from libs.llm.constants import INVALID_RESPONSE_MESSAGE
from libs.llm.errors import ContentFiltered, InvalidResponse

# A provider's own error text is kept (it says which parameter or policy), but bounded.
MAX_PROVIDER_MESSAGE_CHARS = 300
CODE_CONTENT_FILTER = "content_filter"
CODE_INSUFFICIENT_QUOTA = "insufficient_quota"
STATUS_REQUEST_TIMEOUT = 408
STATUS_CONFLICT = 409  # OpenAI: a lock timeout on their side, retried by the SDK's own policy too
STATUS_TOO_MANY_REQUESTS = 429

_TIMEOUT_TYPES = {Provider.AZURE: ErrorType.AZURE_TIMEOUT, Provider.OPENAI: ErrorType.OPENAI_TIMEOUT}


def classify(exc: BaseException, provider: Provider, *, timeout_s: float) -> ErrorInfo | None:
    """What `exc`, raised by a chat-completions call to `provider`, means; None when it is not a provider
    failure (the caller re-raises it)."""
    if isinstance(exc, openai.APITimeoutError) and not _timed_out(exc):
        return ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message=f"cannot reach {provider.value}", retryable=True)
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return timeout_error(provider, timeout_s)
    if isinstance(exc, openai.APIConnectionError):
        return ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message=f"cannot reach {provider.value}", retryable=True)
    if isinstance(exc, openai.APIResponseValidationError):
        return invalid_response(f"unexpected schema (HTTP {exc.status_code})", status_code=exc.status_code)
    if isinstance(exc, openai.APIStatusError):
        return _from_status(exc, provider, timeout_s)
    # The SDK does not wrap a body that is not JSON: json.JSONDecodeError escapes from it as is.
    if isinstance(exc, json.JSONDecodeError):
        return invalid_response("body is not JSON")
    if isinstance(exc, InvalidResponse):
        return invalid_response(str(exc))
    if isinstance(exc, ContentFiltered):
        return ErrorInfo(type=ErrorType.COMPLIANCE_VIOLATION, message=str(exc), retryable=False)
    return None


def _timed_out(exc: BaseException) -> bool:
    """Whether the root cause of an APITimeoutError really is a timeout.

    The SDK's aiohttp transport (openai/_vendor/httpx_aiohttp) maps every aiohttp.ClientConnectionError —
    a refused connection or a dropped socket included — to httpx's ConnectTimeout, so the SDK reports
    APITimeoutError in 4 ms for a provider that is down. The exception chain still carries the original:
    an OSError that is not a TimeoutError was no timeout.
    """
    root = exc
    seen = {id(root)}
    while root.__cause__ is not None and id(root.__cause__) not in seen:
        root = root.__cause__
        seen.add(id(root))
    return not (isinstance(root, OSError) and not isinstance(root, TimeoutError))


def timeout_error(provider: Provider, timeout_s: float) -> ErrorInfo:
    return ErrorInfo(
        type=_TIMEOUT_TYPES[provider],
        message=f"{provider.value} did not answer within {timeout_s:g}s",
        retryable=True,
    )


def invalid_response(detail: str, *, status_code: int | None = None) -> ErrorInfo:
    return ErrorInfo(
        type=ErrorType.PROVIDER_UNAVAILABLE,
        message=f"{INVALID_RESPONSE_MESSAGE} ({detail})",
        retryable=True,
        status_code=status_code,
    )


def _from_status(exc: openai.APIStatusError, provider: Provider, timeout_s: float) -> ErrorInfo:
    status = exc.status_code
    said = _provider_message(exc)
    if status == STATUS_REQUEST_TIMEOUT:
        return timeout_error(provider, timeout_s).model_copy(update={"status_code": status})
    if status == STATUS_TOO_MANY_REQUESTS and exc.code == CODE_INSUFFICIENT_QUOTA:
        # Not a burst limit: this provider cannot serve anything until billing is fixed, so waiting for it
        # is pointless and the other provider should take over.
        return _info(ErrorType.PROVIDER_UNAVAILABLE, f"{provider.value} quota exhausted: {said}", True, status)
    if status == STATUS_TOO_MANY_REQUESTS:
        return _info(
            ErrorType.RATE_LIMIT_EXCEEDED,
            f"{provider.value} rate limit: {said}",
            True,
            status,
            retry_after_s(exc.response.headers),
        )
    if status >= 500 or status == STATUS_CONFLICT or status < 400:
        message = f"{provider.value} unavailable (HTTP {status}): {said}"
        return _info(ErrorType.PROVIDER_UNAVAILABLE, message, True, status, retry_after_s(exc.response.headers))
    if exc.code == CODE_CONTENT_FILTER:
        return _info(ErrorType.COMPLIANCE_VIOLATION, f"{provider.value} content filter: {said}", False, status)
    return _info(
        ErrorType.INVALID_REQUEST, f"{provider.value} refused the request (HTTP {status}): {said}", False, status
    )


def _info(type_: ErrorType, message: str, retryable: bool, status: int, retry_after: float | None = None) -> ErrorInfo:
    return ErrorInfo(type=type_, message=message, retryable=retryable, status_code=status, retry_after_s=retry_after)


def _provider_message(exc: openai.APIStatusError) -> str:
    """The provider's own error message from the body (OpenAI's and Azure's bodies both have one)."""
    body = exc.body
    message = body.get("message") if isinstance(body, Mapping) else None
    text = message if isinstance(message, str) and message else f"HTTP {exc.status_code}"
    return text[:MAX_PROVIDER_MESSAGE_CHARS]


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date); None if absent.

    Providers send fractional seconds ("1.5"), which RFC 9110 does not allow but the SDK accepts too.
    """
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
