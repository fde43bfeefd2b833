"""Replies every authenticated route documents alike, declared once for the route tables (*_routes.py)."""

from __future__ import annotations

from services.gateway.openapi import Reply
from services.gateway.schemas import ErrorResponse

UNAUTHORIZED = Reply(
    "missing_token, invalid_token (bad signature, malformed, wrong algorithm) or token_expired",
    ErrorResponse,
    ("WWW-Authenticate",),
)
