"""A generation worker's own CPU per LLM call, without the bus: `python -m tests.bench.worker [-n N] [-c C]`.

The openai-worker's handler as the service builds it — the idempotency cache on Redis (TEST_REDIS_URL,
default db 14, keys under a random prefix), the real openai SDK against the LLM simulator (its own process,
zero latency), telemetry and the library instrumentations on as in a service — is called for n
generation.requested envelopes with c in flight; what it would publish is encoded and dropped (the bus's
hop has its own bench, tests.bench.hop). Prints calls/s and this process's CPU ms per call for each of
`--rounds` rounds after a warm-up, then one JSON line with the median; exits 1 unless every call published
one generation.completed and one usage.recorded (a failing call would be measured as a cheap one). This
machine's CPU time per call moves by half from round to round (a VM's neighbours), so compare medians of
runs made back to back.

`make bench`'s openai_worker CPU per workflow is this plus consuming the request and publishing two
messages on the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts import Envelope
from contracts import messages as m
from contracts.enums import Provider
from contracts.messages import GenerationCompleted, UsageRecorded
from libs.llm import build_openai_client, openai_endpoint
from libs.llm.cache import RedisCache
from libs.llm.generation import make_generation_handler
from libs.runtime.process import run_loop
from libs.telemetry.instrumentation import instrument_libraries
from libs.telemetry.logging import configure_logging
from libs.telemetry.setup import setup_telemetry
from tests.chaos.servers import SimulatorProcess
from tests.integration.stack import free_port

WARMUP_CALLS = 50
MODEL = "gpt-4o-mini"


class DroppingBus:
    """Encodes what the handler publishes, as the bus would, counts it by type and drops it."""

    def __init__(self) -> None:
        self.published: Counter[str] = Counter()

    async def publish(self, envelope: Envelope, *, delay: float = 0.0) -> None:
        await self.publish_all([envelope])

    async def publish_all(self, envelopes: Sequence[Envelope], *, delays: Sequence[float] = ()) -> None:
        for envelope in envelopes:
            envelope.encode()
            self.published[envelope.type] += 1


@dataclass(frozen=True)
class Measured:
    cpu_ms_per_call: list[float]  # one per round
    published: dict[str, int]  # message types the handler published, warm-up included


async def measure(n: int, concurrency: int, rounds: int, redis_url: str) -> Measured:
    """CPU ms per call of each round, and what the calls published."""
    simulator = SimulatorProcess("llm", free_port(), Path(tempfile.mkdtemp(prefix="ho-worker-bench-")) / "llm.log")
    await simulator.start()
    client = build_openai_client(openai_endpoint(f"{simulator.url}/v1", "bench", None), timeout_s=30)
    cache = RedisCache.from_url(redis_url, prefix=f"bench:worker:{uuid.uuid4().hex[:6]}:")
    bus = DroppingBus()
    handler = make_generation_handler(Provider.OPENAI, client, MODEL, bus, cache, 30)  # type: ignore[arg-type]
    intent = m.Intent(type="message_generation")
    slots = asyncio.Semaphore(concurrency)

    async def call() -> None:
        async with slots:
            request = m.GenerationRequested(provider=Provider.OPENAI, intent=intent, timeout_s=30)
            await handler(Envelope.new(request, workflow_id=uuid.uuid4(), user_id="bench"))

    per_call: list[float] = []
    try:
        await asyncio.gather(*(call() for _ in range(WARMUP_CALLS)))
        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(call() for _ in range(n)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            per_call.append(cpu * 1000 / n)
            print(f"calls/s {n / wall:7.1f}   cpu ms/call {per_call[-1]:.3f}", flush=True)
    finally:
        await client.close()
        await cache.close()
        await simulator.stop()
    return Measured(per_call, dict(bus.published))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000, help="calls per round (default 1000)")
    parser.add_argument("-c", "--concurrency", type=int, default=32, help="in flight (default 32)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds after the warm-up (default 5)")
    args = parser.parse_args()
    configure_logging("worker-bench", level="warning", json=True)
    setup_telemetry("worker-bench")
    instrument_libraries()
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    result: dict[str, object] = {}

    async def run() -> None:
        measured = await measure(args.n, args.concurrency, args.rounds, redis_url)
        per_call = measured.cpu_ms_per_call
        result.update(n=args.n, concurrency=args.concurrency, cpu_ms_per_call=per_call,
                      cpu_ms_per_call_median=round(statistics.median(per_call), 3),
                      published=measured.published)  # fmt: skip

    run_loop(run())
    print(json.dumps(result))
    calls = WARMUP_CALLS + args.n * args.rounds
    if result["published"] != {GenerationCompleted.TYPE: calls, UsageRecorded.TYPE: calls}:
        raise SystemExit(f"not every call completed once: {result['published']} for {calls} calls")


if __name__ == "__main__":
    main()
