"""Paper trades like the venue it is configured as (issue 19): each test is written from the
venue's documentation, cited in its docstring, not from our code.

Sources:
- Binance spot: "Trading fees are always charged in the asset you receive" (FAQ "What is
  Binance Spot Trading Fee and How to Calculate", binance.com/en/support/faq/
  e85d6e703b874674840122196b89780a), 0.1 % taker without BNB; an order the account's
  *free* balance cannot cover is refused with -2010 "Account has insufficient balance for
  requested action." ("Error codes for Binance", developers.binance.com/docs/
  binance-spot-api-docs/errors); an open order holds its quantity ``locked``, out of
  ``free`` ("Account information (USER_DATA)": balances ``free`` / ``locked``); an OCO is
  "an one-cancels-the-other pair, where activation of one order immediately cancels the
  other", both legs of the same quantity, and refused when the last price is not between
  them ("New Order list - OCO (TRADE)", ``POST /api/v3/orderList/oco``).
- Binance USD-M: commission in USDT, 0.0500 % taker at VIP 0 ("USDⓈ-M Futures Trading
  Fee"); "Funding payments occur every 8 hours at 00:00 UTC; 08:00 UTC and 16:00 UTC",
  "Funding Amount = Nominal Value of Positions x Funding Rate", only on positions open at
  those times, a positive rate meaning longs pay shorts ("Introduction to Binance Futures
  Funding Rates", FAQ 360033525031); a conditional order whose trigger the price has passed
  is refused, -2021 "Order would immediately trigger."; a reduce-only order "can only
  reduce" the position, and a reduce-only conditional that fires with nothing to reduce
  expires ("New Algo Order (TRADE)"; tests/fakes/binance_usdm/algo.py); a stop left after
  its position closed another way stays NEW (Binance does not cancel it).
- MetaTrader 5: on a hedging account "you can open several positions for a symbol"
  (MQL5 book, account_netting_hedge), each with its own POSITION_PRICE_OPEN, POSITION_SL
  and POSITION_TP; a position is closed by naming its ticket, and the daemon's MT5 adapter
  closes its opposite tickets oldest first so the account ends where netting would
  (executor/brokers/mt5_orders.py, tests/integration/test_mt5_accounts.py); on a netting
  account a deal in the same direction adds to the one position and its SL/TP replace the
  position's. SL/TP on the wrong side of the price: TRADE_RETCODE_INVALID_STOPS (10016,
  "Invalid stops in the request").
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.builders import a_bar, an_intent, an_order

from domain import Bar, Fill, Order, OrderIntent, OrderSide, OrderState, OrderType
from domain.errors import ConfigError
from domain.orders import protective_id, protective_intent
from executor.brokers.base import BrokerFill, ProtectingBroker
from executor.brokers.paper import PaperBroker
from executor.brokers.paper_venue import PaperVenue
from executor.settings import PaperSettings, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "dta.example.toml"
BTC = "BTC/USDT"
T0 = datetime(2024, 3, 4, 5, 0, tzinfo=UTC)  # a Monday, 05:00 UTC
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def broker(venue: str, **kw: float) -> PaperBroker:
    return PaperBroker(contract_size=1.0, initial_balance=10_000.0,
                       venue=PaperVenue.of(venue, **kw))  # type: ignore[arg-type]


def hour(i: int, *, open: float, high: float | None = None, low: float | None = None,
         close: float | None = None, symbol: str = BTC, timeframe: str = "H1",
         minutes: int = 60) -> Bar:
    """The ``i``-th bar after T0 (H1 unless told)."""
    return a_bar(symbol=symbol, timeframe=timeframe, time=T0 + timedelta(minutes=minutes * i),
                 open=open, high=max(open, close or open) if high is None else high,
                 low=min(open, close or open) if low is None else low,
                 close=open if close is None else close, spread=0.0)


def entry(coid: str, side: OrderSide, volume: float, *, sl: float | None = None,
          tp: float | None = None, symbol: str = BTC, reduce_only: bool = False) -> Order:
    intent = an_intent(client_order_id=coid, account="paper-1", symbol=symbol, side=side,
                       volume=volume, order_type=OrderType.MARKET, bar_time=T0,
                       stop_loss=sl, take_profit=tp, reduce_only=reduce_only)
    return an_order(intent=intent).transition(OrderState.SUBMITTING)


def legs(entry_intent: OrderIntent, volume: float) -> list[Order]:
    kinds = [k for k, level in (("stop_loss", entry_intent.stop_loss),
                                ("take_profit", entry_intent.take_profit)) if level is not None]
    return [an_order(intent=protective_intent(entry_intent, k, volume))
            .transition(OrderState.SUBMITTING) for k in kinds]


def filled(b: PaperBroker, order: Order, bar: Bar) -> list[BrokerFill]:
    assert b.submit(order).state is OrderState.ACCEPTED
    return list(b.on_bar(bar))


def opened(b: PaperBroker, coid: str) -> tuple[Order, list[BrokerFill]]:
    """A long of 1 bought at 100 on the bar after T0 (whose close, 101, is the last price),
    with its stop at 95 and target at 110."""
    b.on_bar(hour(0, open=100.0))
    order = entry(coid, BUY, 1.0, sl=95.0, tp=110.0)
    return order, filled(b, order, hour(1, open=100.0, close=101.0))


# ====================================================================== spot


def test_spot_refuses_a_sell_of_what_it_does_not_hold() -> None:
    """Spot holds no shorts: a sell with nothing held is refused as Binance refuses it
    (-2010), and the account says so to the guardrails (``holds_shorts``)."""
    b = broker("spot")
    b.on_bar(hour(0, open=100.0))
    refused = b.submit(entry("dta-s1", SELL, 0.5))
    assert refused.state is OrderState.REJECTED
    assert "-2010" in refused.reason
    assert "Account has insufficient balance for requested action." in refused.reason
    assert b.holds_shorts is False
    assert b.on_bar(hour(1, open=100.0)) == [] and b.position(BTC).is_flat


def test_spot_buy_pays_its_commission_in_the_base_asset() -> None:
    """A buy of 1 BTC at 100 credits 0.999 BTC: the 0.1 % fee is taken from the asset
    received. The fee arrives as a ``fee`` fill (a sale of that much base, as the live
    spot adapter reports it) and the entry carries its value in the quote currency."""
    b = broker("spot")
    b.on_bar(hour(0, open=100.0))
    fills = filled(b, entry("dta-b1", BUY, 1.0), hour(1, open=100.0))
    assert [f.kind for f in fills] == ["entry", "fee"]
    buy, fee = fills
    assert buy.fill.volume == pytest.approx(1.0)
    assert buy.fill.fee == pytest.approx(0.1)  # 0.001 BTC at 100 USDT
    assert fee.fill.side is SELL and fee.fill.volume == pytest.approx(0.001)
    assert fee.fill.fill_id == f"{buy.fill.fill_id}:fee"
    assert b.position(BTC).volume == pytest.approx(0.999)


def test_spot_sell_pays_its_commission_in_the_quote_and_equity_is_the_cash() -> None:
    """A sell pays 0.1 % of the notional in USDT; after the round trip the paper equity
    is exactly the USDT the account would hold."""
    b = broker("spot")
    b.on_bar(hour(0, open=100.0))
    filled(b, entry("dta-b1", BUY, 1.0), hour(1, open=100.0))
    [sell] = filled(b, entry("dta-s1", SELL, 0.999), hour(2, open=110.0))
    assert sell.fill.fee == pytest.approx(0.999 * 110.0 * 0.001)
    assert b.position(BTC).is_flat
    cash = 10_000.0 - 100.0 + 0.999 * 110.0 * (1 - 0.001)
    assert b.equity() == pytest.approx(cash)


def test_spot_close_of_the_bought_amount_sells_what_is_held() -> None:
    """After the fee the account holds less than it bought: a sell of the bought amount
    is cut to the holding, as the live spot adapter cuts it (ccxt_orders._sell_amount),
    and never leaves a short."""
    b = broker("spot")
    b.on_bar(hour(0, open=100.0))
    filled(b, entry("dta-b1", BUY, 1.0), hour(1, open=100.0))
    accepted = b.submit(entry("dta-s1", SELL, 1.0))
    assert accepted.state is OrderState.ACCEPTED
    [sell] = b.on_bar(hour(2, open=100.0))
    assert sell.fill.volume == pytest.approx(0.999)
    assert sell.order is not None and "cut" in sell.order.reason
    assert b.position(BTC).is_flat


def test_spot_protective_orders_lock_the_holding_and_cancel_each_other() -> None:
    """The exits of a spot long are one OCO: its quantity must be free (-2010 otherwise:
    the bought 1.0 is 0.999 after the fee) and stays locked while it works, so a market
    sell of the same coins is refused; when one leg fires the other is cancelled."""
    b = broker("spot")
    order, _ = opened(b, "dta-b1")
    too_much = b.place_protection(legs(order.intent, 1.0))
    assert [o.state for o in too_much] == [OrderState.REJECTED] * 2
    assert all("-2010" in o.reason for o in too_much)
    placed = b.place_protection(legs(order.intent, 0.999))
    assert [o.state for o in placed] == [OrderState.ACCEPTED] * 2
    locked_out = b.submit(entry("dta-s1", SELL, 0.5))
    assert locked_out.state is OrderState.REJECTED and "-2010" in locked_out.reason
    [stop] = b.on_bar(hour(2, open=99.0, high=111.0, low=94.0, close=96.0))
    assert stop.kind == "stop_loss" and stop.fill.client_order_id == "dta-b1"
    assert stop.fill.price == pytest.approx(95.0)
    assert stop.fill.fee == pytest.approx(0.999 * 95.0 * 0.001)
    tp = b.lookup(protective_id("dta-b1", "take_profit"))
    assert tp is not None and tp.state is OrderState.CANCELLED
    assert b.protective_orders(BTC) == [] and b.position(BTC).is_flat


def test_spot_refuses_a_buy_side_protective_order() -> None:
    """No short exists on spot, so nothing needs a buy stop."""
    b = broker("spot")
    b.on_bar(hour(0, open=100.0))
    short = entry("dta-x", SELL, 1.0, sl=105.0).intent
    [leg] = b.place_protection(legs(short, 1.0))
    assert leg.state is OrderState.REJECTED


# ====================================================================== swap


def test_swap_holds_shorts_and_charges_commission_in_the_quote() -> None:
    """USD-M charges 0.05 % taker in USDT on every fill; no base asset is taken."""
    b = broker("swap")
    b.on_bar(hour(0, open=100.0))
    fills = filled(b, entry("dta-s1", SELL, 2.0), hour(1, open=100.0))
    assert [f.kind for f in fills] == ["entry"]
    assert fills[0].fill.fee == pytest.approx(2.0 * 100.0 * 0.0005)
    assert b.position(BTC).volume == pytest.approx(-2.0)
    assert b.holds_shorts is True


def test_swap_funding_is_charged_at_each_funding_time_on_the_notional() -> None:
    """A long held through 08:00 UTC pays notional x rate once (and keeps its position);
    a short receives it; nothing is charged between funding times or while flat."""
    b = broker("swap", funding_rate=0.0001)
    b.on_bar(hour(0, open=100.0))  # 05:00
    filled(b, entry("dta-l1", BUY, 2.0), hour(1, open=100.0))  # 06:00
    assert b.on_bar(hour(2, open=110.0)) == []  # 07:00
    [funding] = b.on_bar(hour(3, open=120.0))  # 08:00
    assert funding.kind == "funding"
    assert funding.fill.time == datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
    assert funding.fill.volume == 0.0
    assert funding.fill.fee == pytest.approx(2.0 * 120.0 * 0.0001)  # paid: a cost
    assert funding.fill.client_order_id == "dta-l1"
    assert b.position(BTC).volume == pytest.approx(2.0)
    assert b.position(BTC).avg_price == pytest.approx(100.0)

    s = broker("swap", funding_rate=0.0001)
    s.on_bar(hour(0, open=100.0))
    filled(s, entry("dta-s1", SELL, 1.0), hour(1, open=100.0))
    s.on_bar(hour(2, open=100.0))
    [received] = s.on_bar(hour(3, open=100.0))
    assert received.fill.fee == pytest.approx(-0.01)  # a short is paid
    assert s.equity() == pytest.approx(10_000.0 - 100.0 * 0.0005 + 0.01)

    flat = broker("swap")
    assert all(flat.on_bar(hour(i, open=100.0)) == [] for i in range(24))


def test_swap_funding_three_times_a_day_on_m15_bars() -> None:
    b = broker("swap", funding_rate=0.0001)
    start = datetime(2024, 3, 3, 23, 30, tzinfo=UTC)
    day = [a_bar(symbol=BTC, timeframe="M15", time=start + timedelta(minutes=15 * i),
                 open=100.0, high=100.0, low=100.0, close=100.0) for i in range(99)]
    b.on_bar(day[0])
    b.submit(entry("dta-l1", BUY, 1.0))
    times = [f.fill.time.hour for bar in day[1:] for f in b.on_bar(bar) if f.kind == "funding"]
    assert times == [0, 8, 16, 0]


def test_swap_entry_stop_and_target_are_not_held_by_the_broker() -> None:
    """On a swap the exits are orders the engine places; the entry's attributes trigger
    nothing (``separate_protection``)."""
    b = broker("swap")
    b.on_bar(hour(0, open=100.0))
    filled(b, entry("dta-l1", BUY, 1.0, sl=95.0, tp=110.0), hour(1, open=100.0))
    assert b.separate_protection is True and isinstance(b, ProtectingBroker)
    assert b.on_bar(hour(2, open=100.0, high=120.0, low=80.0)) == []
    assert b.position(BTC).volume == pytest.approx(1.0)


def test_swap_legs_trigger_later_with_the_gap_and_stop_first_rules() -> None:
    """A stop the bar opens through fills at the open; when the stop and the target are
    both inside one bar the stop comes first. The fill is credited to the entry; the leg's
    own state is in ``lookup``."""
    b = broker("swap")
    order, _ = opened(b, "dta-l1")
    placed = b.place_protection(legs(order.intent, 1.0))
    assert [o.state for o in placed] == [OrderState.ACCEPTED] * 2
    assert sorted(o.client_order_id for o in b.protective_orders(BTC)) == sorted(
        o.client_order_id for o in placed)
    [stop] = b.on_bar(hour(2, open=94.0, high=111.0, low=90.0, close=100.0))
    assert (stop.kind, stop.fill.price, stop.fill.client_order_id) == ("stop_loss", 94.0,
                                                                      "dta-l1")
    assert stop.fill.fee == pytest.approx(94.0 * 0.0005)
    leg = b.lookup(protective_id("dta-l1", "stop_loss"))
    assert leg is not None and leg.state is OrderState.FILLED
    assert leg.filled_volume == pytest.approx(1.0) and leg.avg_fill_price == 94.0
    assert b.position(BTC).is_flat


def test_swap_leg_past_the_price_is_refused_as_would_trigger() -> None:
    """-2021: a sell stop at or above the last price would fire at once; the venue
    refuses it (the position must then be closed). On a swap each leg is an order of its
    own: the target is still accepted."""
    b = broker("swap")
    order, _ = opened(b, "dta-l1")
    stop, target = b.place_protection(legs(replace(order.intent, stop_loss=101.0), 1.0))
    assert stop.state is OrderState.REJECTED and "would trigger immediately" in stop.reason
    assert "-2021" in stop.reason
    assert target.state is OrderState.ACCEPTED


def test_swap_reduce_only_leg_never_opens_or_grows_a_position() -> None:
    """A leg for more than is held fills what is held; one that fires when flat trades
    nothing and expires; a stop left after its position closed stays working until
    cancelled (Binance does not cancel it)."""
    b = broker("swap")
    order, _ = opened(b, "dta-l1")
    b.place_protection(legs(order.intent, 2.0))
    [tp] = b.on_bar(hour(2, open=100.0, high=112.0, low=99.0, close=105.0))
    assert tp.kind == "take_profit" and tp.fill.volume == pytest.approx(1.0)
    assert b.position(BTC).is_flat
    stop_id = protective_id("dta-l1", "stop_loss")
    assert [o.client_order_id for o in b.protective_orders(BTC)] == [stop_id]
    assert b.on_bar(hour(3, open=96.0, high=97.0, low=90.0, close=92.0)) == []
    expired = b.lookup(stop_id)
    assert expired is not None and expired.state is OrderState.CANCELLED
    assert "expired" in expired.reason
    assert b.position(BTC).is_flat


def test_cancel_protection() -> None:
    b = broker("swap")
    order, _ = opened(b, "dta-l1")
    stop, target = b.place_protection(legs(order.intent, 1.0))
    [cancelled] = b.cancel_protection([target])
    assert cancelled.state is OrderState.CANCELLED
    assert [o.client_order_id for o in b.protective_orders(BTC)] == [stop.client_order_id]
    b.on_bar(hour(2, open=94.0))
    [after] = b.cancel_protection([stop])
    assert after.state is OrderState.FILLED  # it fired first
    assert b.on_bar(hour(3, open=120.0, high=130.0)) == []


def test_restore_recreates_working_legs_from_the_journal() -> None:
    """After a restart the journal's accepted leg rows are working legs again; a leg whose
    fill is journaled fired and is not."""
    live = broker("swap")
    order, [entry_fill] = opened(live, "dta-l1")
    placed = live.place_protection(legs(order.intent, 1.0))
    assert entry_fill.order is not None

    again = broker("swap")
    again.restore([entry_fill.order, *placed], [entry_fill.fill], ["entry"])
    assert len(again.protective_orders(BTC)) == 2
    assert again.position(BTC) == live.position(BTC)
    [stop] = again.on_bar(hour(2, open=94.0))
    assert stop.fill.fill_id == live.on_bar(hour(2, open=94.0))[0].fill.fill_id

    third = broker("swap")
    third.restore([entry_fill.order, *placed], [entry_fill.fill, stop.fill],
                  ["entry", "stop_loss"])
    ids = [o.client_order_id for o in third.protective_orders(BTC)]
    assert ids == [protective_id("dta-l1", "take_profit")] and third.position(BTC).is_flat


def test_restore_rebuilds_spot_fees_and_equity() -> None:
    live = broker("spot")
    live.on_bar(hour(0, open=100.0))
    fills = filled(live, entry("dta-b1", BUY, 1.0), hour(1, open=100.0))
    live.on_bar(hour(2, open=120.0))
    again = broker("spot")
    orders = [f.order for f in fills if f.order is not None]
    again.restore(orders, [f.fill for f in fills], [f.kind for f in fills])
    assert again.position(BTC) == live.position(BTC)
    assert again.realized_pnl == live.realized_pnl
    assert again.fees_paid == pytest.approx(live.fees_paid)


def test_restore_skips_a_funding_fill_of_no_volume() -> None:
    """A funding payment moves money, never the position, also when rebuilt."""
    b = PaperBroker()
    t = T0
    b.restore([], [Fill("dta-l1", "dta-l1:entry", BTC, BUY, t, 100.0, 1.0),
                   Fill("dta-l1", "dta-l1:funding:x", BTC, BUY, t, 100.0, 0.0, 0.01),
                   Fill("dta-l1", "dta-l1:close", BTC, SELL, t, 100.0, 1.0),
                   Fill("dta-l1", "dta-l1:funding:y", BTC, BUY, t, 100.0, 0.0, 0.01)],
              ["entry", "funding", "entry", "funding"])
    assert b.position(BTC).is_flat and b.fees_paid == pytest.approx(0.02)


# ====================================================================== MT5 models

EURUSD = "EURUSD"


def fx(i: int, *, open: float, high: float | None = None, low: float | None = None) -> Bar:
    return hour(i, open=open, high=high, low=low, symbol=EURUSD, timeframe="M15", minutes=15)


def fx_broker(venue: str) -> PaperBroker:
    return PaperBroker(contract_size=100_000.0, venue=PaperVenue.of(venue))  # type: ignore[arg-type]


def test_mt5_hedging_keeps_each_ticket_with_its_own_stop() -> None:
    """Two buys are two tickets: gross lots show, and each keeps its own SL, so a bar that
    reaches the first one's stop closes that ticket only. On netting the second deal's SL
    replaces the position's."""
    b = fx_broker("mt5-hedging")
    b.on_bar(fx(0, open=1.1000))
    filled(b, entry("dta-h1", BUY, 0.1, sl=1.0900, symbol=EURUSD), fx(1, open=1.1000))
    filled(b, entry("dta-h2", BUY, 0.1, sl=1.0800, symbol=EURUSD), fx(2, open=1.1000))
    pos = b.position(EURUSD)
    assert pos.volume == pytest.approx(0.2) and pos.gross_volume == pytest.approx(0.2)
    [stop] = b.on_bar(fx(3, open=1.0950, low=1.0850))
    assert (stop.kind, stop.fill.client_order_id) == ("stop_loss", "dta-h1")
    assert stop.fill.volume == pytest.approx(0.1)
    assert stop.realized_pnl == pytest.approx((1.0900 - 1.1000) * 0.1 * 100_000)
    left = b.position(EURUSD)
    assert left.volume == pytest.approx(0.1) and left.opened_by == "dta-h2"
    assert left.gross_volume is None  # one ticket left
    assert b.separate_protection is False

    n = fx_broker("mt5-netting")
    n.on_bar(fx(0, open=1.1000))
    filled(n, entry("dta-h1", BUY, 0.1, sl=1.0900, symbol=EURUSD), fx(1, open=1.1000))
    filled(n, entry("dta-h2", BUY, 0.1, sl=1.0800, symbol=EURUSD), fx(2, open=1.1000))
    assert n.position(EURUSD).gross_volume is None
    assert n.on_bar(fx(3, open=1.0950, low=1.0850)) == []


def test_mt5_hedging_closes_the_oldest_ticket_first_at_its_own_price() -> None:
    """An opposite order closes our tickets oldest first, each at its own open price (the
    adapter names them by ticket); netting realises against the average price."""
    h = fx_broker("mt5-hedging")
    n = fx_broker("mt5-netting")
    for b in (h, n):
        b.on_bar(fx(0, open=1.1000))
        filled(b, entry("dta-h1", BUY, 0.1, symbol=EURUSD), fx(1, open=1.1000))
        filled(b, entry("dta-h2", BUY, 0.1, symbol=EURUSD), fx(2, open=1.1200))
    [hs] = filled(h, entry("dta-h3", SELL, 0.15, symbol=EURUSD), fx(3, open=1.1300))
    [ns] = filled(n, entry("dta-h3", SELL, 0.15, symbol=EURUSD), fx(3, open=1.1300))
    assert hs.realized_pnl == pytest.approx(0.1 * 0.03 * 100_000 + 0.05 * 0.01 * 100_000)
    assert ns.realized_pnl == pytest.approx(0.15 * 0.02 * 100_000)
    pos = h.position(EURUSD)
    assert pos.volume == pytest.approx(0.05) and pos.avg_price == pytest.approx(1.1200)
    assert pos.opened_by == "dta-h2"


def test_mt5_hedging_never_holds_our_long_and_short_at_once() -> None:
    """The adapter closes before it opens the rest, so a reversal leaves one ticket."""
    b = fx_broker("mt5-hedging")
    b.on_bar(fx(0, open=1.1000))
    filled(b, entry("dta-h1", BUY, 0.1, symbol=EURUSD), fx(1, open=1.1000))
    filled(b, entry("dta-h2", SELL, 0.3, symbol=EURUSD), fx(2, open=1.1000))
    pos = b.position(EURUSD)
    assert pos.volume == pytest.approx(-0.2) and pos.gross_volume is None


def test_mt5_models_refuse_separate_protective_orders() -> None:
    b = fx_broker("mt5-netting")
    order = entry("dta-h1", BUY, 0.1, sl=1.09, tp=1.12, symbol=EURUSD)
    assert all(o.state is OrderState.REJECTED
               for o in b.place_protection(legs(order.intent, 0.1)))


# ====================================================================== every venue


@pytest.mark.parametrize(("venue", "symbol", "close", "words"), [
    ("mt5-netting", EURUSD, 1.1000, "invalid stops"),
    ("mt5-hedging", EURUSD, 1.1000, "invalid stops"),
    ("spot", BTC, 1.1000, "would trigger immediately"),
    ("swap", BTC, 1.1000, "would trigger immediately"),
])
def test_an_entry_whose_stop_or_target_is_past_the_market_is_refused(
        venue: str, symbol: str, close: float, words: str) -> None:
    """Paper never books an exit the venue would refuse to hold."""
    b = PaperBroker(venue=PaperVenue.of(venue))  # type: ignore[arg-type]
    b.on_bar(a_bar(symbol=symbol, time=T0, open=close, high=close, low=close, close=close))
    for bad in (entry("dta-1", BUY, 0.1, sl=1.1010, symbol=symbol),
                entry("dta-2", BUY, 0.1, tp=1.0990, symbol=symbol),
                entry("dta-3", SELL, 0.1, sl=1.0990, symbol=symbol)):
        refused = b.submit(bad)
        assert refused.state is OrderState.REJECTED and words in refused.reason
    ok = b.submit(entry("dta-4", BUY, 0.1, sl=1.0900, tp=1.1100, symbol=symbol))
    assert ok.state is OrderState.ACCEPTED


def test_the_default_venue_is_mt5_netting() -> None:
    b = PaperBroker()
    assert b.venue.kind == "mt5-netting" and b.separate_protection is False
    assert b.holds_shorts is True and b.venue.fee_rate == 0.0


def test_venue_defaults_and_bad_names() -> None:
    assert PaperVenue.of("spot").fee_rate == 0.001
    assert PaperVenue.of("swap").fee_rate == 0.0005
    assert PaperVenue.of("swap", fee_rate=0.0002).fee_rate == 0.0002
    with pytest.raises(ValueError, match="futures"):
        PaperVenue.of("futures")  # type: ignore[arg-type]


# ====================================================================== settings


def test_the_paper_section_names_its_venue() -> None:
    assert load_settings(None).paper.venue == "mt5-netting"
    swap = load_settings(None, paper={"venue": "swap", "funding_rate": -0.0002}).paper
    assert (swap.venue, swap.fee_rate, swap.funding_rate) == ("swap", None, -0.0002)
    with pytest.raises(ConfigError, match=r"paper\.venue"):
        load_settings(None, paper={"venue": "futures"})


def test_the_example_documents_every_paper_key() -> None:
    """Each key of ``[paper]`` is in the example, set or commented out."""
    lines = EXAMPLE.read_text().splitlines()
    block = lines[lines.index("[paper]") + 1:]
    block = block[:next(i for i, line in enumerate(block) if line.startswith("["))]
    keys = {m[1] for line in block if (m := re.match(r"^#? ?(\w+) = ", line))}
    assert keys == set(PaperSettings.model_fields)


def test_the_venue_enters_the_parameter_set_only_when_it_is_not_the_default() -> None:
    """A journal made before ``venue`` existed keeps its parameter version: the defaults
    leave the set's hash as it was; another venue is another version."""
    plain = load_settings(None).parameter_set()
    assert "venue" not in plain.values["paper"]
    netting = load_settings(None, paper={"venue": "mt5-netting", "funding_rate": 0.0001})
    assert netting.parameter_set().content_hash == plain.content_hash
    spot = load_settings(None, paper={"venue": "spot"}).parameter_set()
    assert spot.values["paper"]["venue"] == "spot" and spot.content_hash != plain.content_hash


def test_swap_funding_once_per_time_over_two_timeframes_and_across_a_gap() -> None:
    """One funding time is one payment, however many streams of the symbol see it; a gap
    in the bars does not skip one."""
    b = broker("swap", funding_rate=0.0001)
    b.on_bar(hour(0, open=100.0))  # 05:00
    filled(b, entry("dta-l1", BUY, 1.0), hour(1, open=100.0))  # 06:00
    m15 = [hour(i, open=100.0, timeframe="M15", minutes=15) for i in range(12, 16)]  # 08:00-
    paid = [f for bar in m15 for f in b.on_bar(bar)]
    paid += b.on_bar(hour(3, open=100.0))  # the H1 bar of 08:00, closed at 09:00
    assert [f.fill.time.hour for f in paid] == [8]
    paid = b.on_bar(hour(12, open=100.0))  # 17:00: the bars of 09:00-16:00 are missing
    assert [f.fill.time.hour for f in paid] == [16]
