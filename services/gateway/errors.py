"""What the gateway answers when it cannot answer with success, and how errors become HTTP responses.

    ApiError                      an answer {"success": false, "error": {code, message, ...}}
    ├── BadRequest        400     invalid_json, invalid_body, validation_error, invalid_parameter
    ├── Unauthorized      401     missing_token, invalid_token, token_expired
    ├── Forbidden         403     forbidden (authenticated, but not allowed: e.g. another user's costs)
    ├── NotFound          404     not_found (unknown, or another user's workflow: the same answer)
    ├── Conflict          409     the workflow's state does not allow it: already_finished (cancel),
    │                             not_failed (retry), cancelled (?wait=true on a cancelled workflow)
    ├── PayloadTooLarge   413     payload_too_large
    ├── UnsupportedMedia  415     unsupported_media_type
    ├── TooManyRequests   429     too_many_requests (the user's GATEWAY_RATE_LIMIT_* bucket is empty), Retry-After
    ├── BadGateway        502     bad_gateway (the router answered something that is not its reply)
    ├── Unavailable       503     unavailable (the bus failed), disabled (HYBRID_ORCHESTRATOR_ENABLED=false)
    └── WorkflowError             the router refused the workflow, or it failed: code = the ErrorType,
                                  HTTP status from ERROR_STATUS below

    GatewayConfigError            raised at start-up: the gateway cannot run with this configuration

`error_middleware` turns these, aiohttp's own HTTPExceptions (404 no route, 405, 413 from the body reader)
and anything unexpected (500 `internal`, logged) into that JSON shape. A client's input never reaches the
500 path: every way it can be wrong is an ApiError raised before anything is published.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from contracts.enums import ErrorType
from contracts.messages import ErrorInfo, WorkflowView
from libs.config import ConfigError
from libs.telemetry import get_logger
from services.gateway.schemas import ErrorInfoBody, ErrorResponse, FieldError, wait_metrics, wait_result

log = get_logger(__name__)

# HTTP status of a refused or failed workflow, by its ErrorType. The request itself was fine,
# so these say what went wrong further in: the budget (402), the content (422), the provider's rate limit
# (429, with Retry-After), our own infrastructure (503, retry later), the provider's time limit (504);
# anything else upstream (provider_unavailable, onlyfans_api_error) is a bad gateway (502).
ERROR_STATUS: Mapping[ErrorType, int] = {
    ErrorType.COST_LIMIT_EXCEEDED: 402,
    ErrorType.INVALID_REQUEST: 422,
    ErrorType.COMPLIANCE_VIOLATION: 422,
    ErrorType.RATE_LIMIT_EXCEEDED: 429,
    ErrorType.DATABASE_ERROR: 503,
    ErrorType.SQS_ERROR: 503,
    ErrorType.AZURE_TIMEOUT: 504,
    ErrorType.OPENAI_TIMEOUT: 504,
}
DEFAULT_WORKFLOW_ERROR_STATUS = 502
# aiohttp's own HTTPExceptions, by status, get these codes.
_HTTP_CODES: Mapping[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_MAX_DETAILS = 10


class GatewayConfigError(ConfigError):
    """The gateway cannot start with this configuration (e.g. no GATEWAY_JWT_SECRET): one line, exit 2."""


class ApiError(Exception):
    status = 500

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorInfoBody(code=self.code, message=self.message, details=self.details))

    def response(self) -> web.Response:
        return json_response(self.body().dump(), status=self.status, headers=self.headers)


class BadRequest(ApiError):
    status = 400

    @classmethod
    def from_validation(cls, exc: ValidationError) -> BadRequest:
        """A pydantic failure as a 400 naming every offending field (never echoing the input back)."""
        details = [
            FieldError(
                field=".".join(str(p) for p in e["loc"]) or "<body>",
                message="unknown field" if e["type"] == "extra_forbidden" else e["msg"],
            )
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ][:_MAX_DETAILS]
        summary = "; ".join(f"{d.field}: {d.message}" for d in details)
        return cls("validation_error", f"invalid request body: {summary}", details=details)


class Unauthorized(ApiError):
    status = 401

    def __init__(self, code: str, message: str) -> None:
        # RFC 6750 §3: tell the client which scheme to use and, when a token was sent, that it was refused.
        challenge = 'Bearer realm="hybrid-orchestrator"'
        if code != "missing_token":
            challenge += ', error="invalid_token"'
        super().__init__(code, message, headers={"WWW-Authenticate": challenge})


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class BodyTimeout(ApiError):
    status = 408


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMedia(ApiError):
    status = 415


class TooManyRequests(ApiError):
    status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__("too_many_requests", message, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class BadGateway(ApiError):
    status = 502


class Unavailable(ApiError):
    status = 503


class WorkflowError(ApiError):
    """The router refused the workflow (before anything ran) or the workflow failed (?wait=true)."""

    def __init__(self, error: ErrorInfo, view: WorkflowView | None = None) -> None:
        headers = {}
        if error.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
        super().__init__(error.type.value, error.message, headers=headers)
        self.status = ERROR_STATUS.get(error.type, DEFAULT_WORKFLOW_ERROR_STATUS)
        self.error = error
        self.view = view

    def body(self) -> ErrorResponse:
        info = ErrorInfoBody(
            code=self.code, message=self.message, retryable=self.error.retryable, retry_after=self.error.retry_after_s
        )
        if self.view is None:
            return ErrorResponse(error=info)
        return ErrorResponse(error=info, data=wait_result(self.view), metrics=wait_metrics(self.view))


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the API's JSON error shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status >= 500:
            log.warning("gateway.request.failed", path=request.path, status=exc.status, code=exc.code)
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects are answers, not errors
            raise
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        error = ApiError(code, exc.reason or code, headers=headers)
        error.status = exc.status
        return error.response()
    except Exception:
        log.exception("gateway.request.crashed", path=request.path, method=request.method)
        return ApiError("internal", "internal error").response()
