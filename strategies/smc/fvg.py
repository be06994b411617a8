"""Fair value gaps (three-candle imbalances) and how far price has filled them."""

from __future__ import annotations

from collections import deque

from domain import Bar, Direction, FairValueGap


class FvgTracker:
    """A bullish gap at candle i: high[i-1] < low[i+1] with candle i closing up; bearish
    mirrored. Known once candle i+1 closes, which is the bar it is published at.

    Open gaps are followed until price trades through the whole gap; the first trade into
    it sets ``touched_index``. A filled gap is published once more, with ``filled_index``
    set, on the bar that filled it, and leaves the snapshot on the next bar: an imbalance
    that has been fully rebalanced no longer attracts price. ``min_size`` (price units, 0 keeps
    every gap as the ``smartmoneyconcepts`` package does) drops one-tick gaps when wanted.
    """

    __slots__ = (
        "_b1",
        "_b2",
        "_long_reach",
        "_open",
        "_short_reach",
        "_spent",
        "min_size",
        "version",
    )

    def __init__(self, max_gaps: int = 10, min_size: float = 0.0) -> None:
        self._b1: Bar | None = None  # previous bar (the middle candle of the next pattern)
        self._b2: Bar | None = None  # the bar before it
        self._open: deque[FairValueGap] = deque(maxlen=max_gaps)
        # Highest top of open bullish gaps / lowest bottom of open bearish ones: a bar that
        # stays clear of both cannot touch any gap, so the per-gap loop is skipped.
        self._long_reach = float("-inf")
        self._short_reach = float("inf")
        self._spent = False  # a gap filled on the previous bar is still published
        self.min_size = min_size
        self.version = 0

    @property
    def open(self) -> deque[FairValueGap]:
        return self._open

    def update(self, index: int, bar: Bar) -> None:
        if self._spent:
            kept = [g for g in self._open if g.filled_index is None]
            self._open = deque(kept, maxlen=self._open.maxlen)
            self._spent = False
            self.version += 1
        if bar.low <= self._long_reach or bar.high >= self._short_reach:
            self._track(index, bar)
        first, middle = self._b2, self._b1
        if first is not None and middle is not None:
            gap: FairValueGap | None = None
            size = self.min_size
            if middle.close > middle.open and first.high < bar.low:
                if bar.low - first.high >= size:
                    gap = FairValueGap(Direction.LONG, bar.low, first.high, index - 1, index)
            elif (
                middle.close < middle.open and first.low > bar.high and first.low - bar.high >= size
            ):
                gap = FairValueGap(Direction.SHORT, first.low, bar.high, index - 1, index)
            if gap is not None:
                self._open.append(gap)
                self._reaches()
                self.version += 1
        self._b2, self._b1 = middle, bar

    def _track(self, index: int, bar: Bar) -> None:
        gaps = self._open
        low, high = bar.low, bar.high
        changed = False
        for i, gap in enumerate(gaps):
            if gap.direction is Direction.LONG:
                touched, filled = low <= gap.top, low <= gap.bottom
            else:
                touched, filled = high >= gap.bottom, high >= gap.top
            if filled:
                touched_at = index if gap.touched_index is None else gap.touched_index
                gaps[i] = _with(gap, index, touched_at)
                changed = self._spent = True
            elif touched and gap.touched_index is None:
                gaps[i] = _with(gap, None, index)
                changed = True
        if changed:
            self._reaches()
            self.version += 1

    def _reaches(self) -> None:
        """Thresholds for the next bar; touched gaps only matter again once filled."""
        long_reach, short_reach = float("-inf"), float("inf")
        for gap in self._open:
            if gap.filled_index is not None:
                continue
            if gap.direction is Direction.LONG:
                edge = gap.top if gap.touched_index is None else gap.bottom
                if edge > long_reach:
                    long_reach = edge
            else:
                edge = gap.bottom if gap.touched_index is None else gap.top
                if edge < short_reach:
                    short_reach = edge
        self._long_reach, self._short_reach = long_reach, short_reach


def _with(gap: FairValueGap, filled: int | None, touched: int | None) -> FairValueGap:
    """``dataclasses.replace`` without its introspection: this runs on most bars."""
    return FairValueGap(
        gap.direction, gap.top, gap.bottom, gap.index, gap.known_index, filled, touched
    )
