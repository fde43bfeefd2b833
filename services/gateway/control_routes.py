"""The cancel and retry endpoints' entries in the route table (routes.ROUTES includes CONTROL_ROUTES):
handlers "control.cancel" / "control.retry" of services.gateway.control.ControlEndpoints."""

from __future__ import annotations

from services.gateway import constants as c
from services.gateway.control import ControlEndpoints
from services.gateway.openapi import Param, Reply, RouteDoc
from services.gateway.replies import UNAUTHORIZED
from services.gateway.schemas import CancelResponse, ErrorResponse, RetryResponse

_WORKFLOW_ID = Param("workflowId", "query", "the workflow", {"type": "string", "format": "uuid"}, True)
_WHO = (
    "The workflow's owner, a user whose token's `accounts` claim names the workflow's account, or an admin "
    "(someone else: 403)."
)
_COMMON = {
    400: Reply("invalid_parameter: workflowId missing or not a UUID", ErrorResponse),
    401: UNAUTHORIZED,
    403: Reply("forbidden: the workflow is neither yours nor of an account in your token", ErrorResponse),
    404: Reply("not_found: no such workflow", ErrorResponse),
    502: Reply("bad_gateway: the router answered something unexpected", ErrorResponse),
    503: Reply("unavailable: the bus or the router did not answer", ErrorResponse, ("Retry-After",)),
}

CANCEL = RouteDoc(
    method="POST",
    path=c.PATH_CANCEL,
    handler=ControlEndpoints.cancel,
    operation_id="cancelWorkflow",
    summary="Cancel a workflow: nothing more is generated or sent for it",
    description=(
        "Every delivery not yet sent is cancelled in the same write as the workflow, and the of-sender sends "
        "none of them from then on — including deliveries already given a slot. `sentBefore` counts the "
        "deliveries sent before the cancel; a send already under way at that moment may still complete, and "
        "then counts as sent (never as cancelled). Cancelling twice answers 409 the second time. " + _WHO
    ),
    params=(_WORKFLOW_ID,),
    replies={
        200: Reply("cancelled: the workflow as it is now and how many were sent before", CancelResponse),
        **_COMMON,
        409: Reply("already_finished: the workflow had ended (completed, failed or cancelled)", ErrorResponse),
    },
    tags=("campaigns",),
)

RETRY = RouteDoc(
    method="POST",
    path=c.PATH_RETRY,
    handler=ControlEndpoints.retry,
    operation_id="retryWorkflow",
    summary="Start a failed workflow again, as a new workflow linked to it",
    description=(
        "The new workflow has its own id (answered, with `retryOf`), the same intent, account and callback "
        "URL and, for a campaign, only the fans not sent. Its id is derived from the failed one's, so retrying "
        "twice answers the same new workflow; to try again after it failed too, retry the new one. " + _WHO
    ),
    params=(_WORKFLOW_ID,),
    replies={
        202: Reply("the new workflow was accepted", RetryResponse, ("Location",)),
        **_COMMON,
        402: Reply("cost_limit_exceeded: the owner's budget blocks new workflows", ErrorResponse),
        409: Reply("not_failed: only a failed workflow can be retried", ErrorResponse),
    },
    tags=("campaigns",),
)

CONTROL_ROUTES = (CANCEL, RETRY)
