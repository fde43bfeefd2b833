"""An operator's writes on a workflow: POST /api/v2/campaigns/cancel and /retry (?workflowId=).

Who may: the workflow's owner, a user whose token's `accounts` claim names the workflow's account, or an
admin. The router decides (services/router/control.py) and answers which of not found / not yours / in the
wrong state it is: 404 / 403 / 409 here.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from aiohttp import web

from contracts import Message
from contracts.enums import ErrorType
from contracts.messages import (
    ErrorInfo,
    WorkflowCancelReply,
    WorkflowCancelRequest,
    WorkflowRetryReply,
    WorkflowRetryRequest,
)
from libs.bus import Bus
from libs.telemetry import get_logger
from services.gateway import constants as c
from services.gateway.api import parse_workflow_id
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.bus_requests import ask
from services.gateway.config import GatewaySettings
from services.gateway.errors import Conflict, Forbidden, NotFound, WorkflowError, json_response
from services.gateway.schemas import CancelData, CancelResponse, RetryData, RetryResponse, WorkflowStatusData

log = get_logger(__name__)

R = TypeVar("R", WorkflowCancelReply, WorkflowRetryReply)


class ControlEndpoints:
    """The cancel and retry handlers, bound to one gateway's bus."""

    def __init__(self, bus: Bus, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._bus = bus
        self._settings = settings
        self._verifier = verifier

    async def cancel(self, request: web.Request) -> web.Response:
        principal = self._verifier.verify(request.headers.get("Authorization"))
        workflow_id = parse_workflow_id(request.query)
        asked = WorkflowCancelRequest(workflow_id=workflow_id, requester=principal.requester())
        reply = await self._ask(asked, workflow_id, principal, WorkflowCancelReply)
        _refuse(reply.outcome, workflow_id)
        assert reply.workflow is not None
        if reply.outcome == "finished":
            raise Conflict("already_finished", f"workflow {workflow_id} already ended: {reply.workflow.status.value}")
        data = CancelData(workflow=WorkflowStatusData.of(reply.workflow), sent_before=reply.sent_before)
        log.info("gateway.workflow.cancelled", workflow_id=str(workflow_id), sent_before=reply.sent_before)
        return json_response(CancelResponse(data=data).dump())

    async def retry(self, request: web.Request) -> web.Response:
        principal = self._verifier.verify(request.headers.get("Authorization"))
        workflow_id = parse_workflow_id(request.query)
        asked = WorkflowRetryRequest(workflow_id=workflow_id, requester=principal.requester())
        reply = await self._ask(asked, workflow_id, principal, WorkflowRetryReply)
        _refuse(reply.outcome, workflow_id)
        if reply.outcome == "not_failed":
            status = reply.workflow.status.value if reply.workflow else "not failed"
            raise Conflict("not_failed", f"only a failed workflow can be retried; {workflow_id} is {status}")
        if reply.outcome == "refused" or reply.workflow is None:
            raise WorkflowError(
                reply.error
                or ErrorInfo(type=ErrorType.INVALID_REQUEST, message="the retry was refused", retryable=False)
            )
        view = reply.workflow
        log.info("gateway.workflow.retried", workflow_id=str(view.workflow_id), retry_of=str(workflow_id))
        data = RetryData(workflow_id=view.workflow_id, status=view.status, trace_id=view.trace_id, retry_of=workflow_id)
        location = f"{c.PATH_STATUS}?workflowId={view.workflow_id}"
        return json_response(RetryResponse(data=data).dump(), status=202, headers={"Location": location})

    async def _ask(self, payload: Message, workflow_id: uuid.UUID, principal: Principal, kind: type[R]) -> R:
        timeout = self._settings.gateway_request_timeout_s
        return await ask(self._bus, payload, kind, user_id=principal.user_id, timeout=timeout, workflow_id=workflow_id)


def _refuse(outcome: str, workflow_id: uuid.UUID) -> None:
    if outcome == "not_found":
        raise NotFound("not_found", f"no workflow {workflow_id}")
    if outcome == "forbidden":
        raise Forbidden("forbidden", f"workflow {workflow_id} is neither yours nor of an account in your token")
