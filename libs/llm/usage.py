"""Token usage of a completion: the provider's own counts, or a deterministic estimate when it gives none.

The estimate counts words and single punctuation marks. It is no provider's real tokenizer (those are
not a dependency of ours); it is stable, cheap, and in the right range for English text, and the usage
it produces is flagged `estimated=True` so cost reports can tell it apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from openai.types import CompletionUsage

from contracts.messages import Usage

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """Estimated tokens of `text`: its words and punctuation marks."""
    return len(_TOKEN_RE.findall(text))


def usage_of(reported: CompletionUsage | None, prompt_texts: Iterable[str], completion_text: str) -> Usage:
    """The provider's usage when it reported one, else an estimate from the texts sent and received."""
    if reported is not None:
        details = reported.prompt_tokens_details
        cached = (details.cached_tokens or 0) if details is not None else 0
        return Usage(
            prompt_tokens=reported.prompt_tokens,
            completion_tokens=reported.completion_tokens,
            total_tokens=reported.total_tokens,
            # Part of prompt_tokens; never more than it (the cost-tracker bills them at the cached rate).
            cached_prompt_tokens=min(cached, reported.prompt_tokens),
        )
    prompt_tokens = sum(estimate_tokens(text) for text in prompt_texts)
    completion_tokens = estimate_tokens(completion_text)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        estimated=True,
    )
