"""One bus hop, measured: N messages published (confirmed) and consumed (handled, acked) on a transport.

`python -m tests.bench.hop [memory|amqp|sqs://...] [-n N]` prints messages/s for publish and for the whole
hop, with the same settings services use (persistent, confirms, manual acks, prefetch 64).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

from contracts import Envelope
from contracts import messages as m
from libs.bus import create_bus
from tests.integration.stack import destroy_namespace


async def measure(url: str, n: int, concurrency: int) -> dict[str, float]:
    bus = create_bus(url, namespace=f"hop{uuid.uuid4().hex[:8]}")
    await bus.connect()
    received = 0
    done = asyncio.Event()

    async def handler(_: Envelope) -> None:
        nonlocal received
        received += 1
        if received == n:
            done.set()

    intent = m.Intent(type="message_generation")
    envelopes = [Envelope.new(m.WorkflowRequested(intent=intent), user_id="bench") for _ in range(n)]
    sem = asyncio.Semaphore(concurrency)

    async def publish(envelope: Envelope) -> None:
        async with sem:
            await bus.publish(envelope)

    started = time.perf_counter()
    await asyncio.gather(*(publish(e) for e in envelopes))
    published = time.perf_counter() - started
    consume_start = time.perf_counter()
    await bus.subscribe("router", {"workflow.requested": handler}, prefetch=64)
    await asyncio.wait_for(done.wait(), 300)
    consumed = time.perf_counter() - consume_start
    await bus.close(grace_s=1)
    await destroy_namespace(url, bus.namespace)
    return {"publish_per_s": round(n / published), "consume_per_s": round(n / consumed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", default=os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    args = parser.parse_args()
    url = "memory://" if args.url == "memory" else args.url
    print(
        json.dumps({"transport": url.split(":")[0], "n": args.n, **asyncio.run(measure(url, args.n, args.concurrency))})
    )


if __name__ == "__main__":
    main()
