"""Tiny loader for the bundled EURUSD M15 sample, private to the SMC tests.

Kept separate from the project's feed loader on purpose: the SMC tests must not break
when the feed's parsing rules change, and they pin the mapping they were measured with.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from strategies.domain import Bar

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "smc_reference"
POINT = 0.00001


@lru_cache(maxsize=2)
def load_bars(path: Path = SAMPLE, limit: int | None = None) -> tuple[Bar, ...]:
    """Bars from an MT5 export; Date is taken as UTC (offset 0), volume is Tickvol."""
    bars: list[Bar] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            bars.append(
                Bar(
                    symbol="EURUSD",
                    timeframe="M15",
                    time=datetime.strptime(row["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC),
                    open=float(row["Open"]),
                    high=float(row["High"]),
                    low=float(row["Low"]),
                    close=float(row["Close"]),
                    volume=float(row["Tickvol"]),
                    spread=int(row["Spread"]) * POINT,
                )
            )
            if limit is not None and len(bars) >= limit:
                break
    return tuple(bars)


def load_reference(name: str) -> list[dict[str, str]]:
    """Rows of ``EURUSD_M15_<name>.csv`` (one per bar, empty strings where no event)."""
    with (REFERENCE_DIR / f"EURUSD_M15_{name}.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))
