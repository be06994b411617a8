"""Deterministic local providers: no network, no key, same answer for the same snapshot."""

from __future__ import annotations

from domain import (
    Direction,
    MarketSnapshot,
    Proposal,
    Signal,
    StructureBreak,
    SwingKind,
    Trend,
)


class StructureProvider:
    """Votes with the market structure: the trend from the last break of structure, and
    whether the newest break (BOS or CHoCH) points the proposal's way."""

    def __init__(self, name: str = "structure", *, base_confidence: float = 0.6) -> None:
        self.name = name
        self.base_confidence = base_confidence

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        if snapshot.trend is Trend.NEUTRAL:
            return Signal(self.name, Direction.FLAT, 0.0, rationale="no structure yet",
                          abstain_reason="neutral structure: nothing to judge")
        trend_dir = Direction.LONG if snapshot.trend is Trend.BULLISH else Direction.SHORT
        last = _latest_break(snapshot)
        confidence = self.base_confidence
        tags: list[str] = [f"trend_{snapshot.trend.value}"]
        if last is not None:
            tags.append(_break_tag(last))
            if last.direction is trend_dir:
                confidence += 0.2
        if snapshot.premium_discount == ("discount" if trend_dir is Direction.LONG else "premium"):
            confidence += 0.1
        latest = f"{last.kind.value} {last.direction.value}" if last else "none"
        return Signal(self.name, trend_dir, min(confidence, 1.0),
                      rationale=f"trend {snapshot.trend.value}; latest break {latest}",
                      tags=tuple(tags))


class MomentumProvider:
    """Votes with the close's position against a simple moving average of the recent bars."""

    def __init__(self, name: str = "momentum", *, period: int = 20) -> None:
        if period < 2:
            raise ValueError("momentum period must be at least 2")
        self.name = name
        self.period = period

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        bars = snapshot.bars[-self.period:]
        if len(bars) < self.period:
            return Signal(self.name, Direction.FLAT, 0.0,
                          abstain_reason=f"needs {self.period} bars, snapshot has {len(bars)}")
        sma = sum(b.close for b in bars) / len(bars)
        close = snapshot.bar.close
        atr = snapshot.atr or abs(bars[-1].high - bars[-1].low) or 1e-12
        distance = (close - sma) / atr
        direction = (Direction.LONG if distance > 0 else
                     Direction.SHORT if distance < 0 else Direction.FLAT)
        if direction is Direction.FLAT:
            return Signal(self.name, direction, 0.0, abstain_reason="close equals its average")
        confidence = min(1.0, 0.5 + abs(distance) / 4.0)
        return Signal(self.name, direction, confidence,
                      rationale=f"close {distance:+.2f} ATR from SMA{self.period}")


def _latest_break(snapshot: MarketSnapshot) -> StructureBreak | None:
    candidates = snapshot.bos[-1:] + snapshot.choch[-1:]
    return max(candidates, key=lambda e: e.index) if candidates else None


def _break_tag(b: StructureBreak) -> str:
    return f"{b.kind.value}_{'bullish' if b.direction is Direction.LONG else 'bearish'}"


latest_break = _latest_break


class SmcRulesProvider:
    """Reads the snapshot's SMC events and scores the proposal's side against them.

    Evidence for the proposal's direction d, each from the snapshot alone:
    the newest structure break (BOS/CHoCH) within ``fresh_bars`` pointing d (+) or against
    it (-); an unbroken order block of direction d within ``block_reach_atr`` ATRs of the
    close (+); a recent sweep of the opposite side's liquidity, sell-side lows for a long
    (+), or of d's own side (-); discount for a long, premium for a short (+), the reverse
    (-). The sum moves a neutral 0.5: at or above ``vote_threshold`` it votes d, at or below
    ``1 - vote_threshold`` it votes against d, in between it abstains ("mixed evidence").
    """

    def __init__(self, name: str = "smc_rules", *, fresh_bars: int = 12,
                 sweep_bars: int = 12, block_reach_atr: float = 1.0,
                 vote_threshold: float = 0.6) -> None:
        if not 0.5 < vote_threshold <= 1.0:
            raise ValueError("vote_threshold must be in (0.5, 1]")
        self.name = name
        self.fresh_bars = fresh_bars
        self.sweep_bars = sweep_bars
        self.block_reach_atr = block_reach_atr
        self.vote_threshold = vote_threshold

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        d = proposal.direction
        if d is Direction.FLAT:
            return Signal(self.name, Direction.FLAT, 0.0, abstain_reason="flat proposal")
        side = "bullish" if d is Direction.LONG else "bearish"
        opposite = "bearish" if d is Direction.LONG else "bullish"
        score = 0.5
        why: list[str] = []
        tags: list[str] = []
        last = _latest_break(snapshot)
        if last is not None and snapshot.index - last.index <= self.fresh_bars:
            label = _break_tag(last)
            if last.direction is d:
                score += 0.2 if last.kind.value == "choch" else 0.15
                why.append(f"fresh {last.kind.value} with the trade")
                tags.append(label)
            elif last.direction is not Direction.FLAT:
                score -= 0.25
                why.append(f"fresh {last.kind.value} against the trade")
                tags.append(label)
        atr = snapshot.atr or (snapshot.bar.high - snapshot.bar.low) or 1e-12
        close = snapshot.bar.close
        for block in reversed(snapshot.order_blocks + snapshot.mitigation_blocks):
            if block.direction is not d or block.broken_index is not None:
                continue
            gap = 0.0 if block.bottom <= close <= block.top else min(
                abs(close - block.top), abs(close - block.bottom))
            if gap <= self.block_reach_atr * atr:
                score += 0.15
                why.append("unbroken order block at price")
                tags.append(f"order_block_{side}")
                break
        for sweep in reversed(snapshot.sweeps):
            if snapshot.index - sweep.index > self.sweep_bars:
                break
            # A sweep of the lows (sell-side) is bullish, of the highs (buy-side) bearish.
            bullish_sweep = sweep.side is SwingKind.LOW
            with_trade = bullish_sweep == (d is Direction.LONG)
            score += 0.1 if with_trade else -0.1
            why.append(f"recent {'sell' if bullish_sweep else 'buy'}-side sweep")
            tags.append("liquidity_sweep_sellside" if bullish_sweep
                        else "liquidity_sweep_buyside")
            break
        favoured = "discount" if d is Direction.LONG else "premium"
        if snapshot.premium_discount == favoured:
            score += 0.05
            tags.append(favoured)
        elif snapshot.premium_discount in ("premium", "discount"):
            score -= 0.05
            tags.append(snapshot.premium_discount)
        score = min(max(score, 0.0), 1.0)
        rationale = "; ".join(why) or "no SMC evidence either way"
        if score >= self.vote_threshold:
            return Signal(self.name, d, score, rationale=rationale, tags=tuple(tags))
        if score <= 1.0 - self.vote_threshold:
            against = Direction.SHORT if d is Direction.LONG else Direction.LONG
            return Signal(self.name, against, 1.0 - score,
                          rationale=f"{rationale} ({opposite} evidence)", tags=tuple(tags))
        return Signal(self.name, Direction.FLAT, 0.0, rationale=rationale,
                      abstain_reason=f"mixed SMC evidence (score {score:.2f})")
