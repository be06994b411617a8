"""Tiny loader for the bundled EURUSD M15 sample, private to the SMC tests.

Kept separate from the project's feed loader on purpose: the SMC tests must not break
when the feed's parsing rules change, and they pin the mapping they were measured with.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from domain import Bar, Direction, MarketSnapshot, Swing, SwingKind
from strategies.smc.swings import SwingSequence
from strategies.snapshot import SnapshotBuilder
from support.builders import a_bar

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "data" / "smc_reference"
POINT = 0.00001


@lru_cache(maxsize=2)
def load_bars(path: Path = SAMPLE, limit: int | None = None) -> tuple[Bar, ...]:
    """Bars from an MT5 export; Date is taken as UTC (offset 0), volume is Tickvol."""
    bars: list[Bar] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            bars.append(
                a_bar(symbol="EURUSD", timeframe="M15",
                      time=datetime.strptime(row["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC),
                      open=float(row["Open"]), high=float(row["High"]), low=float(row["Low"]),
                      close=float(row["Close"]), volume=float(row["Tickvol"]),
                      spread=int(row["Spread"]) * POINT)
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
    """(matched, precision, recall) with the production matcher (greedy one-to-one by sign
    and reference bar within ``tolerance`` bars), so tests and reports score alike."""
    from executor.reports.smc_scoring import match_events

    matched = match_events(ours, reference, tolerance)
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


def collect_events(
    bars: tuple[Bar, ...], **params: Any
) -> tuple[dict[str, set[tuple[int, int]]], dict[tuple[int, int], int]]:
    """Every event a builder publishes over ``bars``, keyed like ``reference_events``.

    Events are gathered from the snapshots as they appear (each is in its tuple on the
    bar it becomes known, whatever the tuple's length limit), so the builder runs with its
    normal bounded settings. Swings are re-threaded through the alternating sequence to
    drop those later superseded by a more extreme swing of the same leg, which is the
    set the package's batch output corresponds to. Also returns each order block's
    ``known_index``, which the package-survivor filter needs.
    """
    builder = SnapshotBuilder(**params)
    swings: dict[tuple[str, int], Swing] = {}
    events: dict[str, set[tuple[int, int]]] = {k: set() for k in EVENT_TYPES}
    known: dict[tuple[int, int], int] = {}
    prev: MarketSnapshot | None = None
    for bar in bars:
        s = builder.update(bar)
        if prev is None or s.swings is not prev.swings:
            for sw in s.swings:
                swings.setdefault((sw.kind.value, sw.index), sw)
        if prev is None or s.bos is not prev.bos:
            events["bos"].update((_sign(b.direction), b.swing_index) for b in s.bos)
        if prev is None or s.choch is not prev.choch:
            events["choch"].update((_sign(b.direction), b.swing_index) for b in s.choch)
        if prev is None or s.order_blocks is not prev.order_blocks:
            for ob in s.order_blocks:
                key = (_sign(ob.direction), ob.index)
                events["order_blocks"].add(key)
                known.setdefault(key, ob.known_index)
        if prev is None or s.fvgs is not prev.fvgs:
            events["fvgs"].update((_sign(g.direction), g.index) for g in s.fvgs)
        if prev is None or s.liquidity_pools is not prev.liquidity_pools:
            events["liquidity"].update(
                (_side(p.side), p.swing_indices[0]) for p in s.liquidity_pools
            )
        prev = s
    sequence = SwingSequence(len(swings) + 1)
    for sw in sorted(swings.values(), key=lambda x: (x.confirmed_index, x.kind.value)):
        sequence.push(sw)
    events["swings"] = {(_side(sw.kind), sw.index) for sw in sequence.as_tuple()}
    return events, known


def _sign(direction: Direction) -> int:
    return 1 if direction is Direction.LONG else -1


def _side(kind: SwingKind) -> int:
    return 1 if kind is SwingKind.HIGH else -1


def package_tolerance(bars: tuple[Bar, ...], range_percent: float = 0.01) -> float:
    """The package's liquidity tolerance: 1% of the whole series' range (hindsight)."""
    return (max(b.high for b in bars) - min(b.low for b in bars)) * range_percent


def assert_known_by(snap: MarketSnapshot, t: int) -> None:
    """Every event in the snapshot after bar t refers to, and was known by, a bar <= t."""
    assert snap.index == t
    for s in snap.swings:
        assert s.index < s.confirmed_index <= t
    for b in (*snap.bos, *snap.choch):
        assert b.swing_index < b.index <= t
    for sw in snap.sweeps:
        assert sw.pool_index < sw.index <= t
    for p in snap.liquidity_pools:
        assert max(p.swing_indices) < p.index <= t
        assert p.swept_index is None or p.index < p.swept_index <= t
    for ob in (*snap.order_blocks, *snap.mitigation_blocks):
        assert ob.index < ob.known_index <= t
        for later in (ob.mitigated_index, ob.broken_index):
            assert later is None or ob.known_index < later <= t
    for g in snap.fvgs:
        assert g.index < g.known_index <= t
        for later in (g.touched_index, g.filled_index):
            assert later is None or g.known_index < later <= t
    assert snap.bars[-1] is snap.bar


# --------------------------------------------------------------------------- hand-built bars

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_bars(rows: list[tuple[float, float, float, float]]) -> list[Bar]:
    """(open, high, low, close) rows as consecutive M15 bars from ``T0``."""
    return [
        a_bar(symbol="TEST", timeframe="M15", time=T0 + timedelta(minutes=15 * i), open=o, high=h,
              low=lo, close=c, volume=1.0, spread=0.0)
        for i, (o, h, lo, c) in enumerate(rows)
    ]


def hlc(rows: list[tuple[float, float, float]]) -> list[tuple[float, float, float, float]]:
    """(high, low, close) rows with the open at mid-range, where direction is irrelevant."""
    return [((h + lo) / 2, h, lo, c) for h, lo, c in rows]


# A higher low, a close above the high (BOS), a retest of the block, then a close below
# the higher low after the pull-back had made a higher high (CHoCH). swing_length=1.
STRUCTURE = hlc(
    [
        (10.0, 9.0, 9.5),  # 0
        (9.5, 8.0, 8.5),  # 1 swing low 8.0, confirmed at 2
        (11.0, 8.5, 10.5),  # 2
        (12.0, 10.0, 11.5),  # 3 swing high 12.0, confirmed at 4
        (11.5, 9.5, 10.0),  # 4
        (10.5, 9.0, 9.5),  # 5 swing low 9.0 (higher low), confirmed at 6; the leg's low
        (11.0, 9.5, 10.8),  # 6
        (12.5, 10.5, 12.3),  # 7 closes above 12.0: bullish BOS, block = bar 5
        (12.4, 11.0, 11.2),  # 8 swing high 12.5 (bar 7) confirmed
        (11.5, 10.2, 10.4),  # 9 trades into the block (top 10.5): mitigation block
        (10.6, 7.0, 7.5),  # 10 closes below the block and below 9.0: block broken, CHoCH
        (8.0, 7.2, 7.6),  # 11
    ]
)
