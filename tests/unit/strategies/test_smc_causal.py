"""No look-ahead on real bars: any window of the sample, any t, equals a fresh build.

Random streams (tests/unit/strategies/test_snapshot_causal.py) reach odd shapes; real
EURUSD bars reach the event mix the strategies actually see. Windows start anywhere in the
year so the builder is also checked from a cold start in every market regime.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.snapshot import SnapshotBuilder

try:
    from tests.smc_data import assert_known_by, load_bars
except ImportError:  # tests/ is not a package: pytest put it on sys.path itself
    from support.smc_data import assert_known_by, load_bars  # type: ignore[no-redef]

WINDOW = 600


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(0, 24_424 - WINDOW),
    checks=st.lists(st.integers(0, WINDOW - 1), min_size=1, max_size=6, unique=True),
    swing_mode=st.sampled_from(["strict", "package"]),
    break_on=st.sampled_from(["close", "wick"]),
)
def test_real_window_snapshot_equals_fresh_builder(
    start: int, checks: list[int], swing_mode: str, break_on: str
) -> None:
    bars = load_bars()[start : start + WINDOW]
    params = {"swing_mode": swing_mode, "break_on": break_on}
    builder = SnapshotBuilder(**params)  # type: ignore[arg-type]
    snaps = [builder.update(b) for b in bars]
    for t in checks:
        assert_known_by(snaps[t], t)
        fresh = SnapshotBuilder(**params)  # type: ignore[arg-type]
        for b in bars[: t + 1]:
            last = fresh.update(b)
        assert last == snaps[t], f"window {start}: snapshot differs from a fresh build at t={t}"


def test_full_sample_is_bounded_and_fed_in_order() -> None:
    """Memory stays bounded over the whole year, and every published tuple is ordered."""
    builder = SnapshotBuilder()
    bars = load_bars()
    for bar in bars:
        snap = builder.update(bar)
    assert snap.index == len(bars) - 1
    assert len(snap.bars) == 50
    assert len(snap.swings) <= 20 and len(snap.bos) <= 10 and len(snap.choch) <= 10
    assert len(snap.order_blocks) <= 10 and len(snap.mitigation_blocks) <= 10
    assert len(snap.fvgs) <= 10 and len(snap.liquidity_pools) <= 10 and len(snap.sweeps) <= 10
    for seq in (snap.swings,):
        assert [s.confirmed_index for s in seq] == sorted(s.confirmed_index for s in seq)
    assert [b.index for b in snap.bos] == sorted(b.index for b in snap.bos)
