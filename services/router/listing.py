"""The workflow list (workflow.list.query): which workflows a requester sees, the filters, and the page cursor.

Who sees what — the same rule as an operator's cancel and retry (control.may_act): an admin sees every
workflow; anyone else the workflows they started (`user_id`) and those sent from an account their token
names (`sends_as` in `accounts`). The `account_id` filter is on `sends_as` too: a workflow stored without
an account (NULL) is sent from its user's own id, so filtering by "alice" finds alice's own workflows
without an account as well as everyone's with account "alice" (that the requester may see).

Newest first, by (created_at, workflow_id) descending; the cursor is where the previous page ended, as
urlsafe base64 (no padding) of "<created_at ISO 8601>|<workflow_id>". Opaque to clients: only a string this
module wrote decodes; anything else is InvalidCursor (the gateway's 400 invalid_parameter).

`WorkflowFilter.matches` is the rule in Python (MemoryStore); pg_sql.list_workflows says the same in SQL.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from contracts.enums import IntentType, WorkflowStatus
from contracts.messages import WorkflowListItem, WorkflowListQuery
from services.router.errors import RouterError
from services.router.state import Workflow

_SEPARATOR = "|"


class InvalidCursor(RouterError, ValueError):
    """A list cursor that is not one this router wrote."""


@dataclass(frozen=True, slots=True)
class Keyset:
    """A position in the list: the last workflow of a page (the next page starts after it)."""

    created_at: datetime
    workflow_id: uuid.UUID

    def encode(self) -> str:
        text = f"{self.created_at.isoformat()}{_SEPARATOR}{self.workflow_id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Keyset:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            created, workflow = raw.split(_SEPARATOR)
            keyset = cls(datetime.fromisoformat(created), uuid.UUID(workflow))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidCursor("cursor is not one of this list's cursors") from exc
        if keyset.created_at.tzinfo is None or keyset.encode() != cursor:
            # Only what encode wrote: a hand-made variant (padding, another spelling) is not a position we gave.
            raise InvalidCursor("cursor is not one of this list's cursors")
        return keyset

    @classmethod
    def of(cls, workflow: Workflow) -> Keyset:
        return cls(workflow.created_at, workflow.workflow_id)


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    """What one page of the list selects: the requester's visibility, the filters, and where it starts."""

    user_id: str
    is_admin: bool = False
    accounts: tuple[str, ...] = ()
    status: WorkflowStatus | None = None
    account_id: str | None = None  # the workflows' `sends_as`
    intent_type: IntentType | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    after: Keyset | None = None  # None: the first page

    @classmethod
    def of(cls, query: WorkflowListQuery) -> WorkflowFilter:
        """The query's filter (raises InvalidCursor for a cursor that does not decode)."""
        requester = query.requester
        return cls(
            user_id=requester.user_id,
            is_admin=requester.is_admin,
            accounts=tuple(requester.accounts),
            status=query.status,
            account_id=query.account_id,
            intent_type=query.intent_type,
            created_from=query.created_from,
            created_to=query.created_to,
            after=Keyset.decode(query.cursor) if query.cursor is not None else None,
        )

    def visible(self, workflow: Workflow) -> bool:
        return self.is_admin or workflow.user_id == self.user_id or workflow.sends_as in self.accounts

    def matches(self, workflow: Workflow) -> bool:
        """Visible to the requester, through every filter, and after the cursor."""
        after = self.after
        return (
            self.visible(workflow)
            and (self.status is None or workflow.status is self.status)
            and (self.account_id is None or workflow.sends_as == self.account_id)
            and (self.intent_type is None or workflow.intent.type is self.intent_type)
            and (self.created_from is None or workflow.created_at >= self.created_from)
            and (self.created_to is None or workflow.created_at < self.created_to)
            and (after is None or (workflow.created_at, workflow.workflow_id) < (after.created_at, after.workflow_id))
        )


def sort_key(workflow: Workflow) -> tuple[datetime, uuid.UUID]:
    """The list's order, descending: newest first, ties by workflow id (as PostgreSQL compares uuids)."""
    return workflow.created_at, workflow.workflow_id


def list_item(workflow: Workflow) -> WorkflowListItem:
    return WorkflowListItem(
        workflow_id=workflow.workflow_id,
        user_id=workflow.user_id,
        account_id=workflow.account_id,
        status=workflow.status,
        intent_type=workflow.intent.type,
        priority=workflow.intent.priority,
        deliveries=workflow.tally.counts() if workflow.tally.total else None,
        error=workflow.error,
        retry_of=workflow.retry_of,
        trace_id=workflow.trace_id,
        created_at=workflow.created_at,
        updated_at=workflow.updated_at,
        completed_at=workflow.completed_at,
    )
