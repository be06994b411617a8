"""Smart Money Concepts vocabulary and the causal market snapshot a strategy reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.bars import Bar


class Direction(StrEnum):
    LONG = "long"
    SHORT = "short"
    FLAT = "flat"

    @property
    def sign(self) -> int:
        return 1 if self is Direction.LONG else -1 if self is Direction.SHORT else 0


class Trend(StrEnum):
    BULLISH = "bullish"
    BEARISH = "bearish"
    NEUTRAL = "neutral"


class SwingKind(StrEnum):
    HIGH = "high"
    LOW = "low"


class BreakKind(StrEnum):
    BOS = "bos"
    CHOCH = "choch"


@dataclass(frozen=True, slots=True)
class Swing:
    """A swing high or low at bar ``index``, known only from bar ``confirmed_index`` on."""

    kind: SwingKind
    index: int
    time: datetime
    price: float
    confirmed_index: int
    confirmed_time: datetime


@dataclass(frozen=True, slots=True)
class StructureBreak:
    """A break of structure (BOS) or change of character (CHoCH/SMS).

    ``swing_index`` is the bar of the broken swing (the reference bar the
    ``smartmoneyconcepts`` package labels); ``index`` is the breaking bar, at which the
    event became known.
    """

    kind: BreakKind
    direction: Direction
    level: float
    swing_index: int
    index: int
    time: datetime


@dataclass(frozen=True, slots=True)
class LiquidityPool:
    """Equal highs (buy-side) or equal lows (sell-side) resting liquidity."""

    side: SwingKind
    level: float
    swing_indices: tuple[int, ...]
    index: int  # bar at which the pool became known (its last swing confirmed)
    swept_index: int | None = None


@dataclass(frozen=True, slots=True)
class LiquiditySweep:
    """A wick through a pool (or swing) with the close back inside."""

    side: SwingKind
    level: float
    pool_index: int  # first swing bar of the swept pool (the swing's own bar for a lone swing)
    index: int
    time: datetime


@dataclass(frozen=True, slots=True)
class OrderBlock:
    """The last opposing candle before a displacement that broke structure.

    A *mitigation block* is the same record with ``mitigated_index`` set: price came back
    into the block after it formed.
    """

    direction: Direction
    top: float
    bottom: float
    index: int  # the block candle
    known_index: int  # bar at which the block was identified
    mitigated_index: int | None = None
    broken_index: int | None = None
    break_kind: BreakKind | None = None  # the structure break that formed the block
    swing_index: int | None = None  # the swing that break took out


@dataclass(frozen=True, slots=True)
class FairValueGap:
    direction: Direction
    top: float
    bottom: float
    index: int  # middle candle of the three-bar pattern
    known_index: int  # third candle: the gap is known once it closes
    filled_index: int | None = None  # price traded through the whole gap
    touched_index: int | None = None  # price first traded into the gap


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Everything a strategy or provider may know at the close of bar ``index``.

    Built only from closed bars up to and including ``bar``: the snapshot after bar t equals
    what a fresh ``SnapshotBuilder`` computes from bars[:t+1].
    """

    symbol: str
    timeframe: str
    index: int
    bar: Bar
    bars: tuple[Bar, ...] = ()
    atr: float | None = None
    trend: Trend = Trend.NEUTRAL
    swings: tuple[Swing, ...] = ()
    bos: tuple[StructureBreak, ...] = ()
    choch: tuple[StructureBreak, ...] = ()
    sweeps: tuple[LiquiditySweep, ...] = ()
    liquidity_pools: tuple[LiquidityPool, ...] = ()
    order_blocks: tuple[OrderBlock, ...] = ()
    mitigation_blocks: tuple[OrderBlock, ...] = ()
    fvgs: tuple[FairValueGap, ...] = ()
    dealing_range: tuple[float, float] | None = None  # (low, high) between last swings
    premium_discount: str | None = None  # "premium" | "discount" | "equilibrium"
    session: str | None = None  # "asia" | "london" | "new_york" | None

    @property
    def time(self) -> datetime:
        return self.bar.time

    def summary(self) -> dict[str, Any]:
        """A compact JSON-able view for the journal and `dta trace`."""
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "index": self.index,
            "time": self.bar.time.isoformat(),
            "close": self.bar.close,
            "atr": self.atr,
            "trend": self.trend.value,
            "last_swings": [
                {"kind": s.kind.value, "index": s.index, "price": s.price}
                for s in self.swings[-4:]
            ],
            "last_bos": [_break_dict(b) for b in self.bos[-2:]],
            "last_choch": [_break_dict(b) for b in self.choch[-2:]],
            "premium_discount": self.premium_discount,
            "session": self.session,
            # The zones a person reads on a chart (the console's approvals): the newest
            # order blocks not yet broken, gaps not yet filled, and the last sweeps.
            "order_blocks": [
                {"direction": o.direction.value, "top": o.top, "bottom": o.bottom,
                 "index": o.index} for o in self.order_blocks if o.broken_index is None
            ][-3:],
            "fvgs": [
                {"direction": g.direction.value, "top": g.top, "bottom": g.bottom,
                 "index": g.index} for g in self.fvgs if g.filled_index is None
            ][-3:],
            "sweeps": [
                {"side": w.side.value, "level": w.level, "index": w.index}
                for w in self.sweeps[-2:]
            ],
        }


def _break_dict(b: StructureBreak) -> dict[str, Any]:
    return {"direction": b.direction.value, "level": b.level, "index": b.index}
