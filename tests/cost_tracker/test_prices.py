"""The price table: exact decimal prices per provider and model, environment overrides, and no free calls."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from contracts.enums import Provider
from services.cost_tracker.constants import DEFAULT_PRICE_FILE
from services.cost_tracker.errors import PriceTableError
from services.cost_tracker.prices import Price, load_price_table


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return path


MINIMAL = """
[providers.azure]
prompt = 0.01
completion = 0.01
[providers.openai]
prompt = 0.002
completion = 0.002
"""


class TestDefaultTable:
    def test_seed_rates_for_the_default_deployments(self) -> None:
        """gpt-4 on azure costs the seed's $0.01/1K, gpt-4o-mini on openai $0.002/1K, exactly."""
        table = load_price_table(DEFAULT_PRICE_FILE)
        azure = table.quote(Provider.AZURE, "gpt-4")
        openai = table.quote(Provider.OPENAI, "gpt-4o-mini")
        assert (azure.known, azure.entry) == (True, "azure/gpt-4")
        assert azure.price.cost(1234, 567) == Decimal("0.01801")
        assert openai.price.cost(1234, 567) == Decimal("0.003602")

    def test_a_model_with_its_own_entry_uses_it_on_either_provider(self) -> None:
        """gpt-4o has list prices for prompt and completion separately."""
        quote = load_price_table(DEFAULT_PRICE_FILE).quote(Provider.AZURE, "gpt-4o")
        assert (quote.entry, quote.known) == ("gpt-4o", True)
        assert quote.price.cost(1000, 1000) == Decimal("0.0125")

    def test_a_dated_snapshot_uses_its_models_entry(self) -> None:
        """gpt-4o-2024-08-06 is priced by the gpt-4o entry, not as an unknown model."""
        quote = load_price_table(DEFAULT_PRICE_FILE).quote(Provider.OPENAI, "gpt-4o-2024-08-06")
        assert (quote.entry, quote.known) == ("gpt-4o", True)

    def test_an_unknown_model_costs_its_providers_rate_and_is_flagged(self) -> None:
        """A model nobody priced is never free: the provider's rate applies and the quote says so."""
        quote = load_price_table(DEFAULT_PRICE_FILE).quote(Provider.AZURE, "my-finetune-v3")
        assert (quote.entry, quote.known) == ("providers.azure", False)
        assert quote.price.cost(2000, 1000) == Decimal("0.03")


class TestLoading:
    def test_decimal_prices_are_read_exactly(self, tmp_path: Path) -> None:
        """0.1 in the file is one tenth, not the float nearest to it."""
        table = load_price_table(write(tmp_path, MINIMAL + '[models."m"]\nprompt = 0.1\ncompletion = 0.3\n'))
        assert table.quote(Provider.OPENAI, "m").price == Price(Decimal("0.1"), Decimal("0.3"))
        assert table.quote(Provider.OPENAI, "m").price.cost(3, 3) == Decimal("0.0012")

    def test_a_provider_qualified_entry_wins_over_the_bare_model(self, tmp_path: Path) -> None:
        """ "azure/m" prices m on azure only; openai falls back to the bare "m"."""
        text = MINIMAL + '[models."m"]\nprompt = 1\ncompletion = 1\n[models."azure/m"]\nprompt = 2\ncompletion = 2\n'
        table = load_price_table(write(tmp_path, text))
        assert table.quote(Provider.AZURE, "m").price.prompt_per_1k == 2
        assert table.quote(Provider.OPENAI, "m").price.prompt_per_1k == 1

    def test_environment_overrides_apply_over_the_file(self, tmp_path: Path) -> None:
        """COST_PRICES changes a provider's rate and adds a model; the rest of the file stays."""
        overrides = (
            '{"providers": {"openai": {"completion": 0.004}}, "models": {"x": {"prompt": 0.5, "completion": 1.5}}}'
        )
        table = load_price_table(write(tmp_path, MINIMAL), overrides)
        assert table.provider_rate(Provider.OPENAI) == Price(Decimal("0.002"), Decimal("0.004"))
        assert table.provider_rate(Provider.AZURE) == Price(Decimal("0.01"), Decimal("0.01"))
        assert table.quote(Provider.AZURE, "x").price == Price(Decimal("0.5"), Decimal("1.5"))

    @pytest.mark.parametrize(
        ("text", "overrides", "complaint"),
        [
            ("[providers.azure]\nprompt = 0.01\ncompletion = 0.01\n", "", "no rate for provider"),
            (MINIMAL + '[models."m"]\nprompt = -1\ncompletion = 1\n', "", "non-negative"),
            (MINIMAL + '[models."m"]\nprompt = 1\n', "", "completion is missing"),
            (MINIMAL + '[models."m"]\nprompt = 1\ncompletion = 1\ncached = 1\n', "", "unknown key"),
            (MINIMAL + "[providers.bedrock]\nprompt = 1\ncompletion = 1\n", "", "not a provider"),
            (MINIMAL, "{not json", "not valid JSON"),
            (MINIMAL, '{"models": {"m": {"prompt": true, "completion": 1}}}', "must be a number"),
            ("prompt = [", "", "not valid TOML"),
        ],
    )
    def test_a_bad_table_is_refused_at_start(self, tmp_path: Path, text: str, overrides: str, complaint: str) -> None:
        """Missing providers, negative or missing prices, typos and bad syntax stop the service with a reason."""
        with pytest.raises(PriceTableError, match=complaint):
            load_price_table(write(tmp_path, text), overrides)
