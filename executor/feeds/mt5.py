"""Closed bars from a MetaTrader 5 terminal (``copy_rates_from_pos``).

MT5 numbers bars from the present backwards: position 0 is the current bar, still
forming. ``copy_rates_from_pos(symbol, timeframe, 0, n)`` returns the n newest bars as an
array ordered oldest -> newest, so its LAST row is position 0, the forming bar (MetaTrader5
Python docs, copy_rates_from_pos: "The numbering of bars goes from present to past. Thus,
the zero bar means the current one"; the MQL5 CopyRates page: "the oldest element will be
located at the start"). That row is dropped unconditionally, and every other row must also
be closed at ``now`` by its timestamp: a closed bar whose successor has no tick yet stays
at position 0 and waits for the next poll.

Times: ``time`` is epoch seconds on the broker *server's* wall clock (typically UTC+2 in
winter, UTC+3 in summer). They become aware UTC here, at the edge, through the configured
``ServerClock`` (a zone with its daylight-saving calendar, or a fixed offset).
Spread comes in points and is multiplied by the symbol's ``point``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog

from domain import Bar, normalize_timeframe, timeframe_seconds
from domain.errors import PermanentVenueError, TemporaryVenueError
from executor.brokers.mt5_client import TIMEFRAMES, Mt5Client
from executor.brokers.server_time import ServerClock

log = structlog.get_logger("dta.feeds.mt5")


class Mt5Feed:
    """Implements ``executor.feeds.base.Feed``."""

    def __init__(self, client: Mt5Client, *, server_utc_offset_hours: float = 0.0,
                 max_bars: int = 5000, initial_bars: int = 500,
                 max_catchup_bars: int = 100_000,
                 server_clock: ServerClock | None = None) -> None:
        self.client = client
        self.clock = server_clock or ServerClock(fixed_offset_hours=server_utc_offset_hours)
        self.max_bars = max_bars
        self.initial_bars = initial_bars
        self.max_catchup_bars = max_catchup_bars
        self._points: dict[str, float] = {}

    def _prepare(self, symbol: str) -> float:
        """``symbol_select`` once per symbol (a symbol outside Market Watch has no data),
        and remember its point for the spread."""
        point = self._points.get(symbol)
        if point is None:
            if not self.client.symbol_select(symbol, True):
                raise TemporaryVenueError(f"MT5 symbol_select({symbol}) failed: "
                                          f"{self.client.last_error}")
            info = self.client.symbol_info(symbol)
            point = float(info.get("point") or 0.0) if info else 0.0
            self._points[symbol] = point
        return point

    def closed_bars(self, symbol: str, timeframe: str, since: datetime | None,
                    now: datetime) -> list[Bar]:
        tf = normalize_timeframe(timeframe)
        if tf not in TIMEFRAMES:
            raise PermanentVenueError(f"MT5 has no timeframe {timeframe!r}")
        point = self._prepare(symbol)
        seconds = timeframe_seconds(tf)
        if since is None:
            wanted = self.initial_bars + 1
        else:
            # Every bar since the last one processed, +2 for the forming one and slack.
            wanted = int((now - since).total_seconds() // seconds) + 2
        wanted = max(2, min(wanted, self.max_catchup_bars))
        rows: list[dict[str, Any]] = []
        start = 0
        while start < wanted:  # page backwards from the present, max_bars at a time
            count = min(self.max_bars, wanted - start)
            page = self.client.copy_rates_from_pos(symbol, TIMEFRAMES[tf], start, count)
            if page is None:
                if start:
                    break  # older history ran out
                raise TemporaryVenueError(f"MT5 copy_rates_from_pos({symbol}, {tf}) failed: "
                                          f"{self.client.last_error}")
            rows = list(page) + rows
            if len(page) < count:
                break
            start += count
        rows = rows[:-1]  # the last row is bar 0, the one still forming
        length = timedelta(seconds=seconds)
        out: list[Bar] = []
        for r in rows:
            t = self.clock.to_utc(int(r["time"]))
            if since is not None and t <= since:
                continue
            if t + length > now:
                continue
            out.append(Bar(symbol, tf, t, float(r["open"]), float(r["high"]), float(r["low"]),
                           float(r["close"]), float(r.get("tick_volume") or 0),
                           float(r.get("spread") or 0) * point))
        if since is not None and wanted == self.max_catchup_bars:
            log.warning("mt5_catchup_capped", symbol=symbol, timeframe=tf, bars=wanted)
        return out
