"""Optimization recommendations computed from the recorded history (never canned advice).

- `switch_provider`: for each workflow type and provider it ran on, what the same tokens would have cost on
  the other provider, priced at that provider's most-used model in the history (or its rate in the price
  table when it has no history). A positive difference is the saving of routing that type there.
- `price_missing`: calls of a model without a price entry, priced at their provider's rate: the figures are
  estimates until the price table names the model.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from decimal import Decimal

from contracts.costs import Recommendation
from contracts.enums import IntentType, Provider
from services.cost_tracker.constants import OPTIMIZATION_MIN_SAVING_USD, PERCENT_QUANTUM, RECOMMENDATION_NAMESPACE
from services.cost_tracker.model import Group
from services.cost_tracker.prices import Price, PriceTable

ZERO = Decimal(0)


def recommend(groups: Sequence[Group], prices: PriceTable, lookback_days: int) -> list[Recommendation]:
    """Recommendations from `groups` keyed (workflow type, provider, model), the largest saving first."""
    used: dict[Provider, Counter[str]] = defaultdict(Counter)
    by_type: dict[tuple[IntentType, Provider], list[Group]] = defaultdict(list)
    for group in groups:
        workflow_type, provider, model = group.keys
        used[Provider(provider)][model] += group.calls
        by_type[(IntentType(workflow_type), Provider(provider))].append(group)

    def target(provider: Provider) -> tuple[Price, str | None]:
        if used[provider]:
            model = used[provider].most_common(1)[0][0]
            return prices.quote(provider, model).price, model
        return prices.provider_rate(provider), None

    found: list[Recommendation] = []
    for (workflow_type, provider), members in sorted(by_type.items()):
        current = sum((g.cost_usd for g in members), ZERO)
        for other in Provider:
            if other is provider:
                continue
            price, target_model = target(other)
            projected = sum((price.cost(g.prompt_tokens, g.completion_tokens) for g in members), ZERO)
            saving = current - projected
            if saving < OPTIMIZATION_MIN_SAVING_USD:
                continue
            share = _percent(saving, current)
            on = f" ({target_model})" if target_model else ""
            found.append(
                Recommendation(
                    id=recommendation_id("switch_provider", workflow_type, provider, other, target_model),
                    kind="switch_provider",
                    workflow_type=workflow_type,
                    from_provider=provider,
                    to_provider=other,
                    model=target_model,
                    requests=sum(g.calls for g in members),
                    current_cost=current,
                    projected_cost=projected,
                    estimated_saving=saving,
                    saving_percent=share,
                    description=(
                        f"{workflow_type.value} on {provider.value} cost ${current} in the last {lookback_days} "
                        f"days; the same tokens on {other.value}{on} would have cost ${projected} "
                        f"(save ${saving}, {share}%)"
                    ),
                )
            )
    found.extend(_unpriced(groups))
    return sorted(found, key=lambda r: (-r.estimated_saving, r.kind, r.description))


def _unpriced(groups: Sequence[Group]) -> list[Recommendation]:
    estimated: dict[tuple[Provider, str], tuple[Decimal, int]] = {}
    for group in groups:
        if group.estimated_cost_usd > 0:
            key = (Provider(group.keys[1]), group.keys[2])
            cost, calls = estimated.get(key, (ZERO, 0))
            estimated[key] = (cost + group.estimated_cost_usd, calls + group.calls)
    return [
        Recommendation(
            id=recommendation_id("price_missing", None, provider, None, model),
            kind="price_missing",
            from_provider=provider,
            model=model,
            requests=calls,
            current_cost=cost,
            projected_cost=cost,
            estimated_saving=ZERO,
            saving_percent=ZERO,
            description=(
                f"model {model} on {provider.value} has no price entry: {calls} calls were priced at the "
                f"provider's rate (${cost}); add it to the price table (COST_PRICES) for exact costs"
            ),
        )
        for (provider, model), (cost, calls) in sorted(estimated.items())
    ]


def recommendation_id(
    kind: str, workflow_type: IntentType | None, source: Provider | None, target: Provider | None, model: str | None
) -> uuid.UUID:
    parts = (kind, workflow_type, source, target, model)
    return uuid.uuid5(RECOMMENDATION_NAMESPACE, "|".join("" if p is None else str(p) for p in parts))


def _percent(part: Decimal, whole: Decimal) -> Decimal:
    return (part * 100 / whole).quantize(PERCENT_QUANTUM) if whole else ZERO
