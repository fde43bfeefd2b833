"""The price table: what one call costs, in exact decimals, and which entry said so.

    table = load_price_table(Path("prices.toml"), overrides='{"models": {"gpt-4o": {"prompt": 0.0025}}}')
    quote = table.quote(Provider.AZURE, "gpt-4o-2024-08-06")   # the "gpt-4o" entry
    quote.price.cost(prompt_tokens=1200, completion_tokens=300, cached_prompt_tokens=1000)
    # (200 x 0.0025 + 1000 x 0.00125 + 300 x 0.01) / 1000 = Decimal("0.00475")

The default table (prices.toml) holds list prices written by `make prices` from the genai-prices package
(price_source.py), each entry with its source and date. A model without an entry is priced at its
provider's flat rate and the quote says so (`known=False`): the entry is flagged (priceEstimated) and
counted, never recorded as free.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from contracts.enums import Provider
from services.cost_tracker.constants import TOKENS_PER_PRICE_UNIT
from services.cost_tracker.errors import PriceTableError

# "gpt-4o-2024-08-06", "gpt-4-0613": a dated snapshot of the model the undated entry prices.
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1,000 prompt, completion and cached prompt tokens, and where the figures come from."""

    prompt_per_1k: Decimal
    completion_per_1k: Decimal
    # None: the source publishes no cached rate, so cached prompt tokens are billed as prompt tokens.
    cached_prompt_per_1k: Decimal | None = None
    source: str = field(default="", compare=False)
    as_of: date | None = field(default=None, compare=False)

    @property
    def cached_rate(self) -> Decimal:
        return self.prompt_per_1k if self.cached_prompt_per_1k is None else self.cached_prompt_per_1k

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> Decimal:
        """The exact cost of these tokens (no rounding: tokens * price / 1000 is a finite decimal).

        `cached_prompt_tokens` are part of `prompt_tokens` (OpenAI's prompt_tokens_details.cached_tokens)."""
        cached = min(cached_prompt_tokens, prompt_tokens)
        billed = (
            (prompt_tokens - cached) * self.prompt_per_1k
            + cached * self.cached_rate
            + completion_tokens * self.completion_per_1k
        )
        return billed / TOKENS_PER_PRICE_UNIT


@dataclass(frozen=True, slots=True)
class Quote:
    price: Price
    entry: str  # the entry that priced the call: "azure/gpt-4", "gpt-4o", or "providers.azure"
    known: bool  # False: the model has no entry and was priced at its provider's rate


class PriceTable:
    def __init__(self, providers: Mapping[Provider, Price], models: Mapping[str, Price]) -> None:
        missing = [p.value for p in Provider if p not in providers]
        if missing:
            raise PriceTableError(f"the price table has no rate for provider(s) {', '.join(missing)}")
        self._providers = dict(providers)
        self._models = dict(models)

    def quote(self, provider: Provider, model: str) -> Quote:
        """The price of a call of `provider` on `model`."""
        undated = _DATE_SUFFIX.sub("", model)
        for name in dict.fromkeys((f"{provider.value}/{model}", model, f"{provider.value}/{undated}", undated)):
            price = self._models.get(name)
            if price is not None:
                return Quote(price, name, known=True)
        return Quote(self._providers[provider], f"providers.{provider.value}", known=False)

    def provider_rate(self, provider: Provider) -> Price:
        return self._providers[provider]

    @property
    def models(self) -> Mapping[str, Price]:
        return dict(self._models)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: PriceTable | None = None) -> PriceTable:
        """A table from {"providers": {name: {prompt, completion}}, "models": {name: {...}}}, entries over
        `base`'s (an override may give only one of prompt/completion of an entry `base` has)."""
        unknown = set(data) - {"providers", "models"}
        if unknown:
            raise PriceTableError(f"unknown price table section(s): {', '.join(sorted(unknown))}")
        providers = dict(base._providers) if base else {}
        models = dict(base._models) if base else {}
        for name, entry in _section(data, "providers").items():
            try:
                provider = Provider(name)
            except ValueError:
                raise PriceTableError(f"providers.{name}: not a provider ({', '.join(Provider)})") from None
            providers[provider] = _price(f"providers.{name}", entry, providers.get(provider))
        for name, entry in _section(data, "models").items():
            if not name.strip():
                raise PriceTableError("models: an entry needs a model name")
            models[name] = _price(f"models.{name}", entry, models.get(name))
        return cls(providers, models)


def load_price_table(path: Path, overrides: str = "") -> PriceTable:
    """The table of the TOML file at `path`, with the JSON `overrides` (COST_PRICES) applied over it.

    Every refusal is a PriceTableError naming the variable to blame (COST_PRICE_FILE or COST_PRICES): the
    process prints it as one line and exits 2 (libs.config.ConfigError)."""
    file_var, overrides_var = "COST_PRICE_FILE", "COST_PRICES"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        table = PriceTable.from_mapping(data)
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"cannot read the price file {path}: {exc}", file_var) from None
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{path} is not valid TOML: {exc}", file_var) from None
    except PriceTableError as exc:
        raise PriceTableError(f"{path}: {exc.problem}", file_var) from None
    if overrides.strip():
        try:
            extra = json.loads(overrides, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise PriceTableError(f"not valid JSON: {exc}", overrides_var) from None
        if not isinstance(extra, dict):
            raise PriceTableError("must be a JSON object", overrides_var)
        try:
            table = PriceTable.from_mapping(extra, base=table)
        except PriceTableError as exc:
            raise PriceTableError(exc.problem, overrides_var) from None
    return table


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, Mapping):
        raise PriceTableError(f"{name} must be a table of entries")
    return section


_ENTRY_KEYS = ("prompt", "completion", "cached_prompt", "source", "as_of")


def _price(where: str, entry: Any, base: Price | None) -> Price:
    if not isinstance(entry, Mapping):
        raise PriceTableError(f"{where} must be a table with prompt and completion")
    unknown = set(entry) - set(_ENTRY_KEYS)
    if unknown:
        raise PriceTableError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} ({', '.join(_ENTRY_KEYS)})")
    values: dict[str, Decimal] = {}
    for key in ("prompt", "completion"):
        raw = entry.get(key, getattr(base, f"{key}_per_1k") if base else None)
        if raw is None:
            raise PriceTableError(f"{where}.{key} is missing")
        values[key] = _decimal(f"{where}.{key}", raw)
    cached = entry.get("cached_prompt", base.cached_prompt_per_1k if base else None)
    source = entry.get("source", base.source if base else "")
    as_of = entry.get("as_of", base.as_of if base else None)
    if not isinstance(source, str):
        raise PriceTableError(f"{where}.source must be a string")
    if isinstance(as_of, str):
        as_of = _date(f"{where}.as_of", as_of)  # JSON (COST_PRICES) has no date type
    if as_of is not None and (not isinstance(as_of, date) or isinstance(as_of, datetime)):
        raise PriceTableError(f"{where}.as_of must be a date (2026-12-04)")
    return Price(
        values["prompt"],
        values["completion"],
        None if cached is None else _decimal(f"{where}.cached_prompt", cached),
        source=source,
        as_of=as_of,
    )


def _date(where: str, raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise PriceTableError(f"{where} must be a date (2026-12-04)") from None


def _decimal(where: str, raw: Any) -> Decimal:
    # bool is an int subclass: `prompt = true` is a mistake, not a price of one dollar.
    if isinstance(raw, bool) or not isinstance(raw, Decimal | int | str):
        raise PriceTableError(f"{where} must be a number of USD per 1K tokens")
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise PriceTableError(f"{where} must be a number of USD per 1K tokens") from None
    if not value.is_finite() or value < 0:
        raise PriceTableError(f"{where} must be a finite, non-negative number")
    return value
