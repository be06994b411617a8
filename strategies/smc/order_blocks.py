"""Order blocks and mitigation blocks, formed by structure breaks and tracked to mitigation."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from strategies.domain import Bar, Direction, OrderBlock, StructureBreak, Swing, SwingKind

INVALIDATE_ON = ("close", "wick")


class _LegExtreme:
    """Lowest low (or highest high) since a structural swing, last occurrence on ties.

    Running it bar by bar is what makes block identification O(1): the block candle of a
    bullish break is the candle that made the leg's low between the broken high and the
    breaking bar, which is exactly this running minimum at the moment of the break.
    """

    __slots__ = ("bar", "index", "price")

    def __init__(self, index: int, bar: Bar, price: float) -> None:
        self.index = index
        self.bar = bar
        self.price = price


class OrderBlockTracker:
    """Identifies an order block at every structure break and follows it until it breaks.

    Bullish (after a break up): the candle with the lowest low between the broken swing
    high and the breaking bar, the last opposing push before the displacement; bearish is
    mirrored. This is the ``smartmoneyconcepts`` package's choice of candle, computed with
    the same bars but at the breaking bar instead of over the whole series.

    A block price later trades back into (low <= top for a bullish one) becomes a
    *mitigation block* (``mitigated_index`` set); a close beyond its far side breaks it: it
    is published once with ``broken_index`` set, then leaves the snapshot. Blocks are only
    checked from the bar after the one that identified them, since the breaking bar's own
    range is the displacement, not a retest.
    """

    __slots__ = (
        "_active",
        "_down_leg",
        "_long_reach",
        "_recent",
        "_short_reach",
        "_spent",
        "_up_leg",
        "_wick",
        "mitigated",
        "version",
    )

    def __init__(self, swing_length: int, max_blocks: int = 10, invalidate_on: str = "close") -> None:
        if invalidate_on not in INVALIDATE_ON:
            raise ValueError(f"ob_invalidate_on must be one of {INVALIDATE_ON}, got {invalidate_on!r}")
        self._wick = invalidate_on == "wick"
        # Bars since a swing can only be seen once it is confirmed swing_length bars later.
        self._recent: deque[tuple[int, Bar]] = deque(maxlen=swing_length)
        self._up_leg: _LegExtreme | None = None  # lowest low since the structural high
        self._down_leg: _LegExtreme | None = None  # highest high since the structural low
        self._active: deque[OrderBlock] = deque(maxlen=max_blocks)
        self.mitigated: deque[OrderBlock] = deque(maxlen=max_blocks)
        self._long_reach = float("-inf")
        self._short_reach = float("inf")
        self._spent = False  # a block broken on the previous bar is still published
        self.version = 0

    @property
    def active(self) -> deque[OrderBlock]:
        return self._active

    def on_swing(self, swing: Swing) -> None:
        """Restart the leg extreme from the bars after a newly confirmed structural swing."""
        after = [(i, b) for i, b in self._recent if i > swing.index]
        if swing.kind is SwingKind.HIGH:
            leg: _LegExtreme | None = None
            for i, b in after:
                if leg is None or b.low <= leg.price:
                    leg = _LegExtreme(i, b, b.low)
            self._up_leg = leg
        else:
            leg = None
            for i, b in after:
                if leg is None or b.high >= leg.price:
                    leg = _LegExtreme(i, b, b.high)
            self._down_leg = leg

    def update(self, index: int, bar: Bar, breaks: list[StructureBreak]) -> None:
        """Mitigate / invalidate older blocks, form blocks from this bar's breaks, then fold
        the bar into the running leg extremes (so the breaking bar is never its own block)."""
        self._track(index, bar)
        for brk in breaks:
            self._form(brk, index)
        self._recent.append((index, bar))
        up = self._up_leg
        if up is not None and bar.low <= up.price:
            up.index, up.bar, up.price = index, bar, bar.low
        down = self._down_leg
        if down is not None and bar.high >= down.price:
            down.index, down.bar, down.price = index, bar, bar.high

    def _form(self, brk: StructureBreak, index: int) -> None:
        if brk.direction is Direction.LONG:
            leg, self._up_leg = self._up_leg, None
        else:
            leg, self._down_leg = self._down_leg, None
        if leg is None:
            return
        self._append(
            OrderBlock(
                direction=brk.direction,
                top=leg.bar.high,
                bottom=leg.bar.low,
                index=leg.index,
                known_index=index,
                break_kind=brk.kind,
                swing_index=brk.swing_index,
            )
        )

    def _append(self, ob: OrderBlock) -> None:
        self._active.append(ob)
        self._reaches()
        self.version += 1

    def _track(self, index: int, bar: Bar) -> None:
        if self._spent:
            self._active = deque(
                (ob for ob in self._active if ob.broken_index is None), maxlen=self._active.maxlen
            )
            self.mitigated = deque(
                (ob for ob in self.mitigated if ob.broken_index is None),
                maxlen=self.mitigated.maxlen,
            )
            self._spent = False
            self.version += 1
        if not (bar.low <= self._long_reach or bar.high >= self._short_reach):
            return
        changed = False
        fresh: list[OrderBlock] = []
        mitigated: list[OrderBlock] = []
        for ob in self.mitigated:
            if self._broken(ob, bar):
                ob = replace(ob, broken_index=index)
                changed = self._spent = True
            mitigated.append(ob)
        for ob in self._active:
            long = ob.direction is Direction.LONG
            if (bar.low <= ob.top) if long else (bar.high >= ob.bottom):
                ob = replace(ob, mitigated_index=index)
                if self._broken(ob, bar):
                    ob = replace(ob, broken_index=index)
                    self._spent = True
                changed = True
                mitigated.append(ob)
            else:
                fresh.append(ob)
        if changed:
            self._active = deque(fresh, maxlen=self._active.maxlen)
            self.mitigated = deque(mitigated, maxlen=self.mitigated.maxlen)
            self._reaches()
            self.version += 1

    def _reaches(self) -> None:
        """Price a bar must reach before any block can change: skips the loop on quiet bars."""
        long_reach, short_reach = float("-inf"), float("inf")
        for ob in self._active:
            if ob.direction is Direction.LONG:
                long_reach = max(long_reach, ob.top)
            else:
                short_reach = min(short_reach, ob.bottom)
        for ob in self.mitigated:
            if ob.broken_index is not None:
                continue
            if ob.direction is Direction.LONG:
                long_reach = max(long_reach, ob.bottom)
            else:
                short_reach = min(short_reach, ob.top)
        self._long_reach, self._short_reach = long_reach, short_reach

    def _broken(self, ob: OrderBlock, bar: Bar) -> bool:
        if ob.direction is Direction.LONG:
            return (bar.low if self._wick else bar.close) < ob.bottom
        return (bar.high if self._wick else bar.close) > ob.top
