"""What the LLM workers do with the content gate's verdicts (libs.content.checker).

    correction_prompt(rendered, violation)  # the same prompt, plus the line asking for a text without it
    compliance_error(violation)             # the ErrorInfo of a text refused twice: compliance_violation
    validated_text(intent)                  # what a content_validation request asks to judge
    with_verdict(answer, violation)         # the model's review, headed by the gate's REJECTED verdict

The flow itself (check, regenerate once, fail) is the generation handler's (libs.llm.generation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from contracts.enums import ErrorType
from contracts.messages import ErrorInfo, Intent
from libs.content import Violation
from libs.llm.prompts import RenderedPrompt


def correction_prompt(rendered: RenderedPrompt, violation: Violation) -> RenderedPrompt:
    """`rendered` with a last user line naming the rule the previous draft broke."""
    line = (
        f"The previous draft broke the platform's content {violation.explain()}. "
        f"Write it again without {violation.description}; keep everything else on the platform."
    )
    return replace(rendered, user=f"{rendered.user}\n\n{line}")


def compliance_error(violation: Violation, *, regenerated: bool) -> ErrorInfo:
    """Why the text was never sent: the rule, by name and description (never the text: statuses are logged)."""
    how = "after one regeneration" if regenerated else "with no time left to regenerate it"
    message = (
        f"the generated text broke content rule {violation.rule} ({violation.description}) {how}; nothing was sent"
    )
    return ErrorInfo(type=ErrorType.COMPLIANCE_VIOLATION, message=message, retryable=False)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def validated_text(intent: Intent) -> str:
    """The content a content_validation request submits: every string in its data (the model judges all of it)."""
    return "\n".join(_strings(intent.data))


def with_verdict(answer: str, violation: Violation) -> str:
    """The model's review under the gate's verdict: the rules win whatever the model said."""
    return f"Verdict: REJECTED. It breaks the platform's content {violation.explain()}.\nReview: {answer}"
