"""Trades and run metrics against a small case computed by hand (docs/reports.md).

Four trades, contract size 100, one lot each, initial balance 1,000:

| # | side  | entry | stop  | exit          | PnL  | risk | R     | equity after |
|---|-------|-------|-------|---------------|------|------|-------|--------------|
| 1 | long  | 100.0 | 99.0  | 102.0 TP      | +200 | 100  | +2    | 1,200        |
| 2 | short | 105.0 | 106.0 | 106.0 SL      | -100 | 100  | -1    | 1,100        |
| 3 | long  | 110.0 | 108.0 | 107.0 close, fee 10 | -310 | 200 | -1.55 | 790   |
| 4 | long  | 100.0 | 99.5  | 101.5 TP      | +150 | 50   | +3    | 940          |

Max drawdown 1,200 -> 790 = 410 (34.1667 % of the peak). Win rate 2/4, average R
(2 - 1 - 1.55 + 3) / 4 = 0.6125 = expectancy 0.5 x 2.5 - 0.5 x 1.275. Money expectancy
-60 / 4 = -15. Profit factor 350 / 410. Per-trade returns on the equity before each trade:
0.2, -0.08333, -0.28182, 0.18987 -> mean 0.0061805, sample sd 0.232569, Sharpe 0.0265748;
one trade a day on four trading days, so the daily Sharpe is that x sqrt(252) = 0.4218619.
Hourly bars all four days (96); in a position 5 + 2 + 3 + 4 = 14 bars -> exposure 14/96.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.builders import an_intent, an_order

from domain import Order, OrderSide, OrderState, OrderType
from executor.journal.costs import FUNDING, Cost
from executor.journal.models import FillRow
from executor.reports.metrics import (
    HistogramBin,
    compute_metrics,
    drawdowns,
    exposure,
    r_histogram,
    reconstruct_trades,
)

D0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
CONTRACT = 100.0


def at(day: int, hour: int) -> datetime:
    return D0 + timedelta(days=day, hours=hour)


def order(coid: str, side: str, stop: float | None, *, volume: float = 1.0,
          decision_id: int | None = None, reduce_only: bool = False) -> Order:
    return an_order(intent=an_intent(client_order_id=coid, account="acct", symbol="XYZ",
                                     side=OrderSide(side), volume=volume,
                                     order_type=OrderType.MARKET, bar_time=D0, stop_loss=stop,
                                     reduce_only=reduce_only, decision_id=decision_id),
                    state=OrderState.FILLED)


def fill(coid: str, kind: str, side: str, t: datetime, price: float, volume: float = 1.0,
         pnl: float = 0.0, fee: float = 0.0) -> FillRow:
    return FillRow(fill_id=f"{coid}:{kind}:{t.isoformat()}", client_order_id=coid,
                   symbol="XYZ", side=side, time=t, price=price, volume=volume, fee=fee,
                   kind=kind, realized_pnl=pnl)


ORDERS = [order("t1", "buy", 99.0, decision_id=11), order("t2", "sell", 106.0, decision_id=12),
          order("t3", "buy", 108.0, decision_id=13), order("t4", "buy", 99.5, decision_id=14)]
FILLS = [
    fill("t1", "entry", "buy", at(0, 10), 100.0),
    fill("t1", "take_profit", "sell", at(0, 14), 102.0, pnl=200.0),
    fill("t2", "entry", "sell", at(1, 10), 105.0),
    fill("t2", "stop_loss", "buy", at(1, 11), 106.0, pnl=-100.0),
    fill("t3", "entry", "buy", at(2, 10), 110.0, fee=10.0),
    fill("t3", "close", "sell", at(2, 12), 107.0, pnl=-300.0),
    fill("t4", "entry", "buy", at(3, 10), 100.0),
    fill("t4", "take_profit", "sell", at(3, 13), 101.5, pnl=150.0),
]
BARS = [at(d, h) for d in range(4) for h in range(24)]


def test_trades_are_rebuilt_with_pnl_risk_and_r() -> None:
    book = reconstruct_trades(ORDERS, FILLS, CONTRACT)
    assert book.still_open == ()
    got = [(t.client_order_id, t.side, t.entry_price, t.exit_price, t.exit_kind,
            round(t.pnl, 9), round(t.risk or 0, 9), round(t.r_multiple or 0, 9), t.decision_id)
           for t in book.closed]
    assert got == [
        ("t1", "long", 100.0, 102.0, "take_profit", 200.0, 100.0, 2.0, 11),
        ("t2", "short", 105.0, 106.0, "stop_loss", -100.0, 100.0, -1.0, 12),
        ("t3", "long", 110.0, 107.0, "close", -310.0, 200.0, -1.55, 13),
        ("t4", "long", 100.0, 101.5, "take_profit", 150.0, 50.0, 3.0, 14),
    ]
    assert book.closed[2].fees == 10.0


def test_run_metrics_match_the_hand_computed_case() -> None:
    trades = reconstruct_trades(ORDERS, FILLS, CONTRACT).closed
    m = compute_metrics(trades, initial_balance=1000.0, bar_times=BARS)
    assert (m.trades, m.wins, m.losses) == (4, 2, 2)
    assert m.win_rate == 0.5
    assert m.total_pnl == pytest.approx(-60.0)
    assert m.final_equity == pytest.approx(940.0)
    assert m.avg_r == pytest.approx(0.6125)
    assert m.median_r == pytest.approx(0.5)
    assert m.total_r == pytest.approx(2.45)
    assert m.avg_win_r == pytest.approx(2.5)
    assert m.avg_loss_r == pytest.approx(1.275)
    assert m.expectancy_r == pytest.approx(0.6125)
    assert m.expectancy_money == pytest.approx(-15.0)
    assert m.profit_factor == pytest.approx(350 / 410)
    assert m.max_drawdown == pytest.approx(410.0)
    assert m.max_drawdown_pct == pytest.approx(34.166666667)
    assert m.exposure == pytest.approx(14 / 96)
    assert m.sharpe_per_trade == pytest.approx(0.0265748014, rel=1e-6)
    assert m.sharpe_daily == pytest.approx(0.4218618939, rel=1e-6)
    assert [(p.time, round(p.equity, 9)) for p in m.equity_curve] == [
        (BARS[0], 1000.0), (at(0, 14), 1200.0), (at(1, 11), 1100.0), (at(2, 12), 790.0),
        (at(3, 13), 940.0)]
    assert [round(p.drawdown, 9) for p in m.equity_curve] == [0, 0, 100, 410, 260]
    # 0.5 R bins from [-2, -1.5) to [3, 3.5): -1.55, -1, 2 and 3 land in four of them.
    hist = m.r_histogram
    assert (hist[0].low, hist[-1].high, len(hist)) == (-2.0, 3.5, 11)
    assert [(b.low, b.count) for b in hist if b.count] == [(-2.0, 1), (-1.0, 1), (2.0, 1),
                                                           (3.0, 1)]
    assert m.as_dict()["max_drawdown"] == m.max_drawdown


def test_no_trades_gives_empty_results_not_errors() -> None:
    m = compute_metrics([], initial_balance=500.0, bar_times=BARS)
    assert (m.trades, m.win_rate, m.avg_r, m.expectancy_money, m.sharpe_daily) == \
        (0, None, None, None, None)
    assert (m.max_drawdown, m.exposure, m.r_histogram) == (0.0, 0.0, ())
    assert [p.equity for p in m.equity_curve] == [500.0]


def test_same_bar_entry_and_exit_in_any_order() -> None:
    """The paper broker stamps an entry and a stop hit in the same bar with one time; the
    exit must still close the trade it names, whatever order the fills come in."""
    orders = [order("a", "buy", 99.0)]
    fills = [fill("a", "stop_loss", "sell", at(0, 9), 99.0, pnl=-100.0),
             fill("a", "entry", "buy", at(0, 9), 100.0)]
    (t,) = reconstruct_trades(orders, fills, CONTRACT).closed
    assert (t.entry_price, t.exit_price, t.r_multiple) == (100.0, 99.0, -1.0)


def test_partial_exits_reversal_and_open_position() -> None:
    orders = [order("a", "buy", 98.0, volume=2.0), order("b", "sell", 104.0, volume=3.0),
              order("c", "buy", None, volume=1.0)]
    fills = [
        fill("a", "entry", "buy", at(0, 1), 100.0, volume=2.0),
        fill("a", "take_profit", "sell", at(0, 2), 101.0, volume=1.0, pnl=100.0),
        # b reverses the remaining lot of a (+200 realised on it), opens 2 lots short
        fill("b", "entry", "sell", at(0, 3), 102.0, volume=3.0, pnl=200.0, fee=3.0),
        fill("b", "stop_loss", "buy", at(0, 5), 104.0, volume=2.0, pnl=-400.0),
        fill("c", "entry", "buy", at(1, 1), 103.0),
    ]
    book = reconstruct_trades(orders, fills, CONTRACT)
    a, b = book.closed
    assert (a.client_order_id, a.volume, a.exit_kind) == ("a", 2.0, "mixed")
    assert a.exit_price == pytest.approx(101.5)
    assert a.pnl == pytest.approx(100 + 200 - 1.0)  # a third of b's entry fee closed a
    assert a.risk == pytest.approx(2 * 2 * CONTRACT)
    assert (b.side, b.volume, b.entry_price) == ("short", 2.0, 102.0)
    assert b.pnl == pytest.approx(-400 - 2.0)
    assert b.r_multiple == pytest.approx(-402 / (2 * 2 * CONTRACT))
    (c,) = book.still_open
    assert (c.client_order_id, c.side, c.volume) == ("c", "long", 1.0)
    # A trade without a stop has no R and is left out of the R statistics.
    no_stop = reconstruct_trades(
        orders, [*fills, fill("c", "close", "sell", at(1, 2), 104.0, pnl=100.0)], CONTRACT)
    assert no_stop.closed[-1].r_multiple is None
    m = compute_metrics(no_stop.closed, initial_balance=1000.0)
    assert (m.trades, m.trades_with_r) == (3, 2)


def test_exposure_counts_open_positions_to_the_last_bar() -> None:
    bars = [at(0, h) for h in range(10)]
    assert exposure([], bars, open_since=[at(0, 7)]) == pytest.approx(0.3)
    assert exposure([], []) is None


def test_drawdown_percent_is_of_the_running_peak() -> None:
    assert drawdowns([100.0, 150.0, 120.0, 160.0, 80.0]) == [
        (100.0, 0.0, 0.0), (150.0, 0.0, 0.0), (120.0, 30.0, 20.0), (160.0, 0.0, 0.0),
        (80.0, 80.0, 50.0)]


def test_histogram_bins_are_aligned_and_keep_empty_bins() -> None:
    assert r_histogram([0.1, 0.2, 1.2], width=0.5) == (
        HistogramBin(0.0, 0.5, 2), HistogramBin(0.5, 1.0, 0), HistogramBin(1.0, 1.5, 1))
    with pytest.raises(ValueError):
        r_histogram([1.0], width=0)


def test_funding_is_a_cost_line_of_the_trades_open_when_it_is_paid() -> None:
    """A perpetual's funding (journal ``costs``, negative: paid) counts in the PnL of the
    trades open on its symbol at its time, shared by open volume: t1 (long 10:00-14:00)
    pays 3 at 12:00 and at its exit's own timestamp 14:00 still holds the position; t2
    (short) receives 1 at 10:00, the moment it opens; the payment at 16:00 on day 0 falls
    between trades and in none; one on another symbol in none either."""
    costs = [Cost("f1", FUNDING, "XYZ", at(0, 12), -3.0, "USD"),
             Cost("f2", FUNDING, "XYZ", at(0, 14), -0.5, "USD"),
             Cost("f3", FUNDING, "XYZ", at(0, 16), -9.0, "USD"),
             Cost("f4", FUNDING, "XYZ", at(1, 10), 1.0, "USD"),
             Cost("f5", FUNDING, "ABC", at(2, 11), -7.0, "USD")]
    book = reconstruct_trades(ORDERS, FILLS, CONTRACT, costs)
    got = [(t.client_order_id, t.funding, round(t.pnl, 9)) for t in book.closed]
    assert got == [("t1", -3.5, 196.5), ("t2", 1.0, -99.0), ("t3", 0.0, -310.0),
                   ("t4", 0.0, 150.0)]
    assert compute_metrics(book.closed, initial_balance=1000.0).total_pnl == pytest.approx(
        -60.0 - 2.5)


def test_a_payment_is_shared_by_open_volume() -> None:
    orders = [order("a", "buy", None, volume=1.0), order("b", "buy", None, volume=3.0)]
    fills = [fill("a", "entry", "buy", at(0, 1), 100.0), fill("b", "entry", "buy", at(0, 2),
                                                             100.0, volume=3.0),
             fill("a", "close", "sell", at(0, 9), 100.0), fill("b", "close", "sell", at(0, 9),
                                                                100.0, volume=3.0)]
    book = reconstruct_trades(orders, fills, CONTRACT,
                              [Cost("f", FUNDING, "XYZ", at(0, 8), -4.0, "USD")])
    assert {t.client_order_id: t.funding for t in book.closed} == {"a": -1.0, "b": -3.0}
