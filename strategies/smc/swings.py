"""Swing highs and lows, confirmed only once the bars that prove them have closed."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from enum import Enum

from strategies.domain import Bar, Swing, SwingKind


class SwingDetector:
    """Fractal swings: bar i is a swing high when its high is the strict maximum of the
    window [i-L, i+L]; the swing is confirmed at bar i+L.

    The window is symmetric and the comparison strict so that exactly one bar of a flat
    top qualifies per window; equal tops are left to the liquidity-pool detector, which
    is where they carry meaning. Cost per bar is O(L) over a fixed ring, i.e. O(1) in
    the length of the stream.
    """

    __slots__ = ("_highs", "_length", "_lows", "_times", "_window")

    def __init__(self, length: int = 5) -> None:
        if length < 1:
            raise ValueError(f"swing_length must be >= 1, got {length}")
        self._length = length
        self._window = 2 * length + 1
        self._highs: deque[float] = deque(maxlen=self._window)
        self._lows: deque[float] = deque(maxlen=self._window)
        self._times: deque[datetime] = deque(maxlen=self._window)

    def update(self, index: int, bar: Bar) -> list[Swing]:
        """Swings confirmed by ``bar`` (at most one high and one low), highs first."""
        highs, lows = self._highs, self._lows
        highs.append(bar.high)
        lows.append(bar.low)
        self._times.append(bar.time)
        if len(highs) < self._window:
            return []
        mid = self._length
        found: list[Swing] = []
        h = highs[mid]
        if max(highs) == h and highs.count(h) == 1:
            found.append(
                Swing(SwingKind.HIGH, index - mid, self._times[mid], h, index, bar.time)
            )
        lo = lows[mid]
        if min(lows) == lo and lows.count(lo) == 1:
            found.append(
                Swing(SwingKind.LOW, index - mid, self._times[mid], lo, index, bar.time)
            )
        return found


class SwingChange(Enum):
    ADDED = "added"
    REPLACED = "replaced"
    IGNORED = "ignored"


class SwingSequence:
    """The alternating high/low sequence market structure is read from.

    Two highs in a row without a low between them are one leg: the more extreme one is
    the structural high. The ``smartmoneyconcepts`` package does the same, but over the
    whole series at once; here a later, higher high replaces the earlier one only from the
    bar it is confirmed, so every earlier snapshot keeps what was knowable then.
    """

    __slots__ = ("_items", "last_high", "last_low")

    def __init__(self, maxlen: int) -> None:
        self._items: deque[Swing] = deque(maxlen=maxlen)
        self.last_high: Swing | None = None
        self.last_low: Swing | None = None

    def push(self, swing: Swing) -> SwingChange:
        items = self._items
        if items and items[-1].kind is swing.kind:
            prev = items[-1]
            more_extreme = (
                swing.price > prev.price
                if swing.kind is SwingKind.HIGH
                else swing.price < prev.price
            )
            if not more_extreme:
                return SwingChange.IGNORED
            items[-1] = swing
            change = SwingChange.REPLACED
        else:
            items.append(swing)
            change = SwingChange.ADDED
        if swing.kind is SwingKind.HIGH:
            self.last_high = swing
        else:
            self.last_low = swing
        return change

    def latest(self) -> Swing | None:
        return self._items[-1] if self._items else None

    def previous(self, kind: SwingKind) -> Swing | None:
        """The swing of ``kind`` before the latest one of that kind, if still held."""
        seen = False
        for s in reversed(self._items):
            if s.kind is kind:
                if seen:
                    return s
                seen = True
        return None

    def as_tuple(self) -> tuple[Swing, ...]:
        return tuple(self._items)
