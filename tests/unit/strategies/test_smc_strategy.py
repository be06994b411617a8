"""The SMC reference strategy: well-formed proposals, only when flat, enough of them."""

from __future__ import annotations

from support.builders import a_position

from domain import Direction, Proposal
from domain.glossary import validate_tag
from strategies.logic import StrategyContext, TradeLogic
from strategies.smc_strategy import SmcOrderBlockRetest
from strategies.snapshot import SnapshotBuilder

try:
    from tests.smc_data import STRUCTURE, load_bars, make_bars
except ImportError:  # tests/ is not a package: pytest put it on sys.path itself
    from support.smc_data import STRUCTURE, load_bars, make_bars  # type: ignore[no-redef]

FLAT = StrategyContext(a_position(symbol="EURUSD"))
LONG = StrategyContext(a_position(symbol="EURUSD", volume=1.0))


def _replay() -> tuple[list[Proposal], list[float]]:
    """Run the strategy over the whole sample with a one-position stop/target simulator
    (stop checked first within a bar: the pessimistic fill). Returns proposals taken and
    each closed trade's result in R."""
    builder, strategy = SnapshotBuilder(), SmcOrderBlockRetest()
    open_trade: Proposal | None = None
    taken: list[Proposal] = []
    results: list[float] = []
    for bar in load_bars():
        if open_trade is not None:
            p = open_trade
            long = p.direction is Direction.LONG
            if (bar.low <= p.stop) if long else (bar.high >= p.stop):
                results.append(-1.0)
                open_trade = None
            elif (bar.high >= p.target) if long else (bar.low <= p.target):
                results.append(abs(p.target - p.entry) / p.risk)
                open_trade = None
        snap = builder.update(bar)
        ctx = FLAT if open_trade is None else LONG
        proposals = strategy.on_bar(snap, ctx)
        if open_trade is not None:
            assert proposals == (), "proposed while a position was open"
        elif proposals:
            (open_trade,) = proposals
            assert open_trade.bar_time == snap.bar.time and open_trade.entry == snap.bar.close
            taken.append(open_trade)
    return taken, results


def test_full_sample_produces_enough_well_formed_trades() -> None:
    taken, results = _replay()
    assert len(results) >= 50, f"only {len(results)} trades over the year"
    for p in taken:
        assert p.strategy == "smc_ob_retest" and p.symbol == "EURUSD" and p.timeframe == "M15"
        if p.direction is Direction.LONG:
            assert p.stop < p.entry < p.target
        else:
            assert p.target < p.entry < p.stop
        assert p.reason
        assert all(validate_tag(t).value == t for t in p.tags)
        assert "choch_bullish" in p.tags or "choch_bearish" in p.tags


def test_retest_of_the_block_behind_a_break_is_proposed() -> None:
    """The hand-built structure: bullish BOS at bar 7, block = bar 5, retest at bar 9."""
    builder = SnapshotBuilder(swing_length=1, atr_period=2)
    strategy = SmcOrderBlockRetest(require_choch=False, stop_buffer_atr=0.0)
    found = {}
    for bar in make_bars(STRUCTURE):
        snap = builder.update(bar)
        if out := strategy.on_bar(snap, FLAT):
            found[snap.index] = out
    (p,) = found.pop(9)
    assert found == {}
    assert (p.direction, p.entry, p.stop) == (Direction.LONG, 10.4, 9.0)
    assert p.target == 10.4 + 2.0 * (10.4 - 9.0)  # no buy-side pool: fixed 2R
    assert {"bos_bullish", "order_block_bullish", "mitigation_block_bullish"} <= set(p.tags)
    # The same retest with a position open, or requiring a CHoCH, proposes nothing.
    builder = SnapshotBuilder(swing_length=1, atr_period=2)
    choch_only = SmcOrderBlockRetest()
    for bar in make_bars(STRUCTURE):
        snap = builder.update(bar)
        assert strategy.on_bar(snap, LONG) == ()
        assert choch_only.on_bar(snap, FLAT) == ()


def test_is_a_trade_logic() -> None:
    strategy = SmcOrderBlockRetest(risk_reward=3.0, max_wait_bars=10)
    assert isinstance(strategy, TradeLogic)
    assert strategy.name == "smc_ob_retest"
