"""Market structure: trend, break of structure (BOS) and change of character (CHoCH)."""

from __future__ import annotations

from collections import deque

from strategies.domain import Bar, BreakKind, Direction, StructureBreak, Swing, SwingKind, Trend

BREAK_ON = ("close", "wick")


class StructureTracker:
    """Breaks of the latest structural swing high / low, classified against the trend.

    A break in the direction of the prevailing trend (or from a neutral start) is a BOS; the
    first break against it is a CHoCH, and flips the trend. Each swing can be broken once:
    after that only a newly confirmed swing is a level worth breaking. Close-breaks are
    the default because a wick through a level is as often a liquidity sweep as a break.
    """

    __slots__ = (
        "_bottom",
        "_bottom_live",
        "_top",
        "_top_live",
        "_wick",
        "bos",
        "choch",
        "last_break",
        "trend",
        "version",
    )

    def __init__(self, break_on: str = "close", max_events: int = 10) -> None:
        if break_on not in BREAK_ON:
            raise ValueError(f"break_on must be one of {BREAK_ON}, got {break_on!r}")
        self._wick = break_on == "wick"
        self._top: Swing | None = None
        self._bottom: Swing | None = None
        self._top_live = False
        self._bottom_live = False
        self.trend = Trend.NEUTRAL
        self.bos: deque[StructureBreak] = deque(maxlen=max_events)
        self.choch: deque[StructureBreak] = deque(maxlen=max_events)
        self.last_break: StructureBreak | None = None
        self.version = 0  # bumped on every new event so callers can reuse cached tuples

    def on_swing(self, swing: Swing) -> None:
        """A new structural swing (added or replacing a less extreme one of the same leg)."""
        if swing.kind is SwingKind.HIGH:
            self._top, self._top_live = swing, True
        else:
            self._bottom, self._bottom_live = swing, True

    def update(self, index: int, bar: Bar) -> list[StructureBreak]:
        found: list[StructureBreak] = []
        top = self._top
        if self._top_live and top is not None:
            probe = bar.high if self._wick else bar.close
            if probe > top.price:
                self._top_live = False
                found.append(self._record(Direction.LONG, top, index, bar))
        bottom = self._bottom
        if self._bottom_live and bottom is not None:
            probe = bar.low if self._wick else bar.close
            if probe < bottom.price:
                self._bottom_live = False
                found.append(self._record(Direction.SHORT, bottom, index, bar))
        return found

    def _record(self, direction: Direction, swing: Swing, index: int, bar: Bar) -> StructureBreak:
        against = Trend.BEARISH if direction is Direction.LONG else Trend.BULLISH
        kind = BreakKind.CHOCH if self.trend is against else BreakKind.BOS
        event = StructureBreak(kind, direction, swing.price, swing.index, index, bar.time)
        (self.choch if kind is BreakKind.CHOCH else self.bos).append(event)
        self.trend = Trend.BULLISH if direction is Direction.LONG else Trend.BEARISH
        self.last_break = event
        self.version += 1
        return event
