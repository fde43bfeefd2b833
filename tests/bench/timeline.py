"""`make bench BENCH_ARGS="--trace"`: where one `?wait=true` workflow's time goes, span by span.

With --trace every service exports its spans with the SDK's console exporter into its log in the bench's
work directory (the spans of a hop: the gateway's SERVER span, PRODUCER "send …", CONSUMER "process …",
the asyncpg, Redis and aiohttp CLIENT spans). After the run, `timeline` reads them back, takes the last
`last` traces the gateway served (the one-at-a-time phase, which runs last), and prints for each span — by
service, kind, name and its occurrence in the trace — the median start after the trace began and the median
duration. Exporting costs CPU in every service, so the other numbers of a traced run are not comparable
with an untraced one; the timeline's shape is what it is for: which hops and statements are on the path.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

TRACED_WORKFLOWS = 60  # the last traces read, all from the one-at-a-time phase (it posts at least 100)


@dataclass(frozen=True)
class Span:
    trace_id: str
    service: str
    name: str
    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class Step:
    service: str
    kind: str
    name: str  # with "#k" for the k-th span of that service, kind and name in the trace
    start_ms: float  # median, after the trace's first span started
    duration_ms: float  # median
    traces: int


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def read_spans(log: Path) -> list[Span]:
    """The spans the console exporter wrote into one service's log (pretty JSON between JSON log lines)."""
    text = log.read_text(errors="replace")
    decoder = json.JSONDecoder()
    spans: list[Span] = []
    at = text.find("{")
    while at >= 0:
        try:
            item, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(item, dict) and "context" in item and "start_time" in item:
            spans.append(
                Span(
                    trace_id=item["context"]["trace_id"],
                    service=log.stem,
                    name=item["name"],
                    kind=item["kind"].removeprefix("SpanKind."),
                    start=_seconds(item["start_time"]),
                    end=_seconds(item["end_time"]),
                )
            )
        at = text.find("{", end)
    return spans


def timeline(workdir: Path, last: int = TRACED_WORKFLOWS) -> list[Step]:
    """The median timeline of the last `last` traces that the gateway served (see the module docstring)."""
    by_trace: defaultdict[str, list[Span]] = defaultdict(list)
    for log in sorted(workdir.glob("*.log")):
        for span in read_spans(log):
            by_trace[span.trace_id].append(span)
    served = [spans for spans in by_trace.values() if any(s.service == "gateway" and s.kind == "SERVER" for s in spans)]
    served.sort(key=lambda spans: min(s.start for s in spans))
    samples: defaultdict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for spans in served[-last:]:
        began = min(s.start for s in spans)
        seen: Counter[tuple[str, str, str]] = Counter()
        for span in sorted(spans, key=lambda s: s.start):
            key = (span.service, span.kind, span.name)
            seen[key] += 1
            samples[(span.service, span.kind, f"{span.name}#{seen[key]}")].append(
                ((span.start - began) * 1000, (span.end - span.start) * 1000)
            )
    steps = [
        Step(
            service=service,
            kind=kind,
            name=name,
            start_ms=round(statistics.median(start for start, _ in values), 2),
            duration_ms=round(statistics.median(duration for _, duration in values), 2),
            traces=len(values),
        )
        for (service, kind, name), values in samples.items()
    ]
    return sorted(steps, key=lambda step: step.start_ms)


def print_timeline(steps: list[Step]) -> None:
    print(f"\n{'start_ms':>9} {'took_ms':>8} {'traces':>6}  {'service':<14} {'kind':<9} span")
    for step in steps:
        took = f"{step.start_ms:>9.2f} {step.duration_ms:>8.2f} {step.traces:>6}"
        print(f"{took}  {step.service:<14} {step.kind:<9} {step.name}")
