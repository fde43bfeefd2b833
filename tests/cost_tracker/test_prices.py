"""The price table: exact decimal prices per provider and model, environment overrides, and no free calls."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from contracts.enums import Provider
from services.cost_tracker import price_source
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
    def test_the_default_deployments_cost_their_list_prices(self) -> None:
        """gpt-4o-mini costs $0.15/$0.60 per million prompt/completion tokens, gpt-4 $30/$60, exactly."""
        table = load_price_table(DEFAULT_PRICE_FILE)
        mini = table.quote(Provider.OPENAI, "gpt-4o-mini")
        gpt4 = table.quote(Provider.AZURE, "gpt-4")
        assert (mini.known, mini.entry, gpt4.known, gpt4.entry) == (True, "gpt-4o-mini", True, "gpt-4")
        # 1,000 x $0.15/1M + 500 x $0.60/1M; 1,000 x $30/1M + 500 x $60/1M
        assert mini.price.cost(1000, 500) == Decimal("0.00045")
        assert gpt4.price.cost(1000, 500) == Decimal("0.06")

    def test_cached_prompt_tokens_cost_the_cached_rate(self) -> None:
        """Of 1,000 prompt tokens 800 served from the cache: 200 x $0.15/1M + 800 x $0.075/1M + 500 x $0.60/1M."""
        quote = load_price_table(DEFAULT_PRICE_FILE).quote(Provider.OPENAI, "gpt-4o-mini-2024-07-18")
        assert quote.price.cost(1000, 500, cached_prompt_tokens=800) == Decimal("0.00039")

    def test_every_entry_names_its_source_and_date(self) -> None:
        """Each model's prices say where they come from (genai-prices and its version) and when."""
        table = load_price_table(DEFAULT_PRICE_FILE)
        assert len(table.models) > 50
        for name, price in table.models.items():
            assert price.source.startswith("genai-prices "), name
            assert price.as_of is not None, name

    def test_the_generator_writes_the_file_as_committed(self, tmp_path: Path) -> None:
        """`make prices` on the committed date reproduces prices.toml (nobody hand-edited the generated entries)."""
        pytest.importorskip("genai_prices")
        as_of = next(iter(load_price_table(DEFAULT_PRICE_FILE).models.values())).as_of
        out = tmp_path / "prices.toml"
        price_source.main(["--out", str(out), "--date", str(as_of)])
        assert out.read_text() == DEFAULT_PRICE_FILE.read_text()

    def test_a_model_with_its_own_entry_uses_it_on_either_provider(self) -> None:
        """gpt-4o has list prices for prompt and completion separately."""
        quote = load_price_table(DEFAULT_PRICE_FILE).quote(Provider.AZURE, "gpt-4o")
        assert (quote.entry, quote.known) == ("gpt-4o", True)
        assert quote.price.cost(1000, 1000) == Decimal("0.0125")

    def test_a_dated_snapshot_uses_its_models_entry(self) -> None:
        """gpt-4o-2024-08-06 is priced by the gpt-4o entry, not as an unknown model."""
        quote = load_price_table(DEFAULT_PRICE_FILE).quote(Provider.OPENAI, "gpt-4o-2024-08-06")
        assert (quote.entry, quote.known) == ("gpt-4o", True)

    def test_an_unknown_model_costs_its_providers_flat_rate_and_is_flagged(self) -> None:
        """A model nobody priced is never free: the original plan's flat rate applies and the quote says so."""
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
            (MINIMAL + '[models."m"]\nprompt = 1\ncompletion = 1\ncached_prompt = -0.5\n', "", "non-negative"),
            (MINIMAL + '[models."m"]\nprompt = 1\ncompletion = 1\nas_of = "yesterday"\n', "", "must be a date"),
            (MINIMAL + "[providers.bedrock]\nprompt = 1\ncompletion = 1\n", "", "not a provider"),
            (MINIMAL, "{not json", "not valid JSON"),
            (MINIMAL, '{"models": {"m": {"prompt": true, "completion": 1}}}', "must be a number"),
            ("prompt = [", "", "not valid TOML"),
        ],
    )
    def test_a_bad_table_is_refused_at_start(self, tmp_path: Path, text: str, overrides: str, complaint: str) -> None:
        """Missing providers, negative or missing prices, typos and bad syntax stop the service with a reason."""
        with pytest.raises(PriceTableError, match=complaint) as refused:
            load_price_table(write(tmp_path, text), overrides)
        assert refused.value.variable == ("COST_PRICES" if overrides else "COST_PRICE_FILE")
