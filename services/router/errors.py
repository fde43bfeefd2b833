"""Exceptions raised by the router.

::

    RouterError                  base of everything the router raises on purpose
    ├── IllegalTransition        a state change the state machine does not allow (never silently applied)
    ├── ConcurrentUpdate         other handlers kept moving the workflow between our read and our write;
    │                            the bus redelivers the message and it is handled again from scratch
    ├── FallbackConfigError      ROUTER_FALLBACK_MATRIX names an unknown scenario or target
    └── Unhealthy                a health report's failure: a provider's circuit is not closed, the
                                 orchestrator holds work or lost a background task

Database failures are libs.storage.DatabaseError, translated from asyncpg at the store's boundary
(services/router/pg_store.py); the bus redelivers the message when they are transient.
"""

from __future__ import annotations

import uuid


class RouterError(Exception):
    """Base class of the router's own errors."""


class IllegalTransition(RouterError):
    """A workflow was asked to move to a status its current status does not lead to."""

    def __init__(self, workflow_id: uuid.UUID, from_status: str, to_status: str, event: str) -> None:
        super().__init__(f"workflow {workflow_id}: {event} cannot move {from_status} → {to_status}")
        self.workflow_id = workflow_id
        self.from_status = from_status
        self.to_status = to_status
        self.event = event


class ConcurrentUpdate(RouterError):
    """The workflow's version kept changing under us."""


class FallbackConfigError(RouterError, ValueError):
    """The fallback matrix configuration is invalid."""


class Unhealthy(RouterError):
    """A health report's failure (services.router.service: azureProvider, openaiProvider, orchestrator)."""
