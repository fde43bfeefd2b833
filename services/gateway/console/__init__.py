"""The operator console (`/console`) and the API reference (`/api/docs`): static pages the gateway serves.

Both are files shipped in this package — plain HTML, CSS and ES modules (static/), and Swagger UI as
published in the npm package swagger-ui-dist (vendor/swagger-ui/, `make swagger-ui` refreshes it) — so they
work offline and in a cluster that reaches no CDN. The pages call the gateway's JSON API with the bearer
token the operator pasted, or opened in a login link's fragment (`/console#token=…`: browsers never send a
fragment, so the token reaches the server only as the Authorization header of those calls).
"""

from services.gateway.console.pages import CONSOLE_PATH, DOCS_PATH, add_pages, is_page

__all__ = ["CONSOLE_PATH", "DOCS_PATH", "add_pages", "is_page"]
