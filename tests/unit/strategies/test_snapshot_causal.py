"""No look-ahead: the snapshot after bar t equals a fresh builder's on bars[:t+1]."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.builders import a_bar

from domain import Bar, MarketSnapshot
from strategies.snapshot import SnapshotBuilder

try:
    from tests.smc_data import assert_known_by, load_bars
except ImportError:  # tests/ is not a package: pytest put it on sys.path itself
    from support.smc_data import assert_known_by, load_bars  # type: ignore[no-redef]

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
            a_bar(symbol="TEST", timeframe="M15", time=T0 + timedelta(minutes=15 * i),
                  open=open_ * TICK, high=high * TICK, low=low * TICK, close=close * TICK,
                  volume=1.0, spread=0.0)
        )
        price = close
    return bars


# Long streams matter most (events need bars to form), so lengths are drawn uniformly
# rather than left to hypothesis' preference for short lists.
bar_steps = st.integers(1, 200).flatmap(
    lambda n: st.lists(
        st.tuples(st.integers(-6, 6), st.integers(0, 4), st.integers(0, 4), st.integers(0, 5)),
        min_size=n,
        max_size=n,
    )
)
def _replay(bars: list[Bar] | tuple[Bar, ...], **params: object) -> list[MarketSnapshot]:
    builder = SnapshotBuilder(**params)  # type: ignore[arg-type]
    return [builder.update(b) for b in bars]


def _fresh(bars: list[Bar] | tuple[Bar, ...], t: int, **params: object) -> MarketSnapshot:
    return _replay(bars[: t + 1], **params)[-1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=bar_steps,
    swing_length=st.integers(1, 5),
    break_on=st.sampled_from(["close", "wick"]),
    swing_mode=st.sampled_from(["strict", "package"]),
    classify=st.sampled_from(["pattern", "trend"]),
    ob_invalidate_on=st.sampled_from(["close", "wick"]),
)
def test_random_stream_snapshot_equals_fresh_builder(
    steps: list[tuple[int, int, int, int]],
    swing_length: int,
    break_on: str,
    swing_mode: str,
    classify: str,
    ob_invalidate_on: str,
) -> None:
    bars = _bars_from_steps(steps)
    event(f"bars: {len(bars) // 50 * 50}+")
    params = {
        "swing_length": swing_length,
        "break_on": break_on,
        "swing_mode": swing_mode,
        "classify": classify,
        "ob_invalidate_on": ob_invalidate_on,
        "keep_bars": 20,
        "max_events": 4,  # small bounds, so eviction from every history is exercised
        "max_blocks": 3,
        "max_fvgs": 3,
        "max_pools": 3,
        "max_levels": 6,
        "equal_tolerance_atr": 0.5,
        "atr_period": 3,
    }
    snaps = _replay(bars, **params)
    last = snaps[-1]
    for name in ("swings", "bos", "choch", "sweeps", "liquidity_pools", "order_blocks", "fvgs"):
        if getattr(last, name):
            event(f"has {name}")
    for t, snap in enumerate(snaps):
        assert_known_by(snap, t)
        assert snap == _fresh(bars, t, **params)


def test_real_data_snapshot_equals_fresh_builder() -> None:
    bars = load_bars(limit=3000)
    snaps = _replay(bars)
    rng = random.Random(3)
    # Bars where an event was just published are where a look-ahead bug would show first.
    eventful = [
        t for t in range(1, len(snaps))
        if any(
            getattr(snaps[t], f) is not getattr(snaps[t - 1], f)
            for f in ("swings", "bos", "choch", "sweeps", "liquidity_pools", "order_blocks",
                      "mitigation_blocks", "fvgs")
        )
    ]
    sample = sorted({*rng.sample(range(len(snaps)), 15), *rng.sample(eventful, 15)})
    assert eventful, "the sample should contain swings and breaks"
    for t in sample:
        assert_known_by(snaps[t], t)
        assert snaps[t] == _fresh(bars, t), f"snapshot differs from a fresh build at t={t}"
