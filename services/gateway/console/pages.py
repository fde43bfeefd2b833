"""The console's and the API reference's routes: each a file of this package, by name, never a path.

The pages need no token to load (they hold nothing but code); every call they make goes to the API, which
checks the token as for any client. Each answer forbids framing and any script, style or connection from
elsewhere (Content-Security-Policy), and sends no Referer: a page's address never leaves the browser.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

CONSOLE_PATH: Final = "/console"
DOCS_PATH: Final = "/api/docs"

_HERE = Path(__file__).parent
_STATIC = _HERE / "static"
_SWAGGER = _HERE / "vendor" / "swagger-ui"
_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".txt": "text/plain",
    ".json": "application/json",
    ".png": "image/png",
}
# Only the pages' own files, and the one third-party file each loads: nothing else of the package is served.
_CONSOLE_FILES: Final = (
    "console.css",
    "console.js",
    "api.js",
    "ui.js",
    "workflows.js",
    "costs.js",
    "delivery.js",
    "admin.js",
)
_DOCS_FILES: Final = {
    "docs.js": _STATIC / "docs.js",
    "swagger-ui-bundle.js": _SWAGGER / "swagger-ui-bundle.js",
    "swagger-ui.css": _SWAGGER / "swagger-ui.css",
    "LICENSE": _SWAGGER / "LICENSE",
}
# The console is all our own files; Swagger UI sets inline styles and draws its icons as data: images.
_CONSOLE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_DOCS_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The console's placeholder for the trace-link template (GATEWAY_CONSOLE_TRACE_URL).
_TRACE_SLOT: Final = "{{trace_url}}"


def is_page(path: str) -> bool:
    """Whether `path` is one of these pages' routes (not an API operation of the OpenAPI document)."""
    return any(path == root or path.startswith(root + "/") for root in (CONSOLE_PATH, DOCS_PATH))


def add_pages(app: web.Application, *, trace_url: str) -> None:
    """Serve the console at CONSOLE_PATH and Swagger UI at DOCS_PATH on `app`; `trace_url` is the template of
    a trace's link ("…{traceId}…"; empty: trace ids are shown without a link)."""
    index = (_STATIC / "index.html").read_text().replace(_TRACE_SLOT, html.escape(trace_url, quote=True))
    console = _files({name: _STATIC / name for name in _CONSOLE_FILES}, _CONSOLE_POLICY)
    docs = _files(_DOCS_FILES, _DOCS_POLICY)
    app.router.add_get(CONSOLE_PATH, _fixed(index.encode(), "text/html", _CONSOLE_POLICY))
    app.router.add_get(CONSOLE_PATH + "/", _to_console)
    app.router.add_get(CONSOLE_PATH + "/{name}", console)
    app.router.add_get(DOCS_PATH, _fixed((_STATIC / "docs.html").read_bytes(), "text/html", _DOCS_POLICY))
    app.router.add_get(DOCS_PATH + "/{name}", docs)


@dataclass(frozen=True)
class _File:
    """One served file: its bytes, read once at start, and the headers it is sent with."""

    body: bytes
    headers: Mapping[str, str]

    @classmethod
    def of(cls, body: bytes, content_type: str, policy: str) -> _File:
        text = content_type.startswith("text/")
        return cls(
            body,
            {
                "Content-Type": f"{content_type}; charset=utf-8" if text else content_type,
                "Content-Security-Policy": policy,
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
                # Revalidated on every load (an upgraded gateway serves its own console at once), answered
                # 304 while unchanged: the 1.7 MB of Swagger UI cross the network once.
                "Cache-Control": "no-cache",
                "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
            },
        )

    def response(self, request: web.Request) -> web.Response:
        if self.headers["ETag"] in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=self.headers)
        return web.Response(body=self.body, headers=self.headers)


def _fixed(body: bytes, content_type: str, policy: str) -> Handler:
    file = _File.of(body, content_type, policy)

    async def page(request: web.Request) -> web.Response:
        return file.response(request)

    return page


def _files(files: Mapping[str, Path], policy: str) -> Handler:
    """A handler answering `{name}` with that file of `files`, else 404."""
    served = {name: _File.of(path.read_bytes(), _TYPES[path.suffix or ".txt"], policy) for name, path in files.items()}

    async def asset(request: web.Request) -> web.Response:
        found = served.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return found.response(request)

    return asset


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(CONSOLE_PATH)
