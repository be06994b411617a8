"""Each SMC detector on small hand-built bar sequences whose answer can be read off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import BreakKind, Direction, MarketSnapshot, SwingKind, Trend
from strategies.smc.atr import WilderAtr
from strategies.smc.dealing_range import premium_discount
from strategies.smc.sessions import session_of
from strategies.snapshot import SnapshotBuilder

try:
    from tests.smc_data import STRUCTURE, T0
    from tests.smc_data import hlc as _hlc
    from tests.smc_data import make_bars as _bars
except ImportError:  # tests/ is not a package: pytest put it on sys.path itself
    from support.smc_data import STRUCTURE, T0  # type: ignore[no-redef]
    from support.smc_data import hlc as _hlc
    from support.smc_data import make_bars as _bars


def _run(rows: list[tuple[float, float, float, float]], **params: object) -> list[MarketSnapshot]:
    builder = SnapshotBuilder(**params)  # type: ignore[arg-type]
    return [builder.update(b) for b in _bars(rows)]


def test_swing_is_published_only_once_confirmed() -> None:
    snaps = _run(STRUCTURE, swing_length=1)
    assert [s.index for s in snaps[2].swings] == [1]
    assert [s.index for s in snaps[3].swings] == [1]  # bar 3's high is not yet a swing
    high = snaps[4].swings[-1]
    assert (high.kind, high.index, high.price, high.confirmed_index) == (SwingKind.HIGH, 3, 12.0, 4)
    assert high.confirmed_time == T0 + timedelta(minutes=60)


def test_bos_then_choch_by_pattern() -> None:
    snaps = _run(STRUCTURE, swing_length=1)
    assert snaps[6].bos == () and snaps[6].trend is Trend.NEUTRAL
    (bos,) = snaps[7].bos
    assert (bos.kind, bos.direction, bos.level, bos.swing_index, bos.index) == (
        BreakKind.BOS, Direction.LONG, 12.0, 3, 7
    )
    assert snaps[7].trend is Trend.BULLISH
    (choch,) = snaps[10].choch
    assert (choch.direction, choch.level, choch.swing_index, choch.index) == (
        Direction.SHORT, 9.0, 5, 10
    )
    assert snaps[10].trend is Trend.BEARISH


def test_trend_classification_calls_first_counter_break_a_choch() -> None:
    snaps = _run(STRUCTURE, swing_length=1, classify="trend")
    assert [b.index for b in snaps[-1].bos] == [7]  # from neutral: a BOS
    assert [b.index for b in snaps[-1].choch] == [10]


def test_wick_break_fires_on_the_high() -> None:
    rows = list(STRUCTURE)
    rows[7] = (11.0, 12.5, 10.5, 11.8)  # wick above 12.0, close below
    close = _run(rows, swing_length=1)
    wick = _run(rows, swing_length=1, break_on="wick")
    assert close[7].bos == ()
    assert [b.index for b in wick[7].bos] == [7]


def test_order_block_lifecycle() -> None:
    snaps = _run(STRUCTURE, swing_length=1)
    (ob,) = snaps[7].order_blocks
    assert (ob.direction, ob.index, ob.top, ob.bottom, ob.known_index) == (
        Direction.LONG, 5, 10.5, 9.0, 7
    )
    assert (ob.break_kind, ob.swing_index) == (BreakKind.BOS, 3)
    assert snaps[8].order_blocks == (ob,)  # not touched by bar 8
    (mb,) = snaps[9].mitigation_blocks
    assert mb.index == 5 and mb.mitigated_index == 9 and mb.broken_index is None
    assert all(o.index != 5 for o in snaps[9].order_blocks)
    assert snaps[10].mitigation_blocks[0].broken_index == 10  # published once, broken
    assert all(o.index != 5 for o in snaps[11].mitigation_blocks)  # then gone
    bearish = [o for o in snaps[10].order_blocks if o.direction is Direction.SHORT]
    assert [(o.index, o.top, o.break_kind) for o in bearish] == [(7, 12.5, BreakKind.CHOCH)]


def test_fvg_touch_and_fill() -> None:
    rows = [
        (9.5, 10.0, 9.0, 9.5),
        (9.7, 11.5, 9.6, 11.4),  # up candle
        (11.4, 12.0, 10.5, 11.8),  # low 10.5 above bar 0's high 10.0: bullish gap
        (11.8, 12.2, 10.4, 11.0),  # trades into it
        (11.0, 11.0, 9.9, 10.0),  # through it: filled
        (10.0, 10.5, 9.8, 10.2),
    ]
    snaps = _run(rows)
    assert snaps[1].fvgs == ()
    (gap,) = snaps[2].fvgs
    assert (gap.direction, gap.top, gap.bottom, gap.index, gap.known_index) == (
        Direction.LONG, 10.5, 10.0, 1, 2
    )
    assert snaps[3].fvgs[0].touched_index == 3 and snaps[3].fvgs[0].filled_index is None
    assert snaps[4].fvgs[0].filled_index == 4
    assert snaps[5].fvgs == ()


def test_fvg_min_size_drops_small_gaps() -> None:
    rows = [
        (9.5, 10.0, 9.0, 9.5),
        (9.7, 11.5, 9.6, 11.4),
        (11.4, 12.0, 10.5, 11.8),
        *[(11.8, 12.0, 11.6, 11.8)] * 14,
    ]
    assert _run(rows, fvg_min_size_atr=0.0)[2].fvgs != ()
    late = _run(rows * 2, fvg_min_size_atr=5.0)  # once ATR exists, a 0.5 gap is < 5 ATR
    assert all(g.known_index < 17 for g in late[-1].fvgs)


def test_equal_highs_pool_and_sweep() -> None:
    rows = _hlc(
        [
            (10.0, 9.0, 9.5),
            (11.0, 9.5, 10.5),  # 1 swing high 11.0
            (10.5, 9.2, 9.6),
            (10.2, 9.0, 9.4),  # 3 swing low
            (11.0, 9.4, 10.6),  # 4 swing high 11.0 again: equal highs
            (10.8, 10.0, 10.2),  # 5 confirms bar 4: the pool exists from here
            (11.3, 10.1, 10.7),  # 6 wick above 11.0, close back below: buy-side sweep
            (10.9, 10.3, 10.5),
        ]
    )
    snaps = _run(rows, swing_length=1, equal_tolerance_price=0.01)
    assert snaps[4].liquidity_pools == ()
    (pool,) = snaps[5].liquidity_pools
    assert (pool.side, pool.level, pool.swing_indices, pool.index) == (
        SwingKind.HIGH, 11.0, (1, 4), 5
    )
    (swept,) = snaps[6].liquidity_pools
    assert swept.swept_index == 6
    (sweep,) = snaps[6].sweeps
    assert (sweep.side, sweep.level, sweep.pool_index, sweep.index) == (SwingKind.HIGH, 11.0, 1, 6)
    assert snaps[7].liquidity_pools == ()
    assert snaps[7].sweeps == snaps[6].sweeps


def test_lone_swing_sweep() -> None:
    snaps = _run([*STRUCTURE[:7], (11.0, 12.2, 10.9, 11.9)], swing_length=1)
    (sweep,) = snaps[7].sweeps  # wick above the 12.0 swing high, close below it
    assert (sweep.side, sweep.pool_index, sweep.index) == (SwingKind.HIGH, 3, 7)
    assert snaps[7].bos == ()


def test_dealing_range_and_premium_discount() -> None:
    snaps = _run(STRUCTURE, swing_length=1)
    assert snaps[3].dealing_range is None and snaps[3].premium_discount is None
    assert snaps[4].dealing_range == (8.0, 12.0)
    assert snaps[4].premium_discount == "equilibrium"  # close 10.0 is the midpoint
    assert premium_discount(11.0, 8.0, 12.0, 0.05) == "premium"
    assert premium_discount(9.0, 8.0, 12.0, 0.05) == "discount"
    assert premium_discount(10.1, 8.0, 12.0, 0.05) == "equilibrium"
    assert premium_discount(10.0, 10.0, 10.0, 0.05) == "equilibrium"


@pytest.mark.parametrize(
    ("hour", "session"),
    [(0, "asia"), (6, "asia"), (7, "london"), (11, "london"), (12, "new_york"),
     (20, "new_york"), (21, None), (23, None)],
)
def test_sessions_by_utc_hour(hour: int, session: str | None) -> None:
    assert session_of(datetime(2024, 1, 2, hour, 30, tzinfo=UTC)) == session


def test_wilder_atr_matches_hand_computation() -> None:
    bars = _bars(_hlc([(10, 9, 9.5), (11, 9.5, 10.5), (10.8, 10, 10.2), (12, 10.1, 11.9)]))
    atr = WilderAtr(2)
    values = [atr.update(b) for b in bars]
    # true ranges: 1.0, 1.5, 0.8, max(12, 10.2) - min(10.1, 10.2) = 1.9
    assert values[0] is None
    assert values[1] == pytest.approx(1.25)
    assert values[2] == pytest.approx((1.25 + 0.8) / 2)
    assert values[3] == pytest.approx(((1.25 + 0.8) / 2 + 1.9) / 2)


def test_snapshot_carries_the_last_bars_and_index() -> None:
    snaps = _run(STRUCTURE, keep_bars=3)
    assert [s.index for s in snaps] == list(range(len(STRUCTURE)))
    assert [b.close for b in snaps[-1].bars] == [r[3] for r in STRUCTURE[-3:]]
    assert snaps[-1].symbol == "TEST" and snaps[-1].timeframe == "M15"


def test_unchanged_histories_reuse_the_same_tuple() -> None:
    """Quiet bars must not rebuild tuples: replay speed depends on it."""
    snaps = _run(STRUCTURE, swing_length=1)
    assert snaps[5].swings is snaps[4].swings
    assert snaps[8].bos is snaps[7].bos


@pytest.mark.parametrize(
    "params",
    [
        {"swing_length": 0},
        {"atr_period": 0},
        {"keep_bars": 0},
        {"max_swings": 1},
        {"break_on": "open"},
        {"swing_mode": "fuzzy"},
        {"classify": "vibes"},
        {"ob_invalidate_on": "open"},
    ],
)
def test_bad_parameters_are_rejected(params: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SnapshotBuilder(**params)  # type: ignore[arg-type]
