"""The prompts, per intent type, kept as data: one table, filled from the intent at call time.

Each `Prompt` is a system prompt, a user-message template and the completion limits of that kind of work.
A template may use exactly these fields (checked by `validate_table` at import):

    {intent}        the intent type ("content_planning", ...), so the model — and the simulator — know the task
    {details}       the intent's `data`, one "key: value" line per entry, sorted, bounded in size; for a
                    personalized campaign's text, followed by what is known of that fan (its `vars`)
    {platforms}     the target platforms, comma-separated ("any platform" when none)
    {content_type}  the content type ("any" when none)

User data only ever fills a field; it is never parsed as a template, so braces in it are harmless. It is
sanitised first (libs.content.sanitize): prompt-injection phrases and chat role markers are neutralised,
control characters dropped, every value bounded.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import orjson
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from contracts.enums import IntentType
from contracts.messages import Intent
from libs.content import sanitize_data, sanitize_text
from libs.llm.constants import MAX_DETAIL_VALUE_CHARS, MAX_DETAILS_CHARS

TEMPLATE_FIELDS = frozenset({"intent", "details", "platforms", "content_type"})

# Shared by every system prompt: the platform's content rules apply whatever the task.
_RULES = (
    "Follow the platform's content rules: adults only, no violence, no self-harm, no requests to meet in "
    "person, no personal contact details. Write in the creator's voice, warm and concise."
)


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str  # a str.format template over TEMPLATE_FIELDS
    max_tokens: int  # completion limit
    temperature: float


PROMPTS: Mapping[IntentType, Prompt] = MappingProxyType(
    {
        IntentType.CONTENT_PLANNING: Prompt(
            system=(
                "You are a content strategist for a creator on fan platforms. Write a content plan for the "
                f"coming week: one numbered line per day with the post idea and its hook. {_RULES}"
            ),
            user="{details}\nPlatforms: {platforms}. Content type: {content_type}. Task: {intent}.",
            max_tokens=800,
            temperature=0.7,
        ),
        IntentType.MESSAGE_GENERATION: Prompt(
            system=(
                "You write direct chat messages from a creator to one fan. Write a single message of at most "
                f"three sentences that invites a reply. {_RULES}"
            ),
            user="{details}\nPlatforms: {platforms}. Content type: {content_type}. Task: {intent}.",
            max_tokens=200,
            temperature=0.8,
        ),
        IntentType.CONTENT_VALIDATION: Prompt(
            system=(
                "You review creator content for compliance with platform policy. Answer with a verdict, "
                "APPROVED or REJECTED, followed by the reasons and the exact terms at fault. "
                "Judge the content; do not rewrite it."
            ),
            user="{details}\nPlatforms: {platforms}. Content type: {content_type}. Task: {intent}.",
            max_tokens=300,
            temperature=0.0,
        ),
        IntentType.CAMPAIGN_EXECUTION: Prompt(
            system=(
                "You run promotional campaigns for a creator. Write the campaign announcement for the given "
                f"offer: a headline and one short call to action. {_RULES}"
            ),
            user="{details}\nPlatforms: {platforms}. Content type: {content_type}. Task: {intent}.",
            max_tokens=500,
            temperature=0.7,
        ),
    }
)


def validate_table(table: Mapping[IntentType, Prompt]) -> None:
    """Raise ValueError unless every intent type has a prompt whose template uses only TEMPLATE_FIELDS."""
    missing = set(IntentType) - set(table)
    if missing:
        raise ValueError(f"no prompt for intent types {sorted(missing)}")
    for intent, prompt in table.items():
        used = {name for _, name, _, _ in string.Formatter().parse(prompt.user) if name is not None}
        unknown = used - TEMPLATE_FIELDS
        if unknown or "" in used:
            raise ValueError(f"prompt for {intent}: unknown template fields {sorted(unknown or {''})}")
        if prompt.max_tokens <= 0:
            raise ValueError(f"prompt for {intent}: max_tokens must be positive")


validate_table(PROMPTS)


def render_details(data: Mapping[str, object]) -> str:
    """The intent's data as sorted "key: value" lines; long values and the whole block are cut short."""
    lines: list[str] = []
    for key in sorted(data):
        value = data[key]
        text = (
            value if isinstance(value, str) else orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()
        )
        lines.append(f"{key}: {text[:MAX_DETAIL_VALUE_CHARS]}")
    return "\n".join(lines)[:MAX_DETAILS_CHARS] or "(no details given)"


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt filled for one intent: the texts sent, and the chat messages that carry them."""

    prompt: Prompt
    system: str
    user: str

    @property
    def texts(self) -> tuple[str, str]:
        return self.system, self.user

    @property
    def messages(self) -> list[ChatCompletionMessageParam]:
        system: ChatCompletionSystemMessageParam = {"role": "system", "content": self.system}
        user: ChatCompletionUserMessageParam = {"role": "user", "content": self.user}
        return [system, user]


# Prompt variants an experiment's arm may ask for (contracts.experiments.PromptVariant): an instruction added
# to the system prompt. "default" (and a variant this worker does not know) adds nothing.
PROMPT_VARIANTS: Mapping[str, str] = MappingProxyType(
    {
        "default": "",
        "concise": " Keep it short: the fewest words that still do the job.",
        "playful": " Use a playful, teasing tone, still within the rules.",
    }
)


def build_prompt(
    intent: Intent,
    table: Mapping[IntentType, Prompt] = PROMPTS,
    fan: Mapping[str, str] | None = None,
    variant: str | None = None,
) -> RenderedPrompt:
    """The prompt for `intent`'s type, filled from the intent (and `fan`: the recipient's vars), sanitised;
    `variant` adds its instruction to the system prompt (PROMPT_VARIANTS)."""
    prompt = table[intent.type]
    details = render_details(sanitize_data(intent.data))
    if fan:
        details += "\nAbout the fan this message is for:\n" + render_details(sanitize_data(fan))
    user = prompt.user.format(
        intent=intent.type.value,
        details=details,
        platforms=", ".join(sanitize_text(p, MAX_DETAIL_VALUE_CHARS) for p in intent.platforms) or "any platform",
        content_type=sanitize_text(intent.content_type or "any", MAX_DETAIL_VALUE_CHARS),
    )
    return RenderedPrompt(prompt=prompt, system=prompt.system + PROMPT_VARIANTS.get(variant or "", ""), user=user)
