"""Deterministic local providers: no network, no key, same answer for the same snapshot."""

from __future__ import annotations

from strategies.domain import Direction, MarketSnapshot, Proposal, Signal, StructureBreak, Trend


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
            tags.append(f"{last.kind.value}_{'bullish' if last.direction is Direction.LONG else 'bearish'}")
            if last.direction is trend_dir:
                confidence += 0.2
        if snapshot.premium_discount == ("discount" if trend_dir is Direction.LONG else "premium"):
            confidence += 0.1
        return Signal(self.name, trend_dir, min(confidence, 1.0),
                      rationale=f"trend {snapshot.trend.value}; latest break "
                                f"{last.kind.value + ' ' + last.direction.value if last else 'none'}",
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
        direction = Direction.LONG if distance > 0 else Direction.SHORT if distance < 0 else Direction.FLAT
        if direction is Direction.FLAT:
            return Signal(self.name, direction, 0.0, abstain_reason="close equals its average")
        confidence = min(1.0, 0.5 + abs(distance) / 4.0)
        return Signal(self.name, direction, confidence,
                      rationale=f"close {distance:+.2f} ATR from SMA{self.period}")


def _latest_break(snapshot: MarketSnapshot) -> StructureBreak | None:
    candidates = [e for e in (snapshot.bos[-1:] + snapshot.choch[-1:])]
    return max(candidates, key=lambda e: e.index) if candidates else None
