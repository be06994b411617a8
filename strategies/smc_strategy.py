"""Reference SMC trade logic: trade the first retest of the order block behind a CHoCH."""

from __future__ import annotations

from collections.abc import Sequence

from domain import (
    BreakKind,
    Direction,
    MarketSnapshot,
    OrderBlock,
    Proposal,
    SwingKind,
    Trend,
)
from domain.glossary import Tag
from strategies.logic import StrategyContext


class SmcOrderBlockRetest:
    """After a change of character, buy (sell) the first return into the order block that
    caused it; stop beyond the block, target the next opposing liquidity pool.

    Why this setup: the CHoCH says the other side has taken control, and the block is
    where it did so; a first retest gives a tight, structural stop. Later retests of the
    same block are skipped (the orders resting there have been filled), as are retests
    more than ``max_wait_bars`` after the break (the impulse has gone stale) and retests
    once the trend has flipped again. The target is the nearest pool of equal highs (for a
    long) at least ``min_target_r`` risk units away, since resting stops there are what
    price is drawn to; without one, a fixed ``risk_reward`` multiple of the risk.

    Stateless: everything it needs is in the snapshot (a block's ``mitigated_index`` is the
    bar of its first retest), so replays and restarts give identical proposals.
    """

    name = "smc_ob_retest"

    def __init__(
        self,
        *,
        risk_reward: float = 2.0,
        min_target_r: float = 1.5,
        max_wait_bars: int = 48,
        stop_buffer_atr: float = 0.25,
        max_risk_atr: float = 6.0,
        require_choch: bool = True,
    ) -> None:
        if risk_reward <= 0 or min_target_r <= 0:
            raise ValueError("risk_reward and min_target_r must be positive")
        if max_wait_bars < 1:
            raise ValueError(f"max_wait_bars must be >= 1, got {max_wait_bars}")
        self.risk_reward = risk_reward
        self.min_target_r = min_target_r
        self.max_wait_bars = max_wait_bars
        self.stop_buffer_atr = stop_buffer_atr
        self.max_risk_atr = max_risk_atr
        self.require_choch = require_choch

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        atr = snapshot.atr
        if not ctx.position.is_flat or atr is None:
            return ()
        for block in reversed(snapshot.mitigation_blocks):
            if self._eligible(block, snapshot):
                proposal = self._propose(block, snapshot, atr)
                if proposal is not None:
                    return (proposal,)
        return ()

    def _eligible(self, block: OrderBlock, snapshot: MarketSnapshot) -> bool:
        if block.mitigated_index != snapshot.index or block.broken_index is not None:
            return False
        if self.require_choch and block.break_kind is not BreakKind.CHOCH:
            return False
        if snapshot.index - block.known_index > self.max_wait_bars:
            return False
        wanted = Trend.BULLISH if block.direction is Direction.LONG else Trend.BEARISH
        return snapshot.trend is wanted

    def _propose(self, block: OrderBlock, snapshot: MarketSnapshot, atr: float) -> Proposal | None:
        long = block.direction is Direction.LONG
        entry = snapshot.bar.close
        buffer = self.stop_buffer_atr * atr
        stop = block.bottom - buffer if long else block.top + buffer
        risk = entry - stop if long else stop - entry
        if risk <= 0 or risk > self.max_risk_atr * atr:
            return None
        target, pool_level = self._target(snapshot, entry, risk, long)
        side = "bullish" if long else "bearish"
        tags = [
            Tag(f"choch_{side}") if block.break_kind is BreakKind.CHOCH else Tag(f"bos_{side}"),
            Tag(f"order_block_{side}"),
            Tag(f"mitigation_block_{side}"),
        ]
        if pool_level is not None:
            tags.append(Tag.LIQUIDITY_POOL_BUYSIDE if long else Tag.LIQUIDITY_POOL_SELLSIDE)
        if snapshot.premium_discount is not None:
            tags.append(Tag(snapshot.premium_discount))
        if snapshot.session is not None:
            tags.append(Tag(f"session_{snapshot.session}"))
        kind = block.break_kind.value if block.break_kind is not None else "break"
        aim = (
            f"{'buy' if long else 'sell'}-side pool at {pool_level:.5f}"
            if pool_level is not None
            else f"{self.risk_reward:g}R"
        )
        reason = (
            f"{side} {kind} at bar {block.known_index}; first retest of the order block "
            f"{block.bottom:.5f}-{block.top:.5f} (bar {block.index}); target {aim}"
        )
        return Proposal(
            strategy=self.name,
            symbol=snapshot.symbol,
            timeframe=snapshot.timeframe,
            bar_time=snapshot.bar.time,
            direction=block.direction,
            entry=entry,
            stop=stop,
            target=target,
            reason=reason,
            tags=tuple(t.value for t in tags),
        )

    def _target(
        self, snapshot: MarketSnapshot, entry: float, risk: float, long: bool
    ) -> tuple[float, float | None]:
        """Nearest opposing pool far enough away to be worth the risk, else fixed R."""
        side = SwingKind.HIGH if long else SwingKind.LOW
        reach = self.min_target_r * risk
        best: float | None = None
        for pool in snapshot.liquidity_pools:
            if pool.side is not side or pool.swept_index is not None:
                continue
            distance = pool.level - entry if long else entry - pool.level
            if distance >= reach and (best is None or distance < abs(best - entry)):
                best = pool.level
        if best is not None:
            return best, best
        fixed = entry + self.risk_reward * risk if long else entry - self.risk_reward * risk
        return fixed, None
