"""Writes the default price table (prices.toml) from the genai-prices package: `make prices`.

    python -m services.cost_tracker.price_source [--out services/cost_tracker/prices.toml]

genai-prices (pydantic/genai-prices, MIT) is a maintained, dated collection of LLM list prices shipped with
its data inside the package, so this runs offline. It is a build-time source, not a runtime dependency: the
cost-tracker reads the vendored TOML, so every replica prices a call the same way whatever is installed, and
a price change is a reviewed diff of prices.toml (each entry names the package version and the date it was
written).

What is taken: every model of the `openai` and `azure` providers with a prompt and a completion price per
token (embeddings, speech and image-only models have none and are left out), converted from USD per million
tokens to USD per 1,000: input → prompt, output → completion, input cache read → cached_prompt. Azure's own
entries are written as "azure/<model>"; the others price either provider, as genai-prices falls back from
Azure to OpenAI's prices. A price with tiers keeps its base tier (tiers start at hundreds of thousands of
prompt tokens, far above one generation here); a price that changed over time keeps the one in force today.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

from contracts.enums import Provider
from services.cost_tracker.constants import DEFAULT_PRICE_FILE

# USD per million tokens (genai-prices) → per 1,000 (the table's unit).
_PER_1K = Decimal(1000)
# genai-prices' provider ids, in the order their entries are written; Azure's own are provider-qualified.
_PROVIDERS = {"openai": "", "azure": "azure/"}

HEADER = """\
# The price table: USD per 1,000 tokens — prompt, completion and cached prompt tokens separately.
#
# WRITTEN BY `make prices` (services/cost_tracker/price_source.py) from the genai-prices package: edit the
# generator, or override entries with COST_PRICES (JSON of the same shape), or point COST_PRICE_FILE at a
# file of your own (your contract's prices); do not hand-edit the generated entries below.
#
# Numbers are read as exact decimals (0.01 is one cent, never 0.01000000000000000020816...).
# A call of <provider> on <model> is priced by the first entry found among
#   models."<provider>/<model>", models."<model>", then both again without a date suffix
#   ("gpt-4o-2024-08-06" → "gpt-4o");
# a model found nowhere is priced at its provider's flat rate below, flagged (priceEstimated) and counted in
# the cost_unpriced_calls metric — never recorded as free.
# cached_prompt: the rate of prompt tokens the provider served from its prompt cache
# (usage.prompt_tokens_details.cached_tokens); an entry without one bills them as prompt tokens.
# source, as_of: where each figure comes from and when it was taken.
"""

# The original plan's flat rates (docs/deviations.md): only for a model with no entry (priceEstimated).
FALLBACK = {
    Provider.AZURE: ("0.01", "0.01"),
    Provider.OPENAI: ("0.002", "0.002"),
}


def _per_1k(per_million: Any) -> Decimal | None:
    """genai-prices' price per million tokens (a Decimal, or tiers whose base is one) per 1,000 tokens."""
    if per_million is None:
        return None
    base = getattr(per_million, "base", per_million)
    return (Decimal(base) / _PER_1K).normalize()


def _number(value: Decimal) -> str:
    text = format(value, "f")
    return text if "." in text else f"{text}.0"


def entries(today: datetime) -> list[tuple[str, Decimal, Decimal, Decimal | None, str]]:
    """(name, prompt, completion, cached_prompt, source) of every priced chat model, openai first."""
    from genai_prices import data_snapshot  # the `prices` extra: only this generator needs it

    version = metadata.version("genai-prices")
    snapshot = data_snapshot.get_snapshot()
    found: list[tuple[str, Decimal, Decimal, Decimal | None, str]] = []
    for provider in snapshot.providers:
        if provider.id not in _PROVIDERS:
            continue
        for model in sorted(provider.models, key=lambda m: m.id):
            price = model.get_prices(today)
            prompt = _per_1k(getattr(price, "input_mtok", None))
            completion = _per_1k(getattr(price, "output_mtok", None))
            if prompt is None or completion is None or ":" in model.id:
                continue  # not a chat model priced per token, or a variant (":free") no request names
            cached = _per_1k(getattr(price, "cache_read_mtok", None))
            source = f"genai-prices {version}: {provider.id}/{model.id}"
            found.append((f"{_PROVIDERS[provider.id]}{model.id}", prompt, completion, cached, source))
    found.sort(key=lambda e: (e[0].startswith("azure/"), e[0]))
    return found


def render(today: datetime) -> str:
    as_of = today.date().isoformat()
    lines = [HEADER, "# Every provider needs a flat rate: the original plan's, for models with no entry below."]
    for provider, (flat_prompt, flat_completion) in FALLBACK.items():
        rates = f"prompt = {flat_prompt}, completion = {flat_completion}"
        lines.append(f'providers.{provider.value} = {{ {rates}, source = "seed flat rate" }}')
    lines.append("")
    lines.append(f"# List prices from genai-prices, taken {as_of}.")
    lines.append("[models]")
    for name, prompt, completion, cached, source in entries(today):
        cached_part = "" if cached is None else f", cached_prompt = {_number(cached)}"
        lines.append(
            f'"{name}" = {{ prompt = {_number(prompt)}, completion = {_number(completion)}{cached_part},'
            f' source = "{source}", as_of = {as_of} }}'
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_PRICE_FILE, help="the TOML file to write")
    parser.add_argument("--date", type=date.fromisoformat, default=None, help="as_of (default: today, UTC)")
    args = parser.parse_args(argv)
    today = datetime.combine(args.date, datetime.min.time(), tzinfo=UTC) if args.date else datetime.now(UTC)
    text = render(today)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {text.count(chr(10) + chr(34))} model entries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
