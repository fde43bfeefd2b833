"""The cost requests' handlers (contracts.costs): decide whose costs the requester may see, run the report
or the management operation, and answer the request's typed reply.

The requests arrive validated (the contract declares every parameter's type and range); what is left here
are the rules that need the clock or the requester: a range's defaults and length, and who may see what. A
user's requests are about their own costs: `user_id` naming someone else is refused (forbidden); an admin's
`user_id` filters, and without it they see everyone's. A refusal answers the reply with `code`
(invalid_parameter, forbidden, not_found) and `error`, which the gateway turns into the HTTP status.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from contracts import Envelope, Message
from contracts import costs as cc
from contracts.enums import CostPeriod
from contracts.ids import is_user_id
from libs.bus import Handler
from libs.telemetry import get_logger
from services.cost_tracker.auto_optimize import AutoOptimizer
from services.cost_tracker.constants import ALERT_NAMESPACE
from services.cost_tracker.destinations import Destinations
from services.cost_tracker.errors import Forbidden, InvalidParameter, QueryRefused
from services.cost_tracker.experiments import ExperimentDesk
from services.cost_tracker.limits import Clock, utcnow
from services.cost_tracker.manage import Management, ThresholdSpec
from services.cost_tracker.model import AlertFilter, Requester, Severity, ThresholdAction, midnight, period_start
from services.cost_tracker.policies import Policies
from services.cost_tracker.reports import Reports

log = get_logger(__name__)

# One request, answered: the requester (checked), the request and its envelope (a redelivery's id is the same).
Answer = Callable[[Requester, Any, Envelope], Awaitable[BaseModel]]


class Queries:
    def __init__(
        self,
        reports: Reports,
        management: Management,
        destinations: Destinations,
        policies: Policies,
        experiments: ExperimentDesk,
        auto: AutoOptimizer,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._reports = reports
        self._manage = management
        self._destinations = destinations
        self._policies = policies
        self._experiments = experiments
        self._auto = auto
        self._clock = clock
        self._answers: dict[type[cc.CostRequest], Answer] = {
            cc.CostStatsQuery: self._stats,
            cc.CostBreakdownQuery: self._breakdown,
            cc.WorkflowCostQuery: self._workflow,
            cc.CampaignCostsQuery: self._campaigns,
            cc.ThresholdsQuery: self._thresholds,
            cc.ThresholdCreate: self._create_threshold,
            cc.ThresholdUpdate: self._update_threshold,
            cc.AlertsQuery: self._alerts,
            cc.AlertCreate: self._create_alert,
            cc.AlertUpdate: self._update_alert,
            cc.AlertDestinationQuery: self._destination,
            cc.AlertDestinationUpdate: self._put_destination,
            cc.CostForecastQuery: self._forecast,
            cc.CostOptimizationQuery: self._optimization,
            cc.PolicyApply: self._apply_policy,
            cc.PolicyRevert: self._revert_policy,
            cc.PoliciesQuery: self._policies_list,
            cc.AutoOptimizeQuery: self._auto_get,
            cc.AutoOptimizeUpdate: self._auto_set,
            cc.ExperimentCreate: self._create_experiment,
            cc.ExperimentsQuery: self._experiment_list,
            cc.ExperimentResultsQuery: self._experiment_results,
            cc.ExperimentStop: self._stop_experiment,
        }
        assert set(self._answers) == set(cc.COST_REQUESTS), "every cost request needs its answer"

    def handlers(self) -> dict[str, Handler]:
        """The bus handlers: one per cost request type."""
        return {request.TYPE: self.on_request for request in cc.COST_REQUESTS}

    async def on_request(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        assert isinstance(request, cc.CostRequest)
        who = Requester(request.requester.user_id, request.requester.is_admin)
        try:
            if not is_user_id(who.user_id):
                raise InvalidParameter("the requester is not a valid user id")
            data = await self._answers[type(request)](who, request, envelope)
        except QueryRefused as exc:
            log.info("cost.query.refused", type=request.TYPE, code=exc.code, reason=str(exc))
            return request.REPLY(code=exc.code, error=str(exc))
        return request.REPLY(data=data)

    # --- reports -------------------------------------------------------------------------------------------

    async def _stats(self, who: Requester, q: cc.CostStatsQuery, _: Envelope) -> BaseModel:
        return await self._reports.stats(_whose(who, q.user_id), self._clock())

    async def _breakdown(self, who: Requester, q: cc.CostBreakdownQuery, _: Envelope) -> BaseModel:
        start, end = self._range(q)
        return await self._reports.breakdown(_whose(who, q.user_id), start, end, q.group_by, q.split_by)

    async def _workflow(self, who: Requester, q: cc.WorkflowCostQuery, _: Envelope) -> BaseModel:
        return await self._reports.campaign(_whose(who, q.user_id), q.workflow_id)

    async def _campaigns(self, who: Requester, q: cc.CampaignCostsQuery, _: Envelope) -> BaseModel:
        start, end = self._range(q)
        return await self._reports.campaigns(_whose(who, q.user_id), start, end, q.limit)

    async def _forecast(self, who: Requester, q: cc.CostForecastQuery, _: Envelope) -> BaseModel:
        return await self._reports.forecast(_whose(who, q.user_id), q.lookback_days, self._clock())

    async def _optimization(self, who: Requester, q: cc.CostOptimizationQuery, _: Envelope) -> BaseModel:
        return await self._reports.optimization(_whose(who, q.user_id), q.lookback_days, self._clock())

    # --- management ----------------------------------------------------------------------------------------

    async def _thresholds(self, who: Requester, q: cc.ThresholdsQuery, _: Envelope) -> BaseModel:
        return await self._manage.thresholds(who, _whose(who, q.user_id), q.period, q.enabled)

    async def _create_threshold(self, who: Requester, q: cc.ThresholdCreate, envelope: Envelope) -> BaseModel:
        threshold_id = uuid.uuid5(ALERT_NAMESPACE, f"threshold|{envelope.id}")  # a redelivery: the same one
        return await self._manage.create_threshold(
            who, threshold_id, q.user_id, q.is_global, _spec(q), self._clock(), provider=q.provider
        )

    async def _update_threshold(self, who: Requester, q: cc.ThresholdUpdate, _: Envelope) -> BaseModel:
        return await self._manage.update_threshold(who, q.threshold_id, _spec(q), self._clock())

    async def _alerts(self, who: Requester, q: cc.AlertsQuery, _: Envelope) -> BaseModel:
        user_id = _whose(who, q.user_id)
        where = AlertFilter(
            scope_user_id=user_id,
            only_scope=user_id is not None,
            severity=Severity(q.severity) if q.severity else None,
            acknowledged=q.acknowledged,
            start=q.start,
            end=q.end,
            limit=q.limit,
        )
        return await self._manage.alerts(who, where)

    async def _create_alert(self, who: Requester, q: cc.AlertCreate, envelope: Envelope) -> BaseModel:
        return await self._manage.raise_manual(
            who, envelope.id, q.user_id, CostPeriod(q.period), q.limit_usd, Severity(q.severity), q.message,
            q.notification_channels, self._clock(),
        )  # fmt: skip

    async def _update_alert(self, who: Requester, q: cc.AlertUpdate, _: Envelope) -> BaseModel:
        return await self._manage.acknowledge(who, q.alert_id, q.acknowledged, self._clock())

    async def _destination(self, who: Requester, q: cc.AlertDestinationQuery, _: Envelope) -> BaseModel:
        return await self._destinations.get(who, q.user_id)

    async def _put_destination(self, who: Requester, q: cc.AlertDestinationUpdate, _: Envelope) -> BaseModel:
        return await self._destinations.put(who, q.user_id, q.email, q.webhook_url, self._clock())

    async def _apply_policy(self, who: Requester, q: cc.PolicyApply, envelope: Envelope) -> BaseModel:
        return await self._policies.apply(who, envelope.id, q.recommendation_id, q.lookback_days, self._clock())

    async def _revert_policy(self, who: Requester, q: cc.PolicyRevert, _: Envelope) -> BaseModel:
        return await self._policies.revert(who, q.policy_id, self._clock())

    async def _policies_list(self, who: Requester, q: cc.PoliciesQuery, _: Envelope) -> BaseModel:
        return await self._policies.list()

    async def _auto_get(self, who: Requester, q: cc.AutoOptimizeQuery, _: Envelope) -> BaseModel:
        return await self._auto.get(who)

    async def _auto_set(self, who: Requester, q: cc.AutoOptimizeUpdate, _: Envelope) -> BaseModel:
        return await self._auto.update(who, q)

    async def _create_experiment(self, who: Requester, q: cc.ExperimentCreate, envelope: Envelope) -> BaseModel:
        return await self._experiments.create(who, envelope.id, q, self._clock())

    async def _experiment_list(self, who: Requester, q: cc.ExperimentsQuery, _: Envelope) -> BaseModel:
        return await self._experiments.list(who)

    async def _experiment_results(self, who: Requester, q: cc.ExperimentResultsQuery, _: Envelope) -> BaseModel:
        return await self._experiments.results(who, q.experiment_id)

    async def _stop_experiment(self, who: Requester, q: cc.ExperimentStop, _: Envelope) -> BaseModel:
        return await self._experiments.stop(who, q.experiment_id, q.promote_arm, self._clock())

    def _range(self, q: cc.RangeRequest) -> tuple[datetime, datetime]:
        """[start, end): by default from the start of this month to now; at most cc.MAX_RANGE_DAYS long."""
        now = self._clock()
        end = q.end or now
        start = q.start or midnight(period_start(CostPeriod.MONTHLY, min(end, now)))
        if start >= end:
            raise InvalidParameter("start must be before end")
        if end - start > timedelta(days=cc.MAX_RANGE_DAYS):
            raise InvalidParameter(f"the range may span at most {cc.MAX_RANGE_DAYS} days")
        return start, end


def _spec(q: cc.ThresholdCreate | cc.ThresholdUpdate) -> ThresholdSpec:
    return ThresholdSpec(
        period=q.period,
        limit_usd=q.limit_usd,
        severity=Severity(q.severity) if q.severity else None,
        action=ThresholdAction(q.action) if q.action else None,
        channels=q.notification_channels,
        enabled=q.enabled,
        name=q.name,
    )


def _whose(who: Requester, user_id: str | None) -> str | None:
    """Whose costs the query is about: the requester's own, or (an admin) the named user's or everyone's."""
    if who.is_admin:
        return user_id
    if user_id is not None and user_id != who.user_id:
        raise Forbidden("only an admin may see other users' costs")
    return who.user_id
