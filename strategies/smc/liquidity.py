"""Liquidity pools (equal highs / lows) and sweeps of pools and structural swings."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from domain import Bar, LiquidityPool, LiquiditySweep, Swing, SwingKind


class _Level:
    """An untaken swing price other swings may still line up with (internal, mutable)."""

    __slots__ = ("anchor", "extreme", "limit", "members", "pool", "side")

    def __init__(self, swing: Swing, tolerance: float) -> None:
        self.side = swing.kind
        self.anchor = swing.price  # grouping reference: the first swing, as in the package
        self.extreme = swing.price  # where the resting stops actually sit
        sign = 1.0 if swing.kind is SwingKind.HIGH else -1.0
        self.limit = swing.price + sign * tolerance  # beyond this it is no longer "equal"
        self.members: list[int] = [swing.index]
        self.pool: LiquidityPool | None = None

    @property
    def trigger(self) -> float:
        """Price past which this level is taken: a pool's extreme, a lone swing's limit."""
        return self.extreme if self.pool is not None else self.limit


class LiquidityTracker:
    """Groups swings of one kind lying within ``tolerance`` of an earlier, untaken swing
    into a pool, and reports sweeps.

    A pool exists from the bar its second swing is confirmed. It is taken once price trades
    beyond its most extreme swing; if that bar closes back inside, it is a *sweep* (stops
    run, then rejected), otherwise a run through it. Either way it is published once more
    with ``swept_index`` set, on that bar, and leaves the snapshot on the next.
    A lone swing stays open for grouping until price goes beyond it by more than the
    tolerance (so a marginally higher second top still counts as equal). The latest
    structural swing high / low is also swept-checked on its own: a wick through the last
    swing with a close back inside is the commonest sweep a strategy trades.
    """

    __slots__ = (
        "_high_trigger",
        "_highs",
        "_last_high",
        "_last_low",
        "_low_trigger",
        "_lows",
        "_max_pools",
        "_pools_dirty",
        "_taken",
        "pools",
        "sweeps",
        "version",
    )

    def __init__(self, max_levels: int = 50, max_pools: int = 10, max_sweeps: int = 10) -> None:
        self._highs: deque[_Level] = deque(maxlen=max_levels)
        self._lows: deque[_Level] = deque(maxlen=max_levels)
        self._high_trigger = float("inf")
        self._low_trigger = float("-inf")
        self._last_high: Swing | None = None  # latest structural swings, until taken
        self._last_low: Swing | None = None
        self._max_pools = max_pools
        self._pools_dirty = False
        self._taken: list[LiquidityPool] = []  # pools taken this bar, published once more
        self.pools: tuple[LiquidityPool, ...] = ()
        self.sweeps: deque[LiquiditySweep] = deque(maxlen=max_sweeps)
        self.version = 0

    def on_swing(self, swing: Swing, tolerance: float, replaces: Swing | None = None) -> None:
        """Register a structural swing. ``replaces`` is the less extreme swing of the same
        leg it supersedes: two tops of one leg are not "equal highs", so a lone level left
        by the superseded swing is withdrawn rather than allowed to pair with its successor.
        """
        high = swing.kind is SwingKind.HIGH
        if replaces is not None:
            self._withdraw(replaces)
        if high:
            self._last_high = swing
        else:
            self._last_low = swing
        levels = self._highs if high else self._lows
        for level in levels:
            if abs(swing.price - level.anchor) <= tolerance:
                level.members.append(swing.index)
                if (swing.price > level.extreme) if high else (swing.price < level.extreme):
                    level.extreme = swing.price
                level.pool = LiquidityPool(
                    side=swing.kind,
                    level=level.extreme,
                    swing_indices=tuple(level.members),
                    index=swing.confirmed_index,
                )
                self._pools_dirty = True
                break
        else:
            levels.append(_Level(swing, tolerance))
        self._triggers()

    def _withdraw(self, swing: Swing) -> None:
        levels = self._highs if swing.kind is SwingKind.HIGH else self._lows
        for level in levels:
            if level.pool is None and level.members[0] == swing.index:
                levels.remove(level)
                break

    def update(self, index: int, bar: Bar) -> None:
        if self._taken:
            self._taken = []
            self._pools_dirty = True
        swept: set[int] = set()
        if bar.high > self._high_trigger:
            self._take(self._highs, index, bar, swept)
        if bar.low < self._low_trigger:
            self._take(self._lows, index, bar, swept)
        last = self._last_high
        if last is not None and bar.high > last.price:
            self._last_high = None
            if bar.close < last.price and last.index not in swept:
                self._sweep(SwingKind.HIGH, last.price, last.index, index, bar)
        last = self._last_low
        if last is not None and bar.low < last.price:
            self._last_low = None
            if bar.close > last.price and last.index not in swept:
                self._sweep(SwingKind.LOW, last.price, last.index, index, bar)
        if self._pools_dirty:
            self._publish()

    def _take(self, levels: deque[_Level], index: int, bar: Bar, swept: set[int]) -> None:
        high = levels is self._highs
        kept: list[_Level] = []
        for level in levels:
            taken = bar.high > level.trigger if high else bar.low < level.trigger
            if not taken:
                kept.append(level)
                continue
            if level.pool is not None:
                self._taken.append(replace(level.pool, swept_index=index))
                self._pools_dirty = True
                swept.update(level.members)
                inside = bar.close < level.extreme if high else bar.close > level.extreme
                if inside:
                    self._sweep(level.side, level.extreme, level.members[0], index, bar)
        if len(kept) != len(levels):
            levels.clear()
            levels.extend(kept)
            self._triggers()

    def _sweep(self, side: SwingKind, level: float, ref: int, index: int, bar: Bar) -> None:
        self.sweeps.append(LiquiditySweep(side, level, ref, index, bar.time))
        self.version += 1

    def _publish(self) -> None:
        """The most recent ``max_pools`` pools, oldest first, by the bar they became known."""
        live = [lv.pool for lv in (*self._highs, *self._lows) if lv.pool is not None]
        live.extend(self._taken)
        live.sort(key=lambda p: (p.index, p.swing_indices[0]))
        self.pools = tuple(live[-self._max_pools :])
        self._pools_dirty = False
        self.version += 1

    def _triggers(self) -> None:
        self._high_trigger = min((lv.trigger for lv in self._highs), default=float("inf"))
        self._low_trigger = max((lv.trigger for lv in self._lows), default=float("-inf"))
