"""Swing highs and lows, confirmed only once the bars that prove them have closed."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from enum import Enum

from domain import Bar, Swing, SwingKind

SWING_MODES = ("strict", "package")


class SwingDetector:
    """Fractal swings, each confirmed ``length`` bars after the bar that made it.

    ``strict`` (default): bar i is a swing high when its high is the strict maximum of the
    symmetric window [i-L, i+L]. Strictness means one bar of a flat top qualifies per
    window; equal tops are left to the liquidity-pool detector, where they carry meaning.

    ``package`` reproduces ``smartmoneyconcepts.swing_highs_lows``: window [i-L+1, i+L]
    (its rolling-window offset), ties allowed, and a bar that is both a swing high and a
    swing low counts only as a high. Confirmation is still at bar i+L, the last bar of
    the window, so this mode is just as causal; it exists so the reference comparison can
    isolate the look-ahead differences from the choice of window.

    Cost per bar is O(L) over a fixed ring, i.e. O(1) in the length of the stream.
    """

    __slots__ = ("_highs", "_length", "_lows", "_mid", "_package", "_times", "_window")

    def __init__(self, length: int = 5, mode: str = "strict") -> None:
        if length < 1:
            raise ValueError(f"swing_length must be >= 1, got {length}")
        if mode not in SWING_MODES:
            raise ValueError(f"swing_mode must be one of {SWING_MODES}, got {mode!r}")
        self._length = length
        self._package = mode == "package"
        self._window = 2 * length if self._package else 2 * length + 1
        self._mid = length - 1 if self._package else length
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
        mid = self._mid
        at = index - self._length
        found: list[Swing] = []
        h = highs[mid]
        if max(highs) == h and (self._package or highs.count(h) == 1):
            found.append(Swing(SwingKind.HIGH, at, self._times[mid], h, index, bar.time))
            if self._package:
                return found
        lo = lows[mid]
        if min(lows) == lo and (self._package or lows.count(lo) == 1):
            found.append(Swing(SwingKind.LOW, at, self._times[mid], lo, index, bar.time))
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

    def prior(self) -> Swing | None:
        """The swing before the latest one: in an alternating sequence, the opposite kind."""
        return self._items[-2] if len(self._items) > 1 else None

    def as_tuple(self) -> tuple[Swing, ...]:
        return tuple(self._items)
