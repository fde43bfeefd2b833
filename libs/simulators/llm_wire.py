"""The OpenAI / Azure OpenAI chat-completions wire format, as the LLM simulator speaks it.

Pure request parsing and response building, kept apart from the simulator's fault and server plumbing
(``llm.py``): auth checks, request validation with the providers' own 4xx bodies, the deterministic
intent-shaped reply, the tokenizer behind ``usage``, and the completion and error JSON shapes.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

# --- constants ------------------------------------------------------------------------------------------
# Length of the prompt hash quoted in every reply, so different prompts visibly get different text. It is
# quoted in letters only (hex digits shifted to g-p): a run of digits such as "31706690" reads as a phone
# number to the content gate (libs.content), which would then refuse the simulator's own replies.
PROMPT_HASH_CHARS = 8
_HASH_LETTERS = str.maketrans("0123456789", "ghijklmnop")
# How many words of the last user message a reply quotes as its topic.
TOPIC_WORDS = 8
# The simulated validator rejects user content containing one of these, so both verdicts can be exercised.
FLAGGED_TERMS = ("underage", "minor", "violence", "self-harm", "meet in person")
# Explicit intent names win over keywords: a campaign prompt may well mention "message".
INTENTS = ("content_validation", "content_planning", "message_generation", "campaign_execution")
INTENT_KEYWORDS = (
    ("content_validation", ("validat", "compliance", "moderat", "approve")),
    ("content_planning", ("content plan", "plan ", "schedule", "calendar")),
    ("message_generation", ("message", "chat", "reply", "dm ")),
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"\w+")


def count_tokens(text: str) -> int:
    """Token count of the simulator's tokenizer: words and single punctuation marks."""
    return len(_TOKEN_RE.findall(text))


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat-completions request the simulator answers."""

    model: str  # the request's model, or the Azure deployment
    messages: list[tuple[str, str]]  # (role, text)
    max_tokens: int | None


class RequestRejected(Exception):
    """A request the provider would refuse; carries its HTTP error response and a counter outcome."""

    def __init__(self, outcome: str, response: web.Response) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.response = response


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def error_response(
    *, azure: bool, status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> web.Response:
    """The provider's error body: OpenAI's {message,type,param,code}, Azure's {code,message}."""
    if azure:
        body: dict[str, Any] = {"error": {"code": code or str(status), "message": message}}
    else:
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(body, status=status, headers={"x-request-id": f"req_{uuid.uuid4().hex}"})


def check_auth(request: web.Request, *, azure: bool) -> None:
    """Raise RequestRejected (401) unless the request carries the provider's credential header."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""
    if azure:
        # Azure accepts a key or an Entra ID (AAD) bearer token.
        if request.headers.get("api-key", "").strip() or bearer:
            return
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
            "valid key for an active subscription and use a correct regional API endpoint for your resource."
        )
    elif bearer:
        return
    else:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    response = error_response(azure=azure, status=401, message=message, type_="invalid_request_error", code=None)
    raise RequestRejected("unauthorized", response)


def _content_text(content: object) -> str:
    """Text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


async def parse_chat_request(request: web.Request, *, azure: bool) -> ChatRequest:
    """Validate a chat-completions request as the provider would, raising RequestRejected (4xx)."""

    def invalid(message: str, param: str | None = None) -> RequestRejected:
        response = error_response(
            azure=azure, status=400, message=message, type_="invalid_request_error", code=None, param=param
        )
        return RequestRejected("invalid_request", response)

    if azure and not request.query.get("api-version"):
        response = error_response(azure=True, status=404, message="Resource not found", type_="", code="404")
        raise RequestRejected("not_found", response)
    try:
        payload: object = await request.json(loads=orjson.loads)
    except ValueError:
        raise invalid("We could not parse the JSON body of your request.") from None
    if not isinstance(payload, dict):
        raise invalid("The request body must be a JSON object.")
    raw_messages = payload.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise invalid("Missing required parameter: 'messages'.", "messages")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in raw_messages):
        raise invalid("Invalid value for 'messages': each message needs a 'role'.", "messages")
    if payload.get("stream"):
        raise invalid("stream=true is not supported by the simulator.", "stream")
    model = request.match_info.get("deployment") or payload.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("you must provide a model parameter", "model")
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return ChatRequest(
        model=model,
        messages=[(m["role"], _content_text(m.get("content"))) for m in raw_messages],
        max_tokens=limit if isinstance(limit, int) and limit > 0 else None,
    )


def _detect_intent(messages: list[tuple[str, str]]) -> str:
    text = " ".join(body for _, body in messages).lower()
    for intent in INTENTS:
        if intent in text:
            return intent
    for intent, keywords in INTENT_KEYWORDS:
        if any(keyword in text for keyword in keywords):
            return intent
    return "campaign_execution"


def compose_reply(model: str, messages: list[tuple[str, str]]) -> str:
    """The deterministic reply to a conversation: same model and messages, same text."""
    digest = hashlib.sha256(orjson.dumps([model, messages])).hexdigest()
    ref = f"[sim-{digest[:PROMPT_HASH_CHARS].translate(_HASH_LETTERS)}]"
    pick = int(digest[:PROMPT_HASH_CHARS], 16)
    user_text = " ".join(body for role, body in messages if role == "user")
    topic = " ".join(_WORD_RE.findall(user_text)[:TOPIC_WORDS]) or "your audience"
    intent = _detect_intent(messages)
    if intent == "content_planning":
        days = [WEEKDAYS[(pick + offset) % len(WEEKDAYS)] for offset in (0, 2, 4)]
        return (
            f"Content plan {ref}:\n"
            f"1. {days[0]}: teaser post introducing {topic}.\n"
            f"2. {days[1]}: behind-the-scenes set with a poll for fans.\n"
            f"3. {days[2]}: exclusive drop with a personal thank-you message."
        )
    if intent == "content_validation":
        flagged = [term for term in FLAGGED_TERMS if term in user_text.lower()]
        if flagged:
            return f"Verdict: REJECTED {ref}. Flagged terms: {', '.join(flagged)}."
        return f"Verdict: APPROVED {ref}. No policy issues found; tone and content fit platform guidelines."
    if intent == "message_generation":
        openers = ("Hey you!", "Hi there!", "Hey love!")
        return (
            f"{openers[pick % len(openers)]} Thanks for being here. I have been working on {topic} and "
            f"you are the first to hear about it. Want a sneak peek? {ref}"
        )
    return f"Campaign {ref}: New this week: {topic}! Unlock it now and tell me what you think."


def _truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    """Cut `text` after `max_tokens` tokens, as the API does; returns (text, finish_reason)."""
    if max_tokens is None:
        return text, "stop"
    ends = [match.end() for match in _TOKEN_RE.finditer(text)]
    if len(ends) <= max_tokens:
        return text, "stop"
    return text[: ends[max_tokens - 1]], "length"


def completion_body(chat: ChatRequest, *, with_choices: bool = True, reply: str | None = None) -> dict[str, Any]:
    """A ``chat.completion`` object answering `chat` (without ``choices`` for the bad-shape fault), with the
    composed reply or the given `reply` (a scripted answer)."""
    text = compose_reply(chat.model, chat.messages) if reply is None else reply
    content, finish_reason = _truncate(text, chat.max_tokens)
    prompt_tokens = sum(count_tokens(text) for _, text in chat.messages)
    completion_tokens = count_tokens(content)
    body: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": "fp_llmsim",
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if with_choices:
        message = {"role": "assistant", "content": content, "refusal": None}
        body["choices"] = [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}]
    return body
