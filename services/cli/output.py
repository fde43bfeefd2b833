"""How commands print: JSON indented for a person, lists as a compact table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# A table cell longer than this is cut (the whole value is in `--json`).
MAX_CELL = 48
EMPTY_CELL = "-"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(rows: Sequence[Mapping[str, Any]], preferred: Sequence[str]) -> None:
    """`rows` as aligned columns: those of `preferred` that any row has (else every key of the first row)."""
    if not rows:
        print("(none)")
        return
    columns = [name for name in preferred if any(name in row for row in rows)] or list(rows[0])
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    for line in [columns, *cells]:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return EMPTY_CELL
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.1f}"
    text = (
        json.dumps(value, ensure_ascii=False, separators=(",", ":")) if isinstance(value, dict | list) else str(value)
    )
    text = " ".join(text.split())  # one line per row, whatever the value holds
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
