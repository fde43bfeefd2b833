"""The gateway's HTTP server: aiohttp's, with a header deadline and a JSON answer to requests it cannot parse.

- Headers: a connection that has not sent a whole request head within GATEWAY_HEADER_TIMEOUT_S is closed
  (aiohttp's keep-alive timer also guards a connection waiting for its first request: unfinished headers
  were held for minutes). The same figure is the idle keep-alive: a load balancer's idle timeout in front
  must be shorter.
- A request line or header past aiohttp's limits (8190 bytes), or anything else the parser refuses, is
  answered with the API's JSON 400 — not aiohttp's text, which echoed the start of the header (a bearer
  token) — and logged by its error class only.

Bodies are read under GATEWAY_BODY_TIMEOUT_S by the handlers (api.read_json_object).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from libs.telemetry import get_logger

log = get_logger(__name__)

_UNPARSABLE = orjson.dumps(
    {
        "success": False,
        "error": {"code": "bad_request", "message": "the request could not be parsed (a line or header too long?)"},
    }
)


class _Protocol(RequestHandler):
    """aiohttp's connection handler, answering parser errors as JSON without their text."""

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status != 400:
            return super().handle_error(request, status, exc, message)
        # The parser's message quotes what it refused, which may be a token: only the class is logged.
        log.info("http.request.unparsable", reason=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was sent already")
        response = web.Response(status=400, body=_UNPARSABLE, content_type="application/json")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner serving through _Protocol, closing connections whose head is not in after `header_timeout_s`."""

    def __init__(self, app: web.Application, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=header_timeout_s, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
