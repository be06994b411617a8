"""Swing-breakout reference strategy: trade a fresh break of structure.

On the bar that breaks the last confirmed swing (a BOS or CHoCH event known at this bar),
go with the break; stop beyond the opposing swing (or a multiple of ATR when that swing is
too close or missing); target a fixed multiple of the risk. Only from flat.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain import Direction, MarketSnapshot, Proposal, SwingKind
from strategies.logic import StrategyContext


class SwingBreakout:
    name = "swing_breakout"

    def __init__(self, *, risk_reward: float = 2.0, min_stop_atr: float = 0.5,
                 max_stop_atr: float = 3.0, use_choch: bool = True) -> None:
        if risk_reward <= 0 or min_stop_atr <= 0 or max_stop_atr < min_stop_atr:
            raise ValueError("risk_reward and stop bounds must be positive and ordered")
        self.risk_reward = risk_reward
        self.min_stop_atr = min_stop_atr
        self.max_stop_atr = max_stop_atr
        self.use_choch = use_choch

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        if not ctx.position.is_flat or not snapshot.atr:
            return ()
        events = list(snapshot.bos[-1:])
        if self.use_choch:
            events += snapshot.choch[-1:]
        fresh = [e for e in events if e.index == snapshot.index]
        if not fresh:
            return ()
        brk = max(fresh, key=lambda e: e.swing_index)
        entry = snapshot.bar.close
        atr = snapshot.atr
        opposing = SwingKind.LOW if brk.direction is Direction.LONG else SwingKind.HIGH
        swing = next((s for s in reversed(snapshot.swings) if s.kind is opposing), None)
        sign = brk.direction.sign
        distance = (entry - swing.price) * sign if swing is not None else 0.0
        distance = min(max(distance, self.min_stop_atr * atr), self.max_stop_atr * atr)
        stop = entry - sign * distance
        target = entry + sign * distance * self.risk_reward
        return (Proposal(
            strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
            bar_time=snapshot.bar.time, direction=brk.direction, entry=entry, stop=stop,
            target=target,
            reason=f"{brk.kind.value} {brk.direction.value} through {brk.level:.5f}",
            tags=(f"{brk.kind.value}_{'bullish' if sign > 0 else 'bearish'}",)),)
