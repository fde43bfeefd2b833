"""Reading a chat completion: the text, or why there is none.

The SDK does not validate responses by default (`_strict_response_validation` is off, and turning it on
would reject harmless additions to the schema), so a 200 whose body lacks `choices` arrives as a
`ChatCompletion` with `choices=None`. Everything used here is checked, and an unusable answer raises
InvalidResponse (the provider is at fault: retry or fall back) or ContentFiltered (the content is at fault).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice

from contracts.messages import Usage
from libs.llm.errors import ContentFiltered, InvalidResponse
from libs.llm.usage import usage_of

FINISH_CONTENT_FILTER = "content_filter"


@dataclass(frozen=True)
class Reply:
    content: str
    model: str
    usage: Usage
    request_id: str | None


def read_reply(completion: object, *, requested_model: str, prompt_texts: Iterable[str]) -> Reply:
    """The usable reply in `completion`; raises InvalidResponse or ContentFiltered."""
    if not isinstance(completion, ChatCompletion):
        raise InvalidResponse("not a chat completion")
    choices = completion.choices
    if not choices or not isinstance(choices[0], Choice):
        raise InvalidResponse("no choices")
    choice = choices[0]
    if choice.finish_reason == FINISH_CONTENT_FILTER:
        raise ContentFiltered("the provider's content filter withheld the completion")
    message = choice.message
    if not isinstance(message, ChatCompletionMessage):
        raise InvalidResponse("no message in the first choice")
    if message.refusal:
        raise ContentFiltered("the model refused the request")
    content = message.content
    if not isinstance(content, str) or not content.strip():
        raise InvalidResponse("empty content")
    return Reply(
        content=content,
        # Azure reports the underlying model ("gpt-4o-2024-05-13"), which is what prices are keyed by.
        model=completion.model if isinstance(completion.model, str) and completion.model else requested_model,
        usage=usage_of(reported_usage(completion), prompt_texts, content),
        # The provider's request id (x-request-id) is what its support asks for; the completion id otherwise.
        request_id=completion._request_id or (completion.id if isinstance(completion.id, str) else None),
    )


def reported_usage(completion: object) -> CompletionUsage | None:
    """The usage the provider reported, when it reported a well-formed one."""
    usage = getattr(completion, "usage", None)
    if not isinstance(usage, CompletionUsage):
        return None
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    if not all(isinstance(n, int) and n >= 0 for n in counts):
        return None
    return usage


def billed_usage(completion: object) -> Usage | None:
    """Tokens billed by an answer that could not be used (a bad-shaped body still carries usage)."""
    usage = reported_usage(completion)
    if usage is None or usage.total_tokens == 0:
        return None
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )
