"""Market structure: trend, break of structure (BOS) and change of character (CHoCH)."""

from __future__ import annotations

from collections import deque

from domain import Bar, BreakKind, Direction, StructureBreak, Swing, SwingKind, Trend
from strategies.smc.legs import LegExtremes, LegPoint

BREAK_ON = ("close", "wick")
CLASSIFY = ("trend", "pattern")


class StructureTracker:
    """Breaks of the latest structural swing high / low, each swing broken at most once.

    Close-breaks are the default because a wick through a level is as often a liquidity
    sweep as a break. A break is classified one of two ways:

    ``pattern`` (default) reads the swings around the broken one, like the
    ``smartmoneyconcepts`` package: breaking a high after the pull-back from it held above
    the previous swing low (higher low) is a BOS; breaking it after the pull-back made a
    lower low is a CHoCH, the first sign the down-leg structure failed. The package needs
    the *next* swing high to be confirmed before it labels anything; here the pull-back
    low is the running leg extreme at the breaking bar, so the label is known at the break.

    ``trend``: a break against the direction of the last break is a CHoCH, else a BOS
    (the LuxAlgo convention). Either way ``trend`` follows the direction of the last break.
    """

    __slots__ = (
        "_bottom",
        "_bottom_live",
        "_bottom_prior",
        "_pattern",
        "_top",
        "_top_live",
        "_top_prior",
        "_wick",
        "bos",
        "choch",
        "trend",
        "version",
    )

    def __init__(
        self, break_on: str = "close", max_events: int = 10, classify: str = "pattern"
    ) -> None:
        if break_on not in BREAK_ON:
            raise ValueError(f"break_on must be one of {BREAK_ON}, got {break_on!r}")
        if classify not in CLASSIFY:
            raise ValueError(f"classify must be one of {CLASSIFY}, got {classify!r}")
        self._wick = break_on == "wick"
        self._pattern = classify == "pattern"
        self._top: Swing | None = None
        self._bottom: Swing | None = None
        self._top_prior: Swing | None = None  # the swing low before the structural high
        self._bottom_prior: Swing | None = None
        self._top_live = False
        self._bottom_live = False
        self.trend = Trend.NEUTRAL
        self.bos: deque[StructureBreak] = deque(maxlen=max_events)
        self.choch: deque[StructureBreak] = deque(maxlen=max_events)
        self.version = 0  # bumped on every new event so callers can reuse cached tuples

    def on_swing(self, swing: Swing, prior: Swing | None) -> None:
        """A new structural swing; ``prior`` is the opposite swing just before it, if any."""
        if swing.kind is SwingKind.HIGH:
            self._top, self._top_prior, self._top_live = swing, prior, True
        else:
            self._bottom, self._bottom_prior, self._bottom_live = swing, prior, True

    def update(
        self, index: int, bar: Bar, legs: LegExtremes
    ) -> list[tuple[StructureBreak, LegPoint | None]]:
        """Breaks made by ``bar``, each with the leg extreme (pull-back) it ended."""
        found: list[tuple[StructureBreak, LegPoint | None]] = []
        top = self._top
        up = bar.high if self._wick else bar.close
        if self._top_live and top is not None and up > top.price:
            self._top_live = False
            leg = legs.end_up()
            lower_low = self._made(leg, self._top_prior, below=True)
            found.append((self._record(Direction.LONG, top, lower_low, index, bar), leg))
        bottom = self._bottom
        down = bar.low if self._wick else bar.close
        if self._bottom_live and bottom is not None and down < bottom.price:
            self._bottom_live = False
            leg = legs.end_down()
            higher_high = self._made(leg, self._bottom_prior, below=False)
            found.append((self._record(Direction.SHORT, bottom, higher_high, index, bar), leg))
        return found

    @staticmethod
    def _made(leg: LegPoint | None, prior: Swing | None, *, below: bool) -> bool | None:
        """Did the pull-back go beyond the prior opposite swing? None when unknowable."""
        if leg is None or prior is None:
            return None
        return leg.price < prior.price if below else leg.price > prior.price

    def _record(
        self, direction: Direction, swing: Swing, failed: bool | None, index: int, bar: Bar
    ) -> StructureBreak:
        against = Trend.BEARISH if direction is Direction.LONG else Trend.BULLISH
        if self._pattern and failed is not None:
            kind = BreakKind.CHOCH if failed else BreakKind.BOS
        else:
            kind = BreakKind.CHOCH if self.trend is against else BreakKind.BOS
        event = StructureBreak(kind, direction, swing.price, swing.index, index, bar.time)
        (self.choch if kind is BreakKind.CHOCH else self.bos).append(event)
        self.trend = Trend.BULLISH if direction is Direction.LONG else Trend.BEARISH
        self.version += 1
        return event
