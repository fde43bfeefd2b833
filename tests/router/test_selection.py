"""The first attempt's provider: the original plan's preferences, force_provider, budgets and open circuits."""

from __future__ import annotations

import pytest

from contracts.enums import IntentType, Provider
from contracts.messages import Intent
from services.router.breaker import Breakers
from services.router.selection import preferred_provider, select_provider
from tests.router.test_breaker import Clock


def breakers(clock: Clock, *open_: Provider) -> Breakers:
    group = Breakers(failure_threshold=1, open_s=10, probe_timeout_s=60, clock=clock)
    for provider in open_:
        group[provider].record_failure()
    return group


class TestSelection:
    @pytest.mark.parametrize(
        ("intent", "provider"),
        [
            (Intent(type=IntentType.CONTENT_PLANNING), Provider.AZURE),
            (Intent(type=IntentType.MESSAGE_GENERATION), Provider.OPENAI),
            (Intent(type=IntentType.CONTENT_VALIDATION), Provider.OPENAI),
            (Intent(type=IntentType.CAMPAIGN_EXECUTION), Provider.OPENAI),
            (Intent(type=IntentType.CAMPAIGN_EXECUTION, platforms=["a", "b"]), Provider.AZURE),
            (Intent(type=IntentType.CONTENT_VALIDATION, requires_multi_platform=True), Provider.AZURE),
            (Intent(type=IntentType.MESSAGE_GENERATION, platforms=["a"]), Provider.OPENAI),
        ],
    )
    def test_seed_preferences(self, intent: Intent, provider: Provider) -> None:
        """azure for planning and multi-platform work, openai for the rest."""
        assert preferred_provider(intent).provider is provider

    def test_open_circuit_is_avoided(self) -> None:
        """With the preferred provider's circuit open, the other one is chosen, and the reason says so."""
        chosen = select_provider(Intent(type=IntentType.CONTENT_PLANNING), breakers(Clock(), Provider.AZURE))
        assert chosen.provider is Provider.OPENAI and chosen.reason == "circuit_open:azure"

    def test_both_open_uses_the_preferred(self) -> None:
        """With both circuits open, the preferred provider is used anyway."""
        chosen = select_provider(Intent(type=IntentType.CONTENT_PLANNING), breakers(Clock(), *Provider))
        assert chosen.provider is Provider.AZURE

    def test_force_provider_ignores_an_open_circuit(self) -> None:
        """force_provider wins even over an open circuit."""
        intent = Intent(type=IntentType.MESSAGE_GENERATION, force_provider=Provider.AZURE)
        assert select_provider(intent, breakers(Clock(), Provider.AZURE)).provider is Provider.AZURE

    def test_downgrade_beats_force_provider(self) -> None:
        """A budget downgrade sends even a forced azure request to openai."""
        intent = Intent(type=IntentType.CONTENT_PLANNING, force_provider=Provider.AZURE)
        chosen = select_provider(intent, breakers(Clock()), downgrade=True)
        assert chosen.provider is Provider.OPENAI and chosen.reason == "budget_downgrade"
