"""Incremental Smart Money Concepts state -> one ``MarketSnapshot`` per closed bar."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from domain import (
    Bar,
    FairValueGap,
    LiquiditySweep,
    MarketSnapshot,
    OrderBlock,
    StructureBreak,
    Swing,
)
from strategies.smc.atr import WilderAtr
from strategies.smc.dealing_range import premium_discount
from strategies.smc.fvg import FvgTracker
from strategies.smc.legs import LegExtremes
from strategies.smc.liquidity import LiquidityTracker
from strategies.smc.order_blocks import OrderBlockTracker
from strategies.smc.sessions import session_of
from strategies.smc.structure import StructureTracker
from strategies.smc.swings import SwingChange, SwingDetector, SwingSequence


class SnapshotBuilder:
    """Feeds each closed bar to the SMC detectors and assembles what is known at its close.

    One builder per (symbol, timeframe). ``update`` is O(1) amortised and memory is bounded:
    every history is a ``deque`` with a ``maxlen``. The snapshot after bar t equals what a
    fresh builder computes from bars[:t+1], because every detector only looks backwards
    and an event is published at the bar that confirms it, never earlier.

    Tuples in the snapshot are rebuilt only when their detector reports a change (each
    keeps a ``version`` counter), so a quiet bar costs little more than the bar window and
    the snapshot object itself.

    Parameters (all keyword, all defaulted, so a parameter document can set any subset):
    ``swing_length`` bars each side that prove a swing, ``swing_mode`` "strict" or
    "package" (see ``SwingDetector``); ``break_on`` "close" or "wick"; ``classify``
    "pattern" or "trend" (see ``StructureTracker``);
    ``equal_tolerance_atr`` how close (in ATRs) two swings must be to form a liquidity pool,
    or ``equal_tolerance_price`` to fix it in price units; ``ob_invalidate_on`` what breaks
    an order block; ``fvg_min_size_atr`` the smallest gap kept; ``equilibrium_band`` the
    half-width (fraction of the dealing range) around 50% called equilibrium; the ``max_*``
    and ``keep_bars`` bound how much of each history the snapshot carries.
    """

    def __init__(
        self,
        *,
        swing_length: int = 5,
        atr_period: int = 14,
        keep_bars: int = 50,
        swing_mode: str = "strict",
        break_on: str = "close",
        classify: str = "pattern",
        max_swings: int = 20,
        max_events: int = 10,
        equal_tolerance_atr: float = 0.2,
        equal_tolerance_price: float | None = None,
        max_pools: int = 10,
        max_levels: int = 50,
        max_blocks: int = 10,
        ob_invalidate_on: str = "close",
        max_fvgs: int = 10,
        fvg_min_size_atr: float = 0.0,
        equilibrium_band: float = 0.05,
    ) -> None:
        if keep_bars < 1:
            raise ValueError(f"keep_bars must be >= 1, got {keep_bars}")
        if max_swings < 2:  # structure reads the swing before the latest one
            raise ValueError(f"max_swings must be >= 2, got {max_swings}")
        self._index = -1
        self._bars: deque[Bar] = deque(maxlen=keep_bars)
        self._atr = WilderAtr(atr_period)
        self._swing_detector = SwingDetector(swing_length, swing_mode)
        self._swings = SwingSequence(max_swings)
        self._legs = LegExtremes(swing_length)
        self._structure = StructureTracker(break_on, max_events, classify)
        self._liquidity = LiquidityTracker(max_levels, max_pools, max_events)
        self._blocks = OrderBlockTracker(max_blocks, ob_invalidate_on)
        self._fvgs = FvgTracker(max_fvgs)
        self._tol_atr = equal_tolerance_atr
        self._tol_price = equal_tolerance_price
        self._fvg_min_atr = fvg_min_size_atr
        self._band = equilibrium_band
        # Published tuples and the detector versions they were built from.
        self._swings_t: tuple[Swing, ...] = ()
        self._bos_t: tuple[StructureBreak, ...] = ()
        self._choch_t: tuple[StructureBreak, ...] = ()
        self._sweeps_t: tuple[LiquiditySweep, ...] = ()
        self._blocks_t: tuple[OrderBlock, ...] = ()
        self._mitigation_t: tuple[OrderBlock, ...] = ()
        self._fvgs_t: tuple[FairValueGap, ...] = ()
        self._structure_v = self._liquidity_v = self._blocks_v = self._fvgs_v = 0

    @property
    def index(self) -> int:
        """Index of the last bar fed (-1 before the first)."""
        return self._index

    def update(self, bar: Bar) -> MarketSnapshot:
        self._index += 1
        index = self._index
        self._bars.append(bar)
        atr = self._atr.update(bar)
        confirmed = self._swing_detector.update(index, bar)
        if confirmed:
            self._on_swings(confirmed, atr)
        breaks = self._structure.update(index, bar, self._legs)
        self._blocks.update(index, bar, breaks)
        self._legs.fold(index, bar)
        self._liquidity.update(index, bar)
        if atr is not None and self._fvg_min_atr:
            self._fvgs.min_size = self._fvg_min_atr * atr
        self._fvgs.update(index, bar)
        self._republish()
        return self._snapshot(index, bar, atr)

    def _on_swings(self, confirmed: Sequence[Swing], atr: float | None) -> None:
        """Swings confirmed at this bar, in order: each one that the sequence keeps moves
        structure, legs and liquidity (a replaced swing hands its pool over)."""
        swings = self._swings
        tolerance = self._tolerance(atr)
        changed = False
        for swing in confirmed:
            before = swings.latest()
            change = swings.push(swing)
            if change is SwingChange.IGNORED:
                continue
            changed = True
            self._structure.on_swing(swing, swings.prior())
            self._legs.on_swing(swing)
            self._liquidity.on_swing(
                swing, tolerance, before if change is SwingChange.REPLACED else None
            )
        if changed:
            self._swings_t = swings.as_tuple()

    def _snapshot(self, index: int, bar: Bar, atr: float | None) -> MarketSnapshot:
        high, low = self._swings.last_high, self._swings.last_low
        if high is not None and low is not None:
            # A swing low can sit above the last swing high after a gap; order the pair.
            bottom, top = sorted((low.price, high.price))
            dealing_range: tuple[float, float] | None = (bottom, top)
            zone: str | None = premium_discount(bar.close, bottom, top, self._band)
        else:
            dealing_range = None
            zone = None
        # Positional: this runs every bar, and matching 18 keywords to fields is a large
        # part of the constructor's cost. The order is MarketSnapshot's field order.
        return MarketSnapshot(
            bar.symbol,
            bar.timeframe,
            index,
            bar,
            tuple(self._bars),
            atr,
            self._structure.trend,
            self._swings_t,
            self._bos_t,
            self._choch_t,
            self._sweeps_t,
            self._liquidity.pools,
            self._blocks_t,
            self._mitigation_t,
            self._fvgs_t,
            dealing_range,
            zone,
            session_of(bar.time),
        )

    def _tolerance(self, atr: float | None) -> float:
        if self._tol_price is not None:
            return self._tol_price
        return self._tol_atr * atr if atr is not None else 0.0

    def _republish(self) -> None:
        """Rebuild only the tuples whose detector changed since the last bar."""
        s = self._structure
        if s.version != self._structure_v:
            self._structure_v = s.version
            self._bos_t = tuple(s.bos)
            self._choch_t = tuple(s.choch)
        liq = self._liquidity
        if liq.version != self._liquidity_v:
            self._liquidity_v = liq.version
            self._sweeps_t = tuple(liq.sweeps)
        ob = self._blocks
        if ob.version != self._blocks_v:
            self._blocks_v = ob.version
            self._blocks_t = tuple(ob.active)
            self._mitigation_t = tuple(ob.mitigated)
        fv = self._fvgs
        if fv.version != self._fvgs_v:
            self._fvgs_v = fv.version
            self._fvgs_t = tuple(fv.open)
