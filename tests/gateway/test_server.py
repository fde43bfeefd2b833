"""The gateway's HTTP server (server.py): a request head that never finishes is cut off, and a request aiohttp
cannot parse is answered with the API's JSON 400, never echoing what it refused."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import orjson
import pytest

from tests.gateway.conftest import MakeGateway

TOKEN = "eyJhbGciOiJIUzI1NiJ9." + "SECRETPART" * 1000


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return await asyncio.open_connection(parts.hostname, parts.port)


class TestServer:
    async def test_an_unfinished_request_head_is_cut_off(self, make_gateway: MakeGateway) -> None:
        """A client that sends half a request head is disconnected after GATEWAY_HEADER_TIMEOUT_S (it was held
        for minutes)."""
        gw = await make_gateway(gateway_header_timeout_s=0.5)
        reader, writer = await _open(gw.url)
        writer.write(b"GET /api/health/hybrid-orchestrator HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
        assert time.monotonic() - started < 3
        writer.close()

    async def test_a_silent_connection_is_cut_off(self, make_gateway: MakeGateway) -> None:
        """A connection that sends nothing at all is closed after the same timeout."""
        gw = await make_gateway(gateway_header_timeout_s=0.5)
        reader, writer = await _open(gw.url)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    async def test_an_oversized_header_gets_a_json_400_without_the_token(
        self, make_gateway: MakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        """An Authorization header past aiohttp's 8190 bytes answers the API's JSON 400; neither the answer
        nor the logs quote it (aiohttp's text answer echoed the token's start)."""
        gw = await make_gateway()
        reader, writer = await _open(gw.url)
        writer.write(f"GET /api/v2/costs/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") or head.startswith(b"HTTP/1.0 400"), head
        assert b"content-type: application/json" in head.lower()
        answer = orjson.loads(body)
        assert answer["success"] is False and answer["error"]["code"] == "bad_request"
        assert b"SECRETPART" not in raw and b"eyJ" not in raw
        logged = capsys.readouterr()
        assert "SECRETPART" not in logged.out + logged.err + caplog.text
        assert "http.request.unparsable" in logged.out + logged.err + caplog.text

    async def test_ordinary_requests_are_served(self, make_gateway: MakeGateway) -> None:
        """The runner serves the API as before."""
        gw = await make_gateway(gateway_header_timeout_s=0.5)
        reader, writer = await _open(gw.url)
        writer.write(b"GET /api/health/hybrid-orchestrator HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert raw.startswith(b"HTTP/1.1 200")
