"""A user's own alert destinations: where the alerts of their scope go besides the alert list.

A user reads and replaces their own (an admin anyone's, naming `userId`). The webhook URL is checked as the
router checks callback URLs (libs.callbacks: https, no credentials; plain http to localhost only where
WEBHOOK_ALLOW_LOCAL_HTTP allows it) when it is set, and again before each POST (channels.py).
"""

from __future__ import annotations

from datetime import datetime

from contracts import costs as cc
from libs.callbacks import callback_url_problem
from services.cost_tracker.errors import Forbidden, InvalidParameter
from services.cost_tracker.model import AlertDestination, Requester
from services.cost_tracker.store import CostStore


class Destinations:
    def __init__(self, store: CostStore, *, allow_local_http: bool) -> None:
        self._store = store
        self._allow_local_http = allow_local_http

    async def get(self, who: Requester, user_id: str | None) -> cc.AlertDestination:
        whose = _whose(who, user_id)
        found = await self._store.destination(whose)
        return destination_view(found or AlertDestination(whose, None, None, None))

    async def put(
        self, who: Requester, user_id: str | None, email: str | None, webhook_url: str | None, now: datetime
    ) -> cc.AlertDestination:
        whose = _whose(who, user_id)
        if webhook_url is not None:
            problem = callback_url_problem(webhook_url, allow_local_http=self._allow_local_http)
            if problem is not None:
                raise InvalidParameter(problem.replace("callback URL", "webhook URL"))
        stored = await self._store.put_destination(AlertDestination(whose, email, webhook_url, now))
        return destination_view(stored)


def _whose(who: Requester, user_id: str | None) -> str:
    if user_id is None or user_id == who.user_id:
        return who.user_id
    if not who.is_admin:
        raise Forbidden("only an admin may see or set another user's alert destinations")
    return user_id


def destination_view(d: AlertDestination) -> cc.AlertDestination:
    return cc.AlertDestination(user_id=d.user_id, email=d.email, webhook_url=d.webhook_url, updated_at=d.updated_at)
