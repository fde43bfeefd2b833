"""The gateway: the public HTTP API (README.md, HTTP API) — workflows in, status and health out, all over the bus."""

from services.gateway.auth import Principal, make_token
from services.gateway.config import GatewaySettings
from services.gateway.service import Gateway, create, openapi_document

__all__ = ["Gateway", "GatewaySettings", "Principal", "create", "make_token", "openapi_document"]
