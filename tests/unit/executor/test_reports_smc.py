"""``executor.reports.smc_scoring`` against the bundled reference labels.

The production scorer must agree with the SMC tests' own scorer (tests/support/smc_data.py) where
they score the same thing (BOS, CHoCH, order blocks: the docs/smc.md table), and score the
report's extra kinds (sweeps, mitigation blocks) from the same files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.smc_data import REFERENCE_DIR, collect_events, load_bars, match, package_survivors

from executor.reports.smc_scoring import (
    DEFAULT_KINDS,
    collect_detections,
    hindsight_survivors,
    load_reference,
    match_events,
    score_detections,
    score_events,
)


@pytest.fixture(scope="module")
def scores() -> dict[str, tuple[int, int, int]]:
    got = score_detections(load_bars(), REFERENCE_DIR, "EURUSD_M15",
                           kinds=(*DEFAULT_KINDS, "order_blocks"))
    return {s.kind: (s.ours, s.reference, s.matched) for s in got}


def test_scores_match_the_documented_agreement(scores: dict[str, tuple[int, int, int]]) -> None:
    # docs/smc.md, "Our defaults": ours, reference, matched
    assert scores["bos"] == (744, 676, 558)
    assert scores["choch"] == (356, 453, 312)
    assert scores["order_blocks"] == (67, 66, 59)


def test_sweeps_and_mitigation_blocks_are_scored(scores: dict[str, tuple[int, int, int]]) -> None:
    ours, ref, matched = scores["mitigation_blocks"]
    assert ref == 20 and 0 < matched <= min(ours, ref)
    assert matched / ref >= 0.75  # ours is a superset by definition: recall is high
    ours, ref, matched = scores["sweeps"]
    assert ref == 465 and ours > 0 and matched > 0


def test_same_matching_as_the_smc_tests() -> None:
    bars = load_bars(limit=4000)
    theirs, known = collect_events(bars)
    det = collect_detections(bars)
    for kind in ("bos", "choch", "order_blocks", "fvgs", "swings", "liquidity"):
        assert det.events[kind] == theirs[kind], kind
    ours_ob = hindsight_survivors(det.events["order_blocks"], bars, det.block_known)
    assert ours_ob == package_survivors(theirs["order_blocks"], bars, known)
    ref = load_reference(REFERENCE_DIR, "EURUSD_M15", len(bars))
    for kind in ("bos", "choch"):
        for tol in (0, 3, 5):
            assert match_events(det.events[kind], ref[kind], tol) == \
                match(det.events[kind], ref[kind], tol)[0]


def test_reference_files_are_read_by_kind_with_offsets(tmp_path: Path) -> None:
    (tmp_path / "X_M1_liquidity.csv").write_text(
        "Liquidity,Level,End,Swept\n1.0,2.0,3,4.0\n,,,\n-1.0,1.0,5,0\n,,,\n,,,\n-1,1,5,6\n,,,\n")
    (tmp_path / "X_M1_ob.csv").write_text(
        "OB,Top,Bottom,OBVolume,MitigatedIndex,Percentage\n1,2,1,0,0,0\n,,,,,\n-1,2,1,0,3,0\n")
    ref = load_reference(tmp_path, "X_M1")
    assert "bos" not in ref  # no file, no score
    assert ref["liquidity"] == {(1, 0), (-1, 2), (-1, 5)}
    assert ref["sweeps"] == {(1, 4), (-1, 6)}  # at the Swept bar; Swept 0 is none
    assert ref["mitigation_blocks"] == {(-1, 2)}
    assert ref["order_blocks"] == {(1, 0), (-1, 2)}
    # rows 2..5 only: events outside dropped, bars renumbered from 0
    part = load_reference(tmp_path, "X_M1", n_bars=4, first_row=2)
    assert part["liquidity"] == {(-1, 0), (-1, 3)}
    assert part["sweeps"] == set()  # Swept 4 belongs to a pool at row 0; 6 is outside


def test_empty_sides_and_tolerance() -> None:
    s = score_events("bos", set(), {(1, 5)}, 3)
    assert (s.precision, s.recall, s.f1) == (1.0, 0.0, 0.0)
    s = score_events("bos", {(1, 2), (1, 9), (-1, 9)}, {(1, 5), (-1, 9)}, 3)
    assert (s.matched, s.precision, s.recall) == (2, 2 / 3, 1.0)
    with pytest.raises(ValueError, match="unknown SMC event kinds"):
        score_detections(load_bars(limit=10), REFERENCE_DIR, "EURUSD_M15", kinds=("nope",))
