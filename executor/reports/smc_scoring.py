"""Precision and recall of the snapshot's SMC detections against reference labels.

The reference is a set of CSV files, one row per bar of the scored series, in the layout
of the ``smartmoneyconcepts`` package's output (what ``tests/data/smc_reference/`` holds):
``<prefix>_bos_choch.csv`` (BOS, CHOCH), ``<prefix>_liquidity.csv`` (Liquidity, Swept),
``<prefix>_ob.csv`` (OB, MitigatedIndex), ``<prefix>_swing_highs_lows.csv`` (HighLow),
``<prefix>_fvg.csv`` (FVG). A kind whose file is missing is not scored.

Events are matched the way ``tests/unit/strategies/test_smc_reference.py`` matches them
(docs/smc.md): one to one, by direction and the bar the event refers to, within
``tolerance`` bars (3 by default), each taking the nearest unmatched partner. What
"refers to" means per kind:

| kind | ours | reference |
|---|---|---|
| bos, choch | the broken swing's bar | the row labelled BOS / CHOCH |
| sweeps | the sweep bar (wick through, close back inside) | a pool's ``Swept`` bar |
| mitigation_blocks | a block candle price came back into | OB row with ``MitigatedIndex`` |
| order_blocks | the block candle | an OB row |
| liquidity | a pool's first swing | a Liquidity row |
| liquidity_taken | the bar price traded beyond a pool | a pool's ``Swept`` bar |
| swings | the swing bar (alternating sequence) | a HighLow row but the first and last |
| fvgs | the middle candle | an FVG row |

The package has no sweep in our sense: its ``Swept`` is the bar a pool was taken, with or
without a close back inside, so ``sweeps`` scores our rejections against its takes (low by
definition) and ``liquidity_taken`` is the like-for-like comparison of takes. Its
``MitigatedIndex`` marks a block price traded through; ours is mitigated on the first
trade back into it, a superset, hence the higher recall than precision.

The package deletes, with hindsight, every order block that price later traded through
and back beyond; ``hindsight_filter=True`` (the default) applies the same rule to our
blocks with the same future bars, so both sides are filtered alike. It is a scoring device
only: no live decision can use it. This module is the production copy of the scoring in
``tests/support/smc_data.py`` (which the SMC tests keep, pinned, for themselves).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain import Bar, Direction, Swing, SwingKind
from strategies.smc.swings import SwingSequence
from strategies.snapshot import SnapshotBuilder

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "DetectionScore",
    "Detections",
    "collect_detections",
    "hindsight_survivors",
    "load_reference",
    "match_events",
    "score_detections",
    "score_events",
]

Event = tuple[int, int]  # (direction sign: +1 bullish / swing high, -1 bearish / low; bar)

KINDS = ("bos", "choch", "sweeps", "mitigation_blocks", "order_blocks", "liquidity",
         "liquidity_taken", "swings", "fvgs")
DEFAULT_KINDS = ("bos", "choch", "sweeps", "mitigation_blocks")
DEFAULT_TOLERANCE = 3



@dataclass(frozen=True, slots=True)
class _Ref:
    file: str  # <prefix>_<file>.csv
    sign: str  # column holding +1 / -1 on the rows with an event
    at: str | None = None  # column holding the event's bar; None: the row itself
    require: str | None = None  # column that must be non-zero for the row to count


_REFERENCE: dict[str, _Ref] = {
    "bos": _Ref("bos_choch", "BOS"),
    "choch": _Ref("bos_choch", "CHOCH"),
    "sweeps": _Ref("liquidity", "Liquidity", at="Swept"),
    "mitigation_blocks": _Ref("ob", "OB", require="MitigatedIndex"),
    "order_blocks": _Ref("ob", "OB"),
    "liquidity": _Ref("liquidity", "Liquidity"),
    "liquidity_taken": _Ref("liquidity", "Liquidity", at="Swept"),
    "swings": _Ref("swing_highs_lows", "HighLow"),
    "fvgs": _Ref("fvg", "FVG"),
}


@dataclass(frozen=True, slots=True)
class DetectionScore:
    kind: str
    ours: int
    reference: int
    matched: int
    precision: float
    recall: float
    tolerance: int

    @property
    def f1(self) -> float:
        s = self.precision + self.recall
        return 2 * self.precision * self.recall / s if s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ours": self.ours, "reference": self.reference,
                "matched": self.matched, "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "tolerance_bars": self.tolerance}


@dataclass
class Detections:
    """Every event the builder published over a series, keyed like the reference, plus
    the bar each order block became known at (for the hindsight filter)."""

    events: dict[str, set[Event]] = field(default_factory=lambda: {k: set() for k in KINDS})
    block_known: dict[Event, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- matching


def match_events(ours: Iterable[Event], reference: Iterable[Event], tolerance: int) -> int:
    """Greedy one-to-one matching by sign and bar within ``tolerance`` bars; returns the
    number of matches. Each side is walked in bar order, an event taking the nearest
    still-unmatched partner of the same sign."""
    ours_l, ref_l = list(ours), list(reference)
    matched = 0
    for sign in (1, -1):
        mine = sorted(i for s, i in ours_l if s == sign)
        ref = sorted(i for s, i in ref_l if s == sign)
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
    return matched


def score_events(kind: str, ours: set[Event], reference: set[Event],
                 tolerance: int = DEFAULT_TOLERANCE) -> DetectionScore:
    """Precision = matched / ours, recall = matched / reference (1.0 for an empty side)."""
    matched = match_events(ours, reference, tolerance)
    return DetectionScore(kind, len(ours), len(reference), matched,
                          matched / len(ours) if ours else 1.0,
                          matched / len(reference) if reference else 1.0, tolerance)


# --------------------------------------------------------------------------- reference


def load_reference(directory: Path, prefix: str, n_bars: int | None = None,
                   kinds: Sequence[str] = KINDS, first_row: int = 0) -> dict[str, set[Event]]:
    """Reference events per kind from ``<directory>/<prefix>_<name>.csv``.

    The scored series is rows [first_row, first_row + n_bars) of the reference (all rows
    by default); events referring to, or happening at, a bar outside it are dropped and
    bar numbers are shifted to start at 0. (The reference was computed with the whole
    series in view, so a slice is scored against labels that saw bars beyond it.) The
    package's artificial first and last swings are not detections and are left out.
    """
    cache: dict[str, list[dict[str, str]]] = {}
    out: dict[str, set[Event]] = {}
    for kind in kinds:
        ref = _REFERENCE[kind]
        name = ref.file
        path = directory / f"{prefix}_{name}.csv"
        if not path.is_file():
            continue
        if name not in cache:
            with path.open(newline="") as fh:
                cache[name] = list(csv.DictReader(fh))
        rows = cache[name]
        end = len(rows) if n_bars is None else min(first_row + n_bars, len(rows))
        events: set[Event] = set()
        for i in range(first_row, end):
            row = rows[i]
            sign = _number(row.get(ref.sign))
            if not sign or (ref.require is not None and not _number(row.get(ref.require))):
                continue
            if ref.at is None:
                at = i
            else:
                value = _number(row.get(ref.at))
                if not value:
                    continue
                at = int(value)
            if kind == "swings" and at in (0, len(rows) - 1):
                continue
            if first_row <= at < end:
                events.add((1 if sign > 0 else -1, at - first_row))
        out[kind] = events
    return out


def _number(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0


# --------------------------------------------------------------------------- ours


def collect_detections(bars: Sequence[Bar], **builder_params: Any) -> Detections:
    """Every event a fresh ``SnapshotBuilder`` publishes over ``bars``.

    Events are gathered as they appear (each is in its snapshot tuple on the bar it becomes
    known, whatever the tuple's length limit), so the builder runs with its normal bounded
    settings. Swings are re-threaded through the alternating sequence, which drops those a
    more extreme swing of the same leg superseded: the set a batch computation reports.
    """
    builder = SnapshotBuilder(**builder_params)
    det = Detections()
    ev = det.events
    swings: dict[tuple[str, int], Swing] = {}
    seen: dict[str, object] = {}

    def changed(name: str, value: object) -> bool:
        # Unchanged histories are the same tuple object from one snapshot to the next.
        if seen.get(name) is value:
            return False
        seen[name] = value
        return True

    for bar in bars:
        s = builder.update(bar)
        if changed("swings", s.swings):
            for sw in s.swings:
                swings.setdefault((sw.kind.value, sw.index), sw)
        if changed("bos", s.bos):
            ev["bos"].update((_sign(b.direction), b.swing_index) for b in s.bos)
        if changed("choch", s.choch):
            ev["choch"].update((_sign(b.direction), b.swing_index) for b in s.choch)
        if changed("sweeps", s.sweeps):
            ev["sweeps"].update((_side(w.side), w.index) for w in s.sweeps)
        if changed("order_blocks", s.order_blocks):
            for ob in s.order_blocks:
                key = (_sign(ob.direction), ob.index)
                ev["order_blocks"].add(key)
                det.block_known.setdefault(key, ob.known_index)
        if changed("mitigation_blocks", s.mitigation_blocks):
            for ob in s.mitigation_blocks:
                key = (_sign(ob.direction), ob.index)
                ev["mitigation_blocks"].add(key)
                det.block_known.setdefault(key, ob.known_index)
        if changed("fvgs", s.fvgs):
            ev["fvgs"].update((_sign(g.direction), g.index) for g in s.fvgs)
        if changed("liquidity", s.liquidity_pools):
            for p in s.liquidity_pools:
                ev["liquidity"].add((_side(p.side), p.swing_indices[0]))
                if p.swept_index is not None:
                    ev["liquidity_taken"].add((_side(p.side), p.swept_index))
    sequence = SwingSequence(len(swings) + 1)
    for sw in sorted(swings.values(), key=lambda x: (x.confirmed_index, x.kind.value)):
        sequence.push(sw)
    ev["swings"] = {(_side(sw.kind), sw.index) for sw in sequence.as_tuple()}
    return det


def hindsight_survivors(blocks: set[Event], bars: Sequence[Bar],
                        known: dict[Event, int]) -> set[Event]:
    """Blocks the package's hindsight deletion would keep (scoring only, never live).

    ``smartmoneyconcepts.ob`` deletes a block once price has traded through it (its
    "breaker" state) and later back beyond its other side, looking at bars after any live
    snapshot's end. Applying the rule to ours with the same bars compares like with like.
    """
    highs = [b.high for b in bars]
    lows = [b.low for b in bars]
    kept: set[Event] = set()
    for sign, index in blocks:
        top, bottom = highs[index], lows[index]
        breaker = False
        survived = True
        for j in range(known.get((sign, index), index) + 1, len(bars)):
            if breaker:
                if (highs[j] > top) if sign == 1 else (lows[j] < bottom):
                    survived = False
                    break
            elif (lows[j] < bottom) if sign == 1 else (highs[j] > top):
                breaker = True
        if survived:
            kept.add((sign, index))
    return kept


def score_detections(bars: Sequence[Bar], reference_dir: Path, prefix: str, *,
                     kinds: Sequence[str] = DEFAULT_KINDS,
                     tolerance: int = DEFAULT_TOLERANCE, hindsight_filter: bool = True,
                     builder_params: dict[str, Any] | None = None,
                     first_row: int = 0) -> list[DetectionScore]:
    """Score a fresh builder's detections over ``bars`` against the reference files.

    ``bars`` must be rows ``first_row`` onwards of the series the reference was computed
    on, row for row (``load_reference``).
    """
    unknown = [k for k in kinds if k not in _REFERENCE]
    if unknown:
        raise ValueError(f"unknown SMC event kinds {unknown}; known: {', '.join(KINDS)}")
    reference = load_reference(reference_dir, prefix, len(bars), kinds, first_row)
    det = collect_detections(bars, **(builder_params or {}))
    scores: list[DetectionScore] = []
    for kind in kinds:
        if kind not in reference:
            continue
        ours = det.events[kind]
        if hindsight_filter and kind in ("order_blocks", "mitigation_blocks"):
            ours = hindsight_survivors(ours, bars, det.block_known)
        scores.append(score_events(kind, ours, reference[kind], tolerance))
    return scores


def _sign(direction: Direction) -> int:
    return 1 if direction is Direction.LONG else -1


def _side(kind: SwingKind) -> int:
    return 1 if kind is SwingKind.HIGH else -1
