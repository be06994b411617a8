"""No look-ahead: the snapshot after bar t equals a fresh builder's on bars[:t+1]."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.domain import Bar, MarketSnapshot
from strategies.snapshot import SnapshotBuilder

try:
    from tests.smc_data import load_bars
except ImportError:  # tests/ is not a package: pytest put it on sys.path itself
    from smc_data import load_bars  # type: ignore[no-redef]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TICK = 0.0001


def _bars_from_steps(steps: list[tuple[int, int, int, int]]) -> list[Bar]:
    """A random walk in whole ticks, so equal highs/lows (ties) actually happen."""
    bars: list[Bar] = []
    price = 10_000
    for i, (drift, up, down, close_pos) in enumerate(steps):
        open_ = price
        close = price + drift
        high = max(open_, close) + up
        low = min(open_, close) - down
        close = low + (high - low) * close_pos // 4 if close_pos < 4 else close
        bars.append(
            Bar("TEST", "M15", T0 + timedelta(minutes=15 * i),
                open_ * TICK, high * TICK, low * TICK, close * TICK, 1.0, 0.0)
        )
        price = close
    return bars


bar_steps = st.lists(
    st.tuples(
        st.integers(-6, 6), st.integers(0, 4), st.integers(0, 4), st.integers(0, 5)
    ),
    min_size=1,
    max_size=160,
)


def _replay(bars: list[Bar] | tuple[Bar, ...], **params: object) -> list[MarketSnapshot]:
    builder = SnapshotBuilder(**params)  # type: ignore[arg-type]
    return [builder.update(b) for b in bars]


def _fresh(bars: list[Bar] | tuple[Bar, ...], t: int, **params: object) -> MarketSnapshot:
    return _replay(bars[: t + 1], **params)[-1]


def _assert_known_by(snap: MarketSnapshot, t: int) -> None:
    assert snap.index == t
    for s in snap.swings:
        assert s.index < s.confirmed_index <= t
    for b in (*snap.bos, *snap.choch):
        assert b.swing_index < b.index <= t


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=bar_steps,
    swing_length=st.integers(1, 5),
    break_on=st.sampled_from(["close", "wick"]),
)
def test_random_stream_snapshot_equals_fresh_builder(
    steps: list[tuple[int, int, int, int]], swing_length: int, break_on: str
) -> None:
    bars = _bars_from_steps(steps)
    params = {"swing_length": swing_length, "break_on": break_on, "keep_bars": 20}
    snaps = _replay(bars, **params)
    for t, snap in enumerate(snaps):
        _assert_known_by(snap, t)
        assert snap == _fresh(bars, t, **params)


def test_real_data_snapshot_equals_fresh_builder() -> None:
    bars = load_bars(limit=3000)
    snaps = _replay(bars)
    rng = random.Random(3)
    # Bars where an event was just published are where a look-ahead bug would show first.
    eventful = [
        t for t in range(1, len(snaps))
        if snaps[t].swings != snaps[t - 1].swings or snaps[t].bos != snaps[t - 1].bos
        or snaps[t].choch != snaps[t - 1].choch
    ]
    sample = sorted({*rng.sample(range(len(snaps)), 15), *rng.sample(eventful, 15)})
    assert eventful, "the sample should contain swings and breaks"
    for t in sample:
        _assert_known_by(snaps[t], t)
        assert snaps[t] == _fresh(bars, t), f"snapshot differs from a fresh build at t={t}"
