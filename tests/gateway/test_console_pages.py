"""The console's and the API reference's files as the gateway serves them (what a browser shows of them:
tests/console): only the package's own files, with headers that keep the pages and their address to
themselves, and Swagger UI at the version the Makefile pins."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest
from multidict import CIMultiDict

from services.gateway.console import CONSOLE_PATH, DOCS_PATH
from services.gateway.console.pages import _SWAGGER
from tests.gateway.conftest import MakeGateway
from tests.integration.stack import ROOT


async def fetch(url: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.copy(), await response.read()


class TestPages:
    @pytest.mark.parametrize(
        ("path", "content_type"),
        [
            (CONSOLE_PATH, "text/html"),
            (f"{CONSOLE_PATH}/console.js", "text/javascript"),
            (f"{CONSOLE_PATH}/console.css", "text/css"),
            (DOCS_PATH, "text/html"),
            (f"{DOCS_PATH}/swagger-ui-bundle.js", "text/javascript"),
        ],
    )
    async def test_served_without_a_token_with_their_type_and_policy(
        self, make_gateway: MakeGateway, path: str, content_type: str
    ) -> None:
        """Each page and asset answers 200 unauthenticated, typed, framed by nobody, sending no Referer."""
        gw = await make_gateway()
        status, headers, body = await fetch(gw.url + path)
        assert status == 200 and body
        assert headers["Content-Type"].startswith(content_type)
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self';" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"

    @pytest.mark.parametrize(
        "path",
        [f"{CONSOLE_PATH}/index.html", f"{CONSOLE_PATH}/pages.py", f"{CONSOLE_PATH}/..%2F__init__.py",
         f"{DOCS_PATH}/package.json", f"{DOCS_PATH}/swagger-ui.js"],
    )  # fmt: skip
    async def test_nothing_else_of_the_package_is_served(self, make_gateway: MakeGateway, path: str) -> None:
        """A name that is not one of the pages' files answers 404, whatever the package holds."""
        gw = await make_gateway()
        status, _, _ = await fetch(gw.url + path)
        assert status == 404

    async def test_an_unchanged_file_is_not_sent_again(self, make_gateway: MakeGateway) -> None:
        """A browser revalidating with the file's ETag gets 304 and no body; a stale ETag gets the file."""
        gw = await make_gateway()
        url = f"{gw.url}{DOCS_PATH}/swagger-ui-bundle.js"
        _, headers, body = await fetch(url)
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers={"If-None-Match": headers["ETag"]}) as response:
                assert response.status == 304
                assert await response.read() == b""
            async with session.get(url, headers={"If-None-Match": '"stale"'}) as response:
                assert response.status == 200
                assert await response.read() == body

    async def test_the_console_with_a_slash_leads_to_the_console(self, make_gateway: MakeGateway) -> None:
        """/console/ answers a permanent redirect to /console (the page's scripts load from absolute paths)."""
        gw = await make_gateway()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{gw.url}{CONSOLE_PATH}/", allow_redirects=False) as response,
        ):
            assert response.status == 308
            assert response.headers["Location"] == CONSOLE_PATH

    async def test_the_trace_link_template_is_written_escaped(self, make_gateway: MakeGateway) -> None:
        """GATEWAY_CONSOLE_TRACE_URL reaches the page as an attribute value, its quotes and ampersands escaped."""
        template = 'https://tracing.test/trace/{traceId}?a=1&b="x"'
        gw = await make_gateway(gateway_console_trace_url=template)
        _, _, body = await fetch(gw.url + CONSOLE_PATH)
        meta = re.search(rb'<meta name="ho-trace-url" content="([^"]*)">', body)
        assert meta is not None
        assert meta[1] == b"https://tracing.test/trace/{traceId}?a=1&amp;b=&quot;x&quot;"

    def test_swagger_ui_is_the_version_the_makefile_pins(self) -> None:
        """The vendored files are those of the swagger-ui-dist version `make swagger-ui` fetches."""
        pinned = re.search(r"^SWAGGER_UI := swagger-ui-dist@(\S+)$", (ROOT / "Makefile").read_text(), re.M)
        assert pinned is not None
        assert json.loads((_SWAGGER / "package.json").read_text())["version"] == pinned[1]
        assert (_SWAGGER / "swagger-ui-bundle.js").stat().st_size > 1_000_000  # the real bundle, not a pointer
