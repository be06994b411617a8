"""Time frames, timestamps and the closed bar: the unit every layer trades on.

Every timestamp inside the program is timezone-aware UTC; a broker's server time is
converted at its adapter's edge."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_TF_UNITS = {"S": 1, "M": 60, "H": 3600, "D": 86400, "W": 604800}
_CCXT_UNITS = {"s": "S", "m": "M", "h": "H", "d": "D", "w": "W"}


@lru_cache(maxsize=256)
def timeframe_seconds(timeframe: str) -> int:
    """Length of a bar in seconds, from MT5 names (``M15``, ``H1``) or ccxt names (``15m``)."""
    tf = normalize_timeframe(timeframe)
    return _TF_UNITS[tf[0]] * int(tf[1:])


@lru_cache(maxsize=256)
def normalize_timeframe(timeframe: str) -> str:
    """Canonical MT5-style name: ``15m`` -> ``M15``, ``1h`` -> ``H1``, ``M15`` stays."""
    tf = timeframe.strip()
    if len(tf) >= 2 and tf[0].upper() in _TF_UNITS and tf[1:].isdigit() and int(tf[1:]) > 0:
        return tf[0].upper() + str(int(tf[1:]))
    if len(tf) >= 2 and tf[-1] in _CCXT_UNITS and tf[:-1].isdigit() and int(tf[:-1]) > 0:
        return _CCXT_UNITS[tf[-1]] + str(int(tf[:-1]))
    raise ValueError(
        f"unknown timeframe {timeframe!r}: use MT5 names like M1, M15, H1, D1 "
        "or ccxt names like 1m, 15m, 1h, 1d"
    )


def ensure_utc(ts: datetime) -> datetime:
    """Reject naive datetimes: every timestamp inside the program is aware UTC."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts!r}: convert at the edge with the server offset")
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed OHLCV bar. ``time`` is the UTC-aware *open* time of the bar.

    The constructor does not validate prices: a feed hands raw bars to ``BarValidator``,
    which rejects bad ones with a journaled reason. Only validated bars reach strategies.
    """

    symbol: str
    timeframe: str
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    spread: float = 0.0  # in price units (already multiplied by the symbol's point)

    @property
    def close_time(self) -> datetime:
        return self.time + timedelta(seconds=timeframe_seconds(self.timeframe))


def is_finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)
