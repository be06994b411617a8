"""The seam between where bars come from (MT5, ccxt, a replay file) and the cycle.

Every feed answers the same question, "which bars have closed since I last asked?", so
the scheduler and the replay driver run the exact same cycle code; only the feed object
and the clock differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain import Bar


class Feed(Protocol):
    """A source of closed bars.

    ``closed_bars`` returns the bars not yet delivered whose open time is after ``since``
    (the last bar the caller processed, ``None`` on a cold start) and that are closed at
    ``now`` (``bar.close_time <= now``). The forming bar is never returned: a strategy that
    saw it would trade on a candle that can still change. Bars come back in the order the
    source produced them and are *not* validated: ``BarValidator`` decides, so that every
    rejection gets a journaled reason instead of vanishing inside a feed.
    """

    def closed_bars(
        self, symbol: str, timeframe: str, since: datetime | None, now: datetime
    ) -> list[Bar]: ...


@dataclass(frozen=True, slots=True)
class RawRejection:
    """A source row that could not even become a ``Bar`` (bad timestamp, wrong column count).

    Kept, not dropped, so a replay report can say exactly which lines of a file were
    ignored and why. ``line`` is 1-based: the physical line in a CSV file (the header is
    line 1), or the row's position in the OHLCV array of a JSON file.
    """

    line: int
    reason: str
    raw: str
