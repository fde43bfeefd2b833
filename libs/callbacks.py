"""Callback URLs and how what is POSTed to them is signed: one rule for the gateway (refusing a request's
`callbackUrl` up front) and the router's webhook sender (checking again right before each POST), and the
signature scheme both the sender and any receiver (or test) compute the same way.

    callback_url_problem("https://hooks.example.com/done", allow_local_http=False)  -> None (acceptable)
    callback_url_problem("http://hooks.example.com/done", allow_local_http=False)   -> "… must use https"
    sign(secret, body)                       -> "sha256=<hex HMAC-SHA256 of the exact body bytes>"
    signature_matches(secret, body, header)  -> bool (constant-time)

A problem is a short sentence fit for an API error or a dead-letter reason; it never repeats the URL,
which may carry the receiver's own token in its query string.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, SecretStr

# Long enough for any real endpoint with a token in its query; short enough that a URL cannot be used to
# smuggle a payload into every retry of a webhook (browsers and proxies commonly stop near 2 KiB too).
MAX_CALLBACK_URL_LENGTH: Final = 2048

# Plain http is accepted only to these hosts, and only where the caller allows it (the embedded mode, where
# a developer's receiver runs on the same machine): anywhere else the signed summary would cross a network
# in clear text.
LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


# The headers of a webhook POST. The signature covers the body only; the body carries its own eventId and
# sentAt, so they are signed too (the X-Event-* headers repeat them for routing without parsing).
H_SIGNATURE: Final = "X-Signature"
H_EVENT_ID: Final = "X-Event-Id"
H_EVENT_TYPE: Final = "X-Event-Type"
SIGNATURE_PREFIX: Final = "sha256="

# As for the gateway's JWT key: shorter HMAC keys can be guessed offline from one signed body.
MIN_WEBHOOK_SECRET_BYTES: Final = 32


def _empty_is_unset(value: object) -> object:
    # `WEBHOOK_SECRET=` (an empty variable, a template's empty default) means "not configured".
    return None if isinstance(value, str) and not value.strip() else value


def _long_enough(value: SecretStr | None) -> SecretStr | None:
    # A short key is guessable offline from one signed body; refusing to start beats signing weakly.
    if value is not None and len(value.get_secret_value().encode()) < MIN_WEBHOOK_SECRET_BYTES:
        raise ValueError(f"WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes")
    return value


WebhookSecret = Annotated[SecretStr | None, BeforeValidator(_empty_is_unset), AfterValidator(_long_enough)]
"""A settings field holding the webhook signing key: empty is unset, shorter than 32 bytes is refused."""


def sign(secret: bytes, body: bytes) -> str:
    """The X-Signature value of `body`: "sha256=" and the hex HMAC-SHA256 of its exact bytes."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, body: bytes, signature: str) -> bool:
    """Whether `signature` (an X-Signature value) is `body`'s, compared in constant time."""
    return hmac.compare_digest(sign(secret, body).encode(), signature.encode())


def callback_url_problem(url: str, *, allow_local_http: bool) -> str | None:
    """Why `url` is not an acceptable callback URL, or None when it is: https with a host, no user info
    (credentials in a URL end up in logs and proxies), at most MAX_CALLBACK_URL_LENGTH characters, no
    whitespace or control characters; plain http only to localhost/127.0.0.1/::1 when `allow_local_http`."""
    if not url:
        return "the callback URL is empty"
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        return f"the callback URL is longer than {MAX_CALLBACK_URL_LENGTH} characters"
    # urlsplit silently drops some of these (tabs, newlines), so the URL sent would not be the one checked.
    if any(char.isspace() or not char.isprintable() for char in url):
        return "the callback URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        return "the callback URL is not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return "the callback URL must use https"
    if "@" in parts.netloc:
        return "the callback URL must not contain user info (user:password@)"
    host = parts.hostname or ""
    if not host:
        return "the callback URL has no host"
    if scheme == "http" and not (allow_local_http and host in LOCAL_HOSTS):
        if allow_local_http:
            return "the callback URL must use https (http only to localhost, 127.0.0.1 or ::1)"
        return "the callback URL must use https"
    return None
