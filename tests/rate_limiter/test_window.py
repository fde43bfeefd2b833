"""The rolling-window arithmetic both limiters (and the Lua scripts) implement."""

from __future__ import annotations

import random

from libs.ratelimit.window import earliest_slot, earliest_slot_within, fits, retry_at
from tests.delivery.compliance import window_violations


def _brute_force_fits(slots: list[int], candidate: int, limit: int, window: int) -> bool:
    """Every half-open window [x, x + window) holds at most `limit` sends (x at every send time)."""
    times = sorted([*slots, candidate])
    return all(sum(x <= t < x + window for t in times) <= limit for x in times)


def _brute_force_fits_all(slots: list[int], candidate: int, windows: list[tuple[int, int]]) -> bool:
    return all(_brute_force_fits(slots, candidate, limit, window) for limit, window in windows)


class TestWindow:
    def test_fits_matches_the_definition_of_a_rolling_window(self) -> None:
        """`fits` agrees with counting every window on hundreds of random schedules."""
        rng = random.Random(5)
        for _ in range(400):
            limit, window = rng.randint(1, 4), rng.randint(3, 12)
            slots: list[int] = []
            for _ in range(rng.randint(0, 12)):
                candidate = rng.randint(0, 60)
                if _brute_force_fits(slots, candidate, limit, window):
                    slots.append(candidate)
            slots.sort()
            candidate = rng.randint(0, 70)
            assert fits(slots, candidate, limit, window) == _brute_force_fits(slots, candidate, limit, window)

    def test_earliest_slot_is_compliant_and_nothing_earlier_is(self) -> None:
        """The planned slot fits, and every integer time between `not_before` and it would not."""
        rng = random.Random(11)
        for _ in range(300):
            limit, window = rng.randint(1, 3), rng.randint(2, 10)
            slots: list[int] = []
            for _ in range(rng.randint(1, 15)):
                not_before = rng.randint(0, 40)
                slot = earliest_slot(sorted(slots), not_before, limit, window)
                assert slot >= not_before
                assert _brute_force_fits(slots, slot, limit, window)
                assert not any(_brute_force_fits(slots, t, limit, window) for t in range(not_before, slot))
                slots.append(slot)
            assert window_violations(slots, limit, window) == []

    def test_a_held_back_slot_does_not_block_earlier_gaps(self) -> None:
        """A slot planned far ahead (one fan's spacing) leaves the time before it to others."""
        assert earliest_slot([100], 0, limit=1, window=10) == 0
        assert earliest_slot([0, 100], 0, limit=1, window=10) == 10
        assert earliest_slot([0, 15], 0, limit=1, window=10) == 25  # 10 would crowd 15

    def test_retry_at_is_when_the_oldest_counted_send_leaves_the_window(self) -> None:
        """With the window full, one more send fits when the limit-th newest send is a window old."""
        assert retry_at([100, 105], now=107, limit=3, window=10) is None
        assert retry_at([100, 105, 106], now=107, limit=3, window=10) == 110
        assert retry_at([90, 100, 105, 106], now=107, limit=3, window=10) == 110
        assert retry_at([96, 100], now=107, limit=1, window=10) == 110


class TestSeveralWindows:
    def test_earliest_slot_within_is_the_first_time_fitting_every_window(self) -> None:
        """With a short and a long window (a minute and an hour, scaled down), the planned slot fits both,
        no integer time before it does, and the plans never overfill either window."""
        rng = random.Random(17)
        for _ in range(300):
            windows = [(rng.randint(1, 3), rng.randint(2, 6)), (rng.randint(2, 6), rng.randint(8, 30))]
            slots: list[int] = []
            for _ in range(rng.randint(1, 15)):
                not_before = rng.randint(0, 60)
                slot, _ = earliest_slot_within(sorted(slots), not_before, windows)
                assert slot >= not_before and _brute_force_fits_all(slots, slot, windows)
                assert not any(_brute_force_fits_all(slots, t, windows) for t in range(not_before, slot))
                slots.append(slot)
            for limit, window in windows:
                assert window_violations(slots, limit, window) == []

    def test_it_says_which_window_pushed_the_slot(self) -> None:
        """None when the slot is `not_before`; 0 when only the short window pushed it; 1 when the long one did."""
        windows = [(2, 10), (3, 100)]
        assert earliest_slot_within([], 0, windows) == (0, None)
        assert earliest_slot_within([0, 0], 0, windows) == (10, 0)
        assert earliest_slot_within([0, 0, 10], 10, windows) == (100, 1)
