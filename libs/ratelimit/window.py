"""The arithmetic of a rolling window, shared by the in-process limiters and mirrored by the Lua scripts.

A schedule of sends respects "at most `limit` sends in any window of `window` ms" exactly when every run of
`limit` + 1 consecutive sends (sorted by time) spans at least `window` ms: a half-open window [x, x+window)
then never holds more than `limit` of them. A slot may be planned between slots planned earlier (another
recipient's delivery may go before a delivery held back by its recipient's spacing), so a candidate is
checked against every run it would join, not only against the past. An account with several windows (a
minute and an hour) gets the earliest slot that fits all of them (`earliest_slot_within`).

An urgent delivery (high or critical) may take a slot ahead of bulk ones planned before it (`make_room`):
its slot is the earliest that fits the slots it must respect (sent or about to be, other urgent ones), and
the movable bulk slots nearest to it give way until it fits among all of them; they are planned again after.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable, Sequence


def fits(slots: Sequence[int], candidate: int, limit: int, window: int) -> bool:
    """Whether adding `candidate` to the sorted `slots` keeps every run of limit+1 sends `window` apart."""
    k = bisect_right(slots, candidate)  # candidate goes after the slots at the same time
    merged = [*slots[:k], candidate, *slots[k:]]
    for first in range(max(0, k - limit), k + 1):
        last = first + limit
        if last < len(merged) and merged[last] - merged[first] < window:
            return False
    return True


def earliest_slot(slots: Sequence[int], not_before: int, limit: int, window: int) -> int:
    """The earliest time ≥ `not_before` at which one more send fits among the sorted `slots`.

    A time is infeasible only inside some interval (run_end - window, run_start + window) of `limit`
    existing slots spanning less than `window`, so the earliest feasible time is `not_before` itself or
    a slot + `window`; the last slot + `window` always fits.
    """
    relevant = [s for s in slots if s > not_before - window]
    if fits(relevant, not_before, limit, window):
        return not_before
    for slot in relevant:
        candidate = slot + window
        if candidate > not_before and fits(relevant, candidate, limit, window):
            return candidate
    raise AssertionError("unreachable: the last slot + window always fits")  # pragma: no cover


def earliest_slot_within(
    slots: Sequence[int], not_before: int, windows: Sequence[tuple[int, int]]
) -> tuple[int, int | None]:
    """The earliest time ≥ `not_before` at which one more send fits every (limit, window) of `windows`, and
    the index of the last-listed window that pushed it later (None: it fits at `not_before`).

    Each window's earliest slot from the current candidate never passes the common earliest one (that one
    fits each window), so moving to it until all agree reaches exactly the common earliest slot.
    """
    slot, pushed_by = not_before, None
    moved = True
    while moved:
        moved = False
        for index, (limit, window) in enumerate(windows):
            later = earliest_slot(slots, slot, limit, window)
            if later > slot:
                slot, moved = later, True
                pushed_by = index if pushed_by is None else max(pushed_by, index)
    return slot, pushed_by


def fits_within(slots: Sequence[int], candidate: int, windows: Sequence[tuple[int, int]]) -> bool:
    """Whether adding `candidate` to the sorted `slots` keeps every (limit, window) of `windows`."""
    return all(fits(slots, candidate, limit, window) for limit, window in windows)


def make_room(
    fixed: Sequence[int],
    bulk: Sequence[int],
    not_before: int,
    windows: Sequence[tuple[int, int]],
    movable: Callable[[int], bool],
) -> tuple[int, int | None, list[int]]:
    """An urgent delivery's slot among the sorted `fixed` slots (they stay) and the sorted `bulk` ones (they
    may give way): (the slot, the window that pushed it as in `earliest_slot_within`, the indexes into `bulk`
    of the slots it displaces, nearest first).

    The slot is the earliest ≥ `not_before` that fits `fixed` alone. Bulk slots give way nearest to it first
    (the later of two as near), each only if `movable(index)` says so, until the slot fits among what is
    left. One that may not move counts as fixed from then on and the search starts again, so the answer
    always fits: with every movable slot gone, only fixed ones are left, and the slot fits those.
    """
    fixed = list(fixed)
    stays: set[int] = set()  # indexes of bulk slots found not movable
    while True:
        slot, pushed_by = earliest_slot_within(fixed, not_before, windows)
        others = sorted([*fixed, *(s for i, s in enumerate(bulk) if i not in stays)])
        nearest = sorted((i for i in range(len(bulk)) if i not in stays), key=lambda i: (abs(bulk[i] - slot), -bulk[i]))
        displaced: list[int] = []
        blocked = None
        for index in nearest:
            if fits_within(others, slot, windows):
                break
            if not movable(index):
                blocked = index
                break
            others.remove(bulk[index])
            displaced.append(index)
        if blocked is None:
            return slot, pushed_by, displaced
        stays.add(blocked)
        insort(fixed, bulk[blocked])


def retry_at(sent: Sequence[int], now: int, limit: int, window: int) -> int | None:
    """When one more send fits after the sorted past `sent` times (None: it fits at `now`)."""
    recent = [s for s in sent if s > now - window]
    if len(recent) < limit:
        return None
    return recent[len(recent) - limit] + window
