"""Referee helpers for the delivery tests: what the platform's arrival log says about our sends."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence

from libs.simulators import Arrival


def window_violations(times: Sequence[float], limit: int, window: float) -> list[tuple[float, float]]:
    """Runs of limit+1 sends closer together than `window` (each is a window over the limit)."""
    ordered = sorted(times)
    return [
        (ordered[i], ordered[i + limit])
        for i in range(len(ordered) - limit)
        if ordered[i + limit] - ordered[i] < window
    ]


def spacing_violations(times: Sequence[float], gap: float) -> list[tuple[float, float]]:
    """Consecutive sends to one fan closer together than `gap`."""
    ordered = sorted(times)
    return [(a, b) for a, b in itertools.pairwise(ordered) if b - a < gap]


def by_account(arrivals: Iterable[Arrival]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for arrival in arrivals:
        out[arrival.account_id].append(arrival.at)
    return out


def by_chat(arrivals: Iterable[Arrival]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for arrival in arrivals:
        out[(arrival.account_id, arrival.recipient_id)].append(arrival.at)
    return out


def all_violations(delivered: Sequence[Arrival], limit: int, window: float, gap: float) -> list[str]:
    """Every breach of the limits in the delivered messages, described (empty: compliant)."""
    problems = [
        f"account {account}: {limit + 1} sends within {b - a:.3f}s"
        for account, times in by_account(delivered).items()
        for a, b in window_violations(times, limit, window)
    ]
    problems += [
        f"fan {chat}: two sends {b - a:.3f}s apart"
        for chat, times in by_chat(delivered).items()
        for a, b in spacing_violations(times, gap)
    ]
    return problems


def pace(times: Sequence[float], limit: int, window: float) -> float:
    """How close a backlog's sends came to the fastest compliant schedule: the shortest span n sends can
    take (a burst of `limit` every `window`) over the span they took. 1.0 is the limit itself."""
    ordered = sorted(times)
    fastest = ((len(ordered) - 1) // limit) * window
    took = ordered[-1] - ordered[0]
    return 1.0 if took <= 0 else fastest / took
