"""What a command can fail with, each printed as one line by services.cli.main.

    CommandError            the command could not do its job (exit 1): the gateway is unreachable, SQS refused
    └── HttpError           the gateway answered an error: `<status> <code>: <message>` (exit 1)

A configuration mistake is libs.config.ConfigError (exit 2), as at a service's start.
"""

from __future__ import annotations


class CommandError(Exception):
    """The command could not do its job; the message says why in one line."""


class HttpError(CommandError):
    """The gateway answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")
