"""The gateway's HTTP API as the CLI calls it: `--url` / `--token` on every command that needs them, one
request per call, the answer's `data` or an HttpError built from its `{"error": {code, message}}`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

import aiohttp

from libs.config import redact
from services.cli.errors import CommandError, HttpError
from services.gateway.constants import DEFAULT_PORT

URL_ENV = "HO_URL"
TOKEN_ENV = "HO_TOKEN"
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
# Longer than any answer of the API (a bus request waits GATEWAY_REQUEST_TIMEOUT_S, 5 s by default).
REQUEST_TIMEOUT_S = 30.0
# Of a body that is not the API's JSON, this much goes into the error line.
MAX_ERROR_TEXT = 200


def add_http_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the gateway (default: ${URL_ENV}, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default: ${TOKEN_ENV}; `ho token` mints one)"
    )


def call(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    params: Mapping[str, object | None] | None = None,
    body: Any = None,
) -> Any:
    """`method path` on the gateway `args.url` with `args.token`; the answer's `data`. Raises HttpError for an
    error answer, CommandError when the gateway cannot be reached."""
    return asyncio.run(_call(args.url, args.token, method, path, params=params, body=body))


async def _call(
    url: str, token: str | None, method: str, path: str, *, params: Mapping[str, object | None] | None, body: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    query = {key: _query_value(value) for key, value in (params or {}).items() if value is not None}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url.rstrip("/") + path, params=query, json=body, headers=headers) as response,
        ):
            status, reason, text = response.status, response.reason or "", await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        problem = str(exc) or type(exc).__name__
        raise CommandError(f"cannot reach the gateway at {url}: {redact(problem)}") from None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if status < 400 and isinstance(answer, dict) and answer.get("success") is True:
        return answer.get("data", answer)
    raise _http_error(status, reason, answer, text)


def _http_error(status: int, reason: str, answer: Any, text: str) -> HttpError:
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        return HttpError(status, str(error.get("code", "error")), str(error.get("message", reason)))
    # Not the API's error shape (a proxy in between, a wrong --url): what the body starts with.
    snippet = " ".join(text.split())[:MAX_ERROR_TEXT]
    return HttpError(status, "http_error", snippet or reason)


def _query_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
