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


# --------------------------------------------------------------------------- scoring

EVENT_TYPES = ("swings", "bos", "choch", "order_blocks", "fvgs", "liquidity")

_REFERENCE_COLUMNS = {
    "swings": ("swing_highs_lows", "HighLow"),
    "bos": ("bos_choch", "BOS"),
    "choch": ("bos_choch", "CHOCH"),
    "order_blocks": ("ob", "OB"),
    "fvgs": ("fvg", "FVG"),
    "liquidity": ("liquidity", "Liquidity"),
}


def reference_events(kind: str) -> set[tuple[int, int]]:
    """(sign, reference bar) per event in the package's batch output.

    The package marks the first and last bars of the series as artificial swings to
    close the sequence; they are not detections, so they are left out.
    """
    name, column = _REFERENCE_COLUMNS[kind]
    rows = load_reference(name)
    events = {(int(float(r[column])), i) for i, r in enumerate(rows) if r[column]}
    if kind == "swings":
        events = {(s, i) for s, i in events if 0 < i < len(rows) - 1}
    return events


def match(
    ours: set[tuple[int, int]], reference: set[tuple[int, int]], tolerance: int
) -> tuple[int, float, float]:
    """Greedy one-to-one matching by sign and reference bar within ``tolerance`` bars.

    Returns (matched, precision, recall). Each side is sorted and walked in bar order, an
    event taking the nearest still-unmatched partner of the same sign.
    """
    matched = 0
    for sign in (1, -1):
        mine = sorted(i for s, i in ours if s == sign)
        ref = sorted(i for s, i in reference if s == sign)
        used = [False] * len(ref)
        lo = 0
        for i in mine:
            while lo < len(ref) and ref[lo] < i - tolerance:
                lo += 1
            best, best_d = -1, tolerance + 1
            j = lo
            while j < len(ref) and ref[j] <= i + tolerance:
                d = abs(ref[j] - i)
                if not used[j] and d < best_d:
                    best, best_d = j, d
                j += 1
            if best >= 0:
                used[best] = True
                matched += 1
    precision = matched / len(ours) if ours else 1.0
    recall = matched / len(reference) if reference else 1.0
    return matched, precision, recall


def package_survivors(
    blocks: set[tuple[int, int]], bars: tuple[Bar, ...], known: dict[tuple[int, int], int]
) -> set[tuple[int, int]]:
    """Blocks that would survive the package's hindsight filter (for scoring only).

    ``smartmoneyconcepts.ob`` deletes a block once price has traded through it (its
    "breaker" state) and later back beyond its other side, using bars after the end of any
    live snapshot. Its published output is therefore the blocks that, in hindsight, held.
    Applying the same rule to our causal blocks, with the same future bars, makes the
    comparison like for like. ``known`` maps a block to the bar it was identified at.
    """
    highs = [b.high for b in bars]
    lows = [b.low for b in bars]
    kept: set[tuple[int, int]] = set()
    for sign, index in blocks:
        top, bottom = highs[index], lows[index]
        breaker = False
        survived = True
        for j in range(known[(sign, index)] + 1, len(bars)):
            if breaker:
                if (highs[j] > top) if sign == 1 else (lows[j] < bottom):
                    survived = False
                    break
            elif (lows[j] < bottom) if sign == 1 else (highs[j] > top):
                breaker = True
        if survived:
            kept.add((sign, index))
    return kept
