"""The handler both LLM workers run for generation.requested.

One provider call per request, however often the request is delivered:

    claim the request's envelope id in the idempotency cache
     ├── cached → re-publish the stored envelopes (same ids: consumers de-duplicate); no call
     ├── busy   → another delivery is calling; wait for its result (its lease ends if it died)
     └── owned  → call the provider within min(worker timeout, request timeout_s)
                  → generation.completed, or generation.failed with the classified ErrorInfo,
                    plus usage.recorded whenever tokens were billed — children of the request envelope
                  → store them in the cache → publish them

While the kill switch is off (libs.flags: FlagClient.held), a request is put back on the bus
HOLD_RECHECK_S later instead of calling the provider: first attempts and the router's delayed retries alike.

Provider failures are results (generation.failed, for the router's fallback matrix), not exceptions. What
does propagate — the cache or the bus failing, a bug — makes the bus redeliver the request, and the lease is
released first so that the redelivery may call at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import openai
from openai.types.chat import ChatCompletion

from contracts import Envelope, Message
from contracts.enums import IntentType, Provider
from contracts.messages import (
    ErrorInfo,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    Intent,
    Notify,
    Usage,
    UsageRecorded,
)
from libs.bus import Bus, Handler, Reject
from libs.content import Checker, Violation, default_checker
from libs.flags import FlagClient
from libs.llm import constants as c
from libs.llm.cache import Claim, IdempotencyCache
from libs.llm.classify import classify
from libs.llm.client import create_chat_completion
from libs.llm.compliance import compliance_error, correction_prompt, validated_text, with_verdict
from libs.llm.errors import CacheError, GenerationInFlight
from libs.llm.health import CallOutcomes
from libs.llm.metrics import OUTCOME_OK, get_llm_metrics
from libs.llm.prompts import PROMPTS, Prompt, RenderedPrompt, build_prompt
from libs.llm.response import Reply, billed_usage, read_reply
from libs.telemetry import get_logger

log = get_logger(__name__)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@dataclass(frozen=True)
class _Call:
    """One provider call: its reply, or its classified error with the tokens it billed all the same."""

    latency_ms: float
    reply: Reply | None = None
    error: ErrorInfo | None = None
    billed: Usage | None = None
    model: str | None = None  # the model asked for, which a failed call's usage is recorded under


class GenerationHandler:
    """`await handler(envelope)` handles one generation.requested for `provider` (see the module docstring)."""

    def __init__(
        self,
        provider: Provider,
        client: openai.AsyncOpenAI,
        model: str,
        bus: Bus,
        cache: IdempotencyCache,
        timeout_s: float,
        prompts: Mapping[IntentType, Prompt] = PROMPTS,
        checker: Checker | None = None,
        flags: FlagClient | None = None,
        outcomes: CallOutcomes | None = None,
    ) -> None:
        self.provider = provider
        self.client = client
        self.model = model
        self.bus = bus
        self.cache = cache
        self.timeout_s = timeout_s
        self.prompts = prompts
        self.checker = checker or default_checker()
        self.flags = flags
        self.outcomes = outcomes or CallOutcomes(provider)  # what the provider health check reads

    async def __call__(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        if not isinstance(request, GenerationRequested):
            raise Reject(f"{self.provider.value} worker cannot handle {envelope.type}")
        if request.provider is not self.provider:
            raise Reject(f"a {request.provider.value} request reached the {self.provider.value} worker")
        key = str(envelope.id)
        held = self.flags.held() if self.flags is not None else None
        if held is not None:  # the kill switch: no provider call until it is on again, nothing dropped
            log.info("generation.held", provider=self.provider.value, generation_id=key, reason=held)
            await self.bus.publish(envelope, delay=c.HOLD_RECHECK_S)
            return None
        timeout_s = min(self.timeout_s, request.timeout_s)
        claim = await self._claim(key, timeout_s + c.LEASE_MARGIN_S)
        token = claim.token
        if token is None:  # not owned, so cached: _claim waits out busy answers
            log.info("generation.replayed", provider=self.provider.value, generation_id=key)
            await self.bus.publish_all([Envelope.decode(raw) for raw in claim.values or ()])
            return None
        try:
            outgoing = await self._generate(envelope, request, timeout_s)
        except BaseException:
            with contextlib.suppress(CacheError):
                await self.cache.release(key, token)
            raise
        try:
            await self.cache.store(key, [e.encode() for e in outgoing])
        except CacheError as exc:
            # The provider was called and billed: publishing the result matters more than remembering it.
            # Only a redelivery of this very request could call again (after the lease ends).
            log.error("generation.cache_store_failed", provider=self.provider.value, generation_id=key, reason=str(exc))
        # Usage first (they leave in order): cost accounting then tends to see the tokens before the end.
        await self.bus.publish_all(outgoing)
        return None

    async def _claim(self, key: str, lease_s: float) -> Claim:
        """An owned or cached claim, waiting out another delivery's lease (at most `lease_s`)."""
        deadline = time.monotonic() + lease_s
        claim = await self.cache.claim(key, lease_s)
        if claim.busy:
            log.info("generation.in_flight_elsewhere", provider=self.provider.value, generation_id=key)
        while claim.busy:
            if time.monotonic() >= deadline:
                raise GenerationInFlight(f"generation {key} is still in flight after {lease_s:g}s")
            await asyncio.sleep(c.IN_FLIGHT_POLL_S)
            claim = await self.cache.claim(key, lease_s)
        return claim

    async def _generate(self, envelope: Envelope, request: GenerationRequested, timeout_s: float) -> list[Envelope]:
        """Call the provider (twice when the content gate refuses the first draft); the outgoing envelopes."""
        rendered = build_prompt(
            request.intent, self.prompts, fan=request.recipient_vars, variant=request.prompt_variant
        )
        model = request.model or self.model
        deadline = time.monotonic() + timeout_s
        first = await self._call_once(model, rendered, timeout_s)
        if first.reply is None:
            return self._failed(envelope, request, first)
        if request.intent.type is IntentType.CONTENT_VALIDATION:
            return self._completed(envelope, request, self._judged(first.reply, request.intent), first.latency_ms)
        violation = self.checker.check(first.reply.content) if request.intent.send_to_onlyfans else None
        if violation is None:
            return self._completed(envelope, request, first.reply, first.latency_ms)
        # The gate refused the first draft: its tokens are billed all the same, under an id of their own.
        self._violation(envelope, request, violation, c.VIOLATION_REGENERATE)
        draft = self._usage_recorded(envelope, request, first.reply.model, first.reply.usage, key=c.DRAFT_USAGE_KEY)
        remaining_s = deadline - time.monotonic()
        if remaining_s < c.MIN_REGENERATION_S:
            self._violation(envelope, request, violation, c.VIOLATION_FAIL)
            error = compliance_error(violation, regenerated=False)
            return [draft, *self._failed(envelope, request, _Call(first.latency_ms, error=error))]
        second = await self._call_once(model, correction_prompt(rendered, violation), remaining_s)
        latency_ms = round(first.latency_ms + second.latency_ms, 3)
        if second.reply is None:
            return [draft, *self._failed(envelope, request, replace(second, latency_ms=latency_ms))]
        again = self.checker.check(second.reply.content)
        if again is None:
            return [draft, *self._completed(envelope, request, second.reply, latency_ms, after_draft=True)]
        self._violation(envelope, request, again, c.VIOLATION_FAIL)
        billed = self._usage_recorded(envelope, request, second.reply.model, second.reply.usage)
        error = compliance_error(again, regenerated=True)
        return [draft, billed, *self._failed(envelope, request, _Call(latency_ms, error=error))]

    async def _call_once(self, model: str, rendered: RenderedPrompt, timeout_s: float) -> _Call:
        """One provider call, counted in the call metrics: its reply, or the classified error."""
        started = time.perf_counter()
        completion: object = None
        try:
            completion = await self._call(model, rendered, timeout_s)
            reply = read_reply(completion, requested_model=model, prompt_texts=rendered.texts)
        except Exception as exc:
            error = classify(exc, self.provider, timeout_s=timeout_s)
            if error is None:
                raise
            call = _Call(_elapsed_ms(started), error=error, billed=billed_usage(completion), model=model)
            outcome, usage = error.type.value, call.billed
        else:
            call = _Call(_elapsed_ms(started), reply=reply)
            outcome, usage = OUTCOME_OK, reply.usage
        self.outcomes.record(call.error)
        get_llm_metrics().record_call(
            provider=self.provider.value,
            model=model,
            outcome=outcome,
            duration_ms=call.latency_ms,
            usage=usage,
            response_model=call.reply.model if call.reply is not None else None,
        )
        return call

    async def _call(self, model: str, rendered: RenderedPrompt, timeout_s: float) -> ChatCompletion:
        prompt = rendered.prompt
        body = {
            "model": model,
            "messages": rendered.messages,
            c.TOKEN_LIMIT_PARAM[self.provider]: prompt.max_tokens,
            "temperature": prompt.temperature,
        }
        # The SDK's timeout bounds each phase of the HTTP exchange; asyncio's bounds the whole call, so that
        # a provider trickling bytes cannot hold a request past its budget.
        async with asyncio.timeout(timeout_s):
            return await create_chat_completion(self.client, body, timeout_s=timeout_s)

    def _judged(self, reply: Reply, intent: Intent) -> Reply:
        """A content_validation answer, headed by the gate's REJECTED verdict when the content breaks a rule."""
        violation = self.checker.check(validated_text(intent))
        if violation is None:
            return reply
        get_llm_metrics().record_violation(provider=self.provider.value, rule=violation.rule, action=c.VIOLATION_REJECT)
        return replace(reply, content=with_verdict(reply.content, violation))

    def _violation(self, envelope: Envelope, request: GenerationRequested, violation: Violation, action: str) -> None:
        get_llm_metrics().record_violation(provider=self.provider.value, rule=violation.rule, action=action)
        # The rule's name only: what the text contained is message content, which never goes into a log.
        log.warning(
            "generation.content_violation",
            provider=self.provider.value,
            intent=request.intent.type.value,
            generation_id=str(envelope.id),
            rule=violation.rule,
            action=action,
        )

    def _completed(
        self,
        envelope: Envelope,
        request: GenerationRequested,
        reply: Reply,
        latency_ms: float,
        *,
        after_draft: bool = False,
    ) -> list[Envelope]:
        """The usage and the result of a generation that succeeded. Its usage carries the request's `notify`
        (the cost-tracker tells the workflow's cost once it records it) unless a refused draft was billed
        before it: that usage travels separately and might be recorded after this one, so the cost is then
        told at the workflow's end."""
        notify = None if after_draft else request.notify
        completed = GenerationCompleted(
            provider=self.provider,
            model=reply.model,
            content=reply.content,
            usage=reply.usage,
            latency_ms=latency_ms,
            request_id=reply.request_id,
            cost_notified=notify is not None,
        )
        log.info(
            "generation.completed",
            provider=self.provider.value,
            model=reply.model,
            intent=request.intent.type.value,
            generation_id=str(envelope.id),
            latency_ms=latency_ms,
            prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens,
            usage_estimated=reply.usage.estimated,
        )
        usage = self._usage_recorded(envelope, request, reply.model, reply.usage, notify=notify)
        return [usage, envelope.derived_child(completed)]

    def _failed(self, envelope: Envelope, request: GenerationRequested, call: _Call) -> list[Envelope]:
        error = call.error
        assert error is not None
        failed = GenerationFailed(provider=self.provider, error=error, latency_ms=call.latency_ms)
        log.warning(
            "generation.failed",
            provider=self.provider.value,
            intent=request.intent.type.value,
            generation_id=str(envelope.id),
            latency_ms=call.latency_ms,
            error_type=error.type.value,
            retryable=error.retryable,
            status_code=error.status_code,
            retry_after_s=error.retry_after_s,
            reason=error.message,
        )
        outgoing = [envelope.derived_child(failed)]
        if call.billed is not None:
            outgoing.insert(0, self._usage_recorded(envelope, request, call.model or self.model, call.billed))
        return outgoing

    def _usage_recorded(
        self,
        envelope: Envelope,
        request: GenerationRequested,
        model: str,
        usage: Usage,
        *,
        key: str | None = None,
        notify: Notify | None = None,
    ) -> Envelope:
        recorded = UsageRecorded(
            provider=self.provider,
            model=model,
            usage=usage,
            workflow_type=request.intent.type,
            generation_id=envelope.id,
            notify=notify,
        )
        # Derived: even a result computed twice (the in-process cache lost in a restart) reaches the
        # cost-tracker under the same id, and it is counted once.
        return envelope.derived_child(recorded, key=key)


def make_generation_handler(
    provider: Provider,
    client: openai.AsyncOpenAI,
    model: str,
    bus: Bus,
    cache: IdempotencyCache,
    timeout_s: float,
    checker: Checker | None = None,
    flags: FlagClient | None = None,
    outcomes: CallOutcomes | None = None,
) -> Handler:
    """The generation.requested handler of `provider`'s worker (see the module docstring)."""
    return GenerationHandler(
        provider, client, model, bus, cache, timeout_s, checker=checker, flags=flags, outcomes=outcomes
    )
