"""Wilder's average true range, updated one closed bar at a time."""

from __future__ import annotations

from domain import Bar


class WilderAtr:
    """ATR with Wilder smoothing, seeded by the simple mean of the first ``period`` ranges.

    Seeding with a simple mean (rather than the first true range) is what most charting
    packages do, so the value a trader sees matches ours once ``period`` bars have closed.
    ``value`` stays ``None`` until then: a half-warmed ATR would silently shrink every
    ATR-scaled tolerance and stop buffer at the start of a replay.
    """

    __slots__ = ("_count", "_period", "_prev_close", "_sum", "value")

    def __init__(self, period: int = 14) -> None:
        if period < 1:
            raise ValueError(f"atr_period must be >= 1, got {period}")
        self._period = period
        self._prev_close: float | None = None
        self._count = 0
        self._sum = 0.0
        self.value: float | None = None

    def update(self, bar: Bar) -> float | None:
        prev = self._prev_close
        tr = bar.high - bar.low if prev is None else max(bar.high, prev) - min(bar.low, prev)
        self._prev_close = bar.close
        if self.value is None:
            self._count += 1
            self._sum += tr
            if self._count == self._period:
                self.value = self._sum / self._period
        else:
            self.value = (self.value * (self._period - 1) + tr) / self._period
        return self.value
