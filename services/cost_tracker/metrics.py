"""The cost-tracker's instruments: money recorded, calls priced without a price of their own, and the cost of
each ended workflow (the workflow_cost histogram). Money is converted to float only here: a metric is an
approximation, the ledger is the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from opentelemetry.metrics import Counter, Histogram, Meter

from libs.telemetry import constants as tc
from libs.telemetry.metrics import cached_instruments

METRIC_COST_RECORDED = "cost_recorded_usd"
METRIC_UNPRICED_CALLS = "cost_unpriced_calls"
METRIC_ATTR_MODEL = "model"  # a model name: bounded by the deployments in use


@dataclass(frozen=True)
class CostMetrics:
    recorded: Counter  # USD; attrs: provider
    unpriced: Counter  # calls of a model without a price; attrs: provider, model
    workflow_cost: Histogram  # USD per ended workflow; attrs: provider

    @classmethod
    def from_meter(cls, meter: Meter) -> CostMetrics:
        return cls(
            recorded=meter.create_counter(METRIC_COST_RECORDED, unit="{USD}", description="LLM cost recorded"),
            unpriced=meter.create_counter(
                METRIC_UNPRICED_CALLS,
                unit="{call}",
                description="Calls of a model without a price, priced at their provider's rate",
            ),
            workflow_cost=meter.create_histogram(
                tc.METRIC_WORKFLOW_COST,
                unit="{USD}",
                description="LLM cost of one workflow",
                explicit_bucket_boundaries_advisory=tc.COST_BUCKETS_USD,
            ),
        )

    def record(self, *, provider: str, model: str, cost_usd: Decimal, priced: bool) -> None:
        self.recorded.add(float(cost_usd), {tc.METRIC_ATTR_PROVIDER: provider})
        if not priced:
            self.unpriced.add(1, {tc.METRIC_ATTR_PROVIDER: provider, METRIC_ATTR_MODEL: model})

    def record_workflow_cost(self, *, provider: str, cost_usd: Decimal) -> None:
        """The cost of one ended workflow, under the provider of its latest call."""
        self.workflow_cost.record(float(cost_usd), {tc.METRIC_ATTR_PROVIDER: provider})


get_cost_metrics = cached_instruments(CostMetrics.from_meter)
"""The process's cost instruments, created on first use from the global meter."""
