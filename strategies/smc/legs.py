"""The extreme of the leg since the latest structural swing, kept bar by bar."""

from __future__ import annotations

from collections import deque

from domain import Bar, Swing, SwingKind


class LegPoint:
    """The bar holding a leg's extreme so far (internal, mutable)."""

    __slots__ = ("bar", "index", "price")

    def __init__(self, index: int, bar: Bar, price: float) -> None:
        self.index = index
        self.bar = bar
        self.price = price


class LegExtremes:
    """Lowest low since the structural swing high, highest high since the swing low.

    Both structure classification (did the pull-back make a lower low?) and order-block
    identification (which candle made that low?) need this at the moment of a break.
    Keeping it as a running extreme makes it O(1) per bar instead of a scan back to the
    swing. Ties go to the latest bar, as in the ``smartmoneyconcepts`` package.
    """

    __slots__ = ("_down_live", "_recent", "_up_live", "down", "up")

    def __init__(self, swing_length: int) -> None:
        # A swing is confirmed swing_length bars after it, so the bars after it that are
        # already closed at confirmation are the last swing_length - 1 plus the current one.
        self._recent: deque[tuple[int, Bar]] = deque(maxlen=swing_length)
        self.up: LegPoint | None = None  # lowest low since the structural high
        self.down: LegPoint | None = None  # highest high since the structural low
        self._up_live = False
        self._down_live = False

    def on_swing(self, swing: Swing) -> None:
        """Restart the leg from the closed bars after a newly confirmed structural swing."""
        leg: LegPoint | None = None
        if swing.kind is SwingKind.HIGH:
            for i, b in self._recent:
                if i > swing.index and (leg is None or b.low <= leg.price):
                    leg = LegPoint(i, b, b.low)
            self.up, self._up_live = leg, True
        else:
            for i, b in self._recent:
                if i > swing.index and (leg is None or b.high >= leg.price):
                    leg = LegPoint(i, b, b.high)
            self.down, self._down_live = leg, True

    def end_up(self) -> LegPoint | None:
        """The swing high was broken: its leg is over until a new swing high starts one."""
        leg, self.up, self._up_live = self.up, None, False
        return leg

    def end_down(self) -> LegPoint | None:
        leg, self.down, self._down_live = self.down, None, False
        return leg

    def fold(self, index: int, bar: Bar) -> None:
        """Add a closed bar, after the breaks it caused were read (a breaking bar is never
        part of the leg it ends)."""
        self._recent.append((index, bar))
        if self._up_live:
            up = self.up
            if up is None:
                self.up = LegPoint(index, bar, bar.low)
            elif bar.low <= up.price:
                up.index, up.bar, up.price = index, bar, bar.low
        if self._down_live:
            down = self.down
            if down is None:
                self.down = LegPoint(index, bar, bar.high)
            elif bar.high >= down.price:
                down.index, down.bar, down.price = index, bar, bar.high
