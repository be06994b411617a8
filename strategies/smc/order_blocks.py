"""Order blocks and mitigation blocks, formed by structure breaks and tracked to mitigation."""

from __future__ import annotations

from collections import deque

from domain import Bar, Direction, OrderBlock, StructureBreak
from strategies.smc.legs import LegPoint

INVALIDATE_ON = ("close", "wick")


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
        "_long_reach",
        "_short_reach",
        "_spent",
        "_wick",
        "mitigated",
        "version",
    )

    def __init__(self, max_blocks: int = 10, invalidate_on: str = "close") -> None:
        if invalidate_on not in INVALIDATE_ON:
            raise ValueError(
                f"ob_invalidate_on must be one of {INVALIDATE_ON}, got {invalidate_on!r}"
            )
        self._wick = invalidate_on == "wick"
        self._active: deque[OrderBlock] = deque(maxlen=max_blocks)
        self.mitigated: deque[OrderBlock] = deque(maxlen=max_blocks)
        self._long_reach = float("-inf")
        self._short_reach = float("inf")
        self._spent = False  # a block broken on the previous bar is still published
        self.version = 0

    @property
    def active(self) -> deque[OrderBlock]:
        return self._active

    def update(
        self, index: int, bar: Bar, breaks: list[tuple[StructureBreak, LegPoint | None]]
    ) -> None:
        """Mitigate / invalidate older blocks, then form blocks from this bar's breaks (so a
        block is never checked against the bar that identified it)."""
        if self._spent or bar.low <= self._long_reach or bar.high >= self._short_reach:
            self._track(index, bar)
        for brk, leg in breaks:
            if leg is not None:
                self._form(brk, leg, index)

    def _form(self, brk: StructureBreak, leg: LegPoint, index: int) -> None:
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
                ob = _with(ob, ob.mitigated_index, index)
                changed = self._spent = True
            mitigated.append(ob)
        for ob in self._active:
            long = ob.direction is Direction.LONG
            if (bar.low <= ob.top) if long else (bar.high >= ob.bottom):
                ob = _with(ob, index, None)
                if self._broken(ob, bar):
                    ob = _with(ob, ob.mitigated_index, index)
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


def _with(ob: OrderBlock, mitigated: int | None, broken: int | None) -> OrderBlock:
    """``dataclasses.replace`` without its introspection, for the per-bar path."""
    return OrderBlock(
        ob.direction, ob.top, ob.bottom, ob.index, ob.known_index, mitigated, broken,
        ob.break_kind, ob.swing_index,
    )
