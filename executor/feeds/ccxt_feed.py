"""Closed bars from a ccxt exchange (``fetch_ohlcv``).

``fetch_ohlcv`` returns ``[[open_ms, open, high, low, close, volume], ...]`` oldest first,
and its last candle is the one still forming: it is dropped, as is any candle whose close
time is after ``now``. After downtime the feed pages forward from the last processed bar
(``since`` + one bar, ``limit`` candles per request) until it reaches the present, so a
restart catches up instead of leaving a hole; ``max_pages`` bounds one cycle's work.
Exchange times are UTC epoch milliseconds: no offset to apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from domain import Bar, normalize_timeframe, timeframe_seconds
from domain.errors import PermanentVenueError, TemporaryVenueError

log = structlog.get_logger("dta.feeds.ccxt")

_UNITS = {"M": "m", "H": "h", "D": "d", "W": "w"}


def ccxt_timeframe(timeframe: str) -> str:
    """``M15`` -> ``15m``, ``H1`` -> ``1h``, ``D1`` -> ``1d`` (ccxt's names)."""
    tf = normalize_timeframe(timeframe)
    if tf[0] not in _UNITS:
        raise PermanentVenueError(f"no ccxt timeframe for {timeframe!r}")
    return tf[1:] + _UNITS[tf[0]]


class CcxtFeed:
    """Implements ``executor.feeds.base.Feed``."""

    def __init__(self, exchange: Any, *, limit: int = 1000, max_pages: int = 50,
                 initial_bars: int = 500, read_retries: int = 3,
                 read_backoff_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.exchange = exchange
        self.limit = limit
        self.max_pages = max_pages
        self.initial_bars = initial_bars
        self.read_retries = read_retries
        self.read_backoff_seconds = read_backoff_seconds
        self._sleep = sleep

    def _fetch(self, symbol: str, tf: str, since_ms: int) -> list[list[Any]]:
        import ccxt

        last: Exception | None = None
        for attempt in range(self.read_retries + 1):
            if attempt:
                self._sleep(self.read_backoff_seconds * 2 ** (attempt - 1))
            try:
                rows: list[list[Any]] = self.exchange.fetch_ohlcv(symbol, tf, since_ms,
                                                                  self.limit)
                return rows
            except ccxt.NetworkError as exc:
                last = exc
                log.warning("ccxt_ohlcv_retry", symbol=symbol, error=str(exc)[:200],
                            attempt=attempt + 1)
            except ccxt.BaseError as exc:
                raise PermanentVenueError(f"fetch_ohlcv {symbol} {tf}: {exc}") from None
        raise TemporaryVenueError(f"fetch_ohlcv {symbol} {tf} failed after {self.read_retries + 1} "
                                  f"attempts: {last}")

    def closed_bars(self, symbol: str, timeframe: str, since: datetime | None,
                    now: datetime) -> list[Bar]:
        tf_name = normalize_timeframe(timeframe)
        tf = ccxt_timeframe(tf_name)
        step = timeframe_seconds(tf_name) * 1000
        now_ms = int(now.timestamp() * 1000)
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        start = since_ms + step if since_ms is not None else (
            now_ms - now_ms % step - self.initial_bars * step)
        out: dict[int, Bar] = {}
        for page in range(self.max_pages):
            batch = self._fetch(symbol, tf, start)
            if not batch:
                break
            for row in batch:
                t = int(row[0])
                if t < start or t + step > now_ms:  # before the window, or still forming
                    continue
                if since_ms is not None and t <= since_ms:
                    continue
                out[t] = Bar(symbol, tf_name, datetime.fromtimestamp(t / 1000, UTC),
                             float(row[1]), float(row[2]), float(row[3]), float(row[4]),
                             float(row[5] or 0.0))
            last = int(batch[-1][0])
            if len(batch) < self.limit or last + 2 * step > now_ms:
                break
            start = last + step
            if page == self.max_pages - 1:
                log.warning("ccxt_catchup_capped", symbol=symbol, timeframe=tf,
                            pages=self.max_pages)
        return [out[t] for t in sorted(out)]
