"""`python -m tests.bench.worker` still measures: the real handler, Redis and the simulator, a round of calls."""

from __future__ import annotations

from contracts.messages import GenerationCompleted, UsageRecorded
from tests.bench.worker import WARMUP_CALLS, measure


class TestWorkerBench:
    async def test_a_round_of_calls_is_measured_as_cpu_per_call(self, redis_url: str) -> None:
        """Every call completed once, and each round gives this process's CPU per call."""
        measured = await measure(n=20, concurrency=4, rounds=2, redis_url=redis_url)
        calls = WARMUP_CALLS + 2 * 20
        assert measured.published == {GenerationCompleted.TYPE: calls, UsageRecorded.TYPE: calls}
        assert len(measured.cpu_ms_per_call) == 2
        assert all(0 < ms < 1000 for ms in measured.cpu_ms_per_call)
