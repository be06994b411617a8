"""A spot long's stop-loss and take-profit held by Binance as one sell OCO (the loopback
spot fake, through the real ``ccxt.binance``), written from Binance's "New Order list -
OCO", "Cancel Order list" and "Query Order list" documentation: both legs under our
deterministic ids, the stop a STOP_LOSS_LIMIT that a price drop triggers (the target
then expires) and a gap past its limit leaves unfilled, the target a LIMIT_MAKER whose
fill expires the stop, each execution credited to the entry as its exit, refusals as
rejected legs, and the legs found by id after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes.binance_fake import FakeBinance
from support.builders import a_bar
from test_ccxt_broker import intent, make_broker, submitting

from domain import Order, OrderSide, OrderState, OrderType
from domain.orders import protective_id, protective_intent
from executor.brokers.base import ProtectingBroker
from executor.brokers.ccxt_broker import CcxtBroker
from executor.brokers.ccxt_spot_protect import list_client_id

BTC = "BTC/USDT"
HELD = 0.00999  # 0.01 BTC bought at Binance's 0.1 % commission, paid in BTC


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance() as f:
        yield f


@pytest.fixture
def broker(fake: FakeBinance) -> CcxtBroker:
    return make_broker(fake)


def a_long(broker: CcxtBroker, n: int = 1, *, stop: float | None = 29_000.0,
           target: float | None = 31_000.0) -> Order:
    entry = broker.submit(submitting(replace(intent(n), stop_loss=stop, take_profit=target)))
    assert entry.state is OrderState.FILLED
    return entry


def legs_of(entry: Order, *kinds: str) -> list[Order]:
    """The legs the engine journals ``submitting`` and hands to ``place_protection``."""
    kinds = kinds or tuple(k for k, p in (("stop_loss", entry.intent.stop_loss),
                                          ("take_profit", entry.intent.take_profit))
                           if p is not None)
    return [Order(protective_intent(entry.intent, k, entry.filled_volume)).transition(
        OrderState.SUBMITTING) for k in kinds]


def protected(broker: CcxtBroker, **kw: float | None) -> tuple[Order, list[Order]]:
    entry = a_long(broker, **kw)  # type: ignore[arg-type]
    placed = broker.place_protection(legs_of(entry))
    assert [leg.state for leg in placed] == [OrderState.ACCEPTED] * len(placed), placed
    broker.on_bar(bar())  # the entry's fills: the book holds the long
    return entry, placed


def bar() -> object:
    """A bar that closed just now: live, every such bar polls the trade history."""
    return a_bar(symbol=BTC, timeframe="M1", time=datetime.now(UTC), open=30_000,
                 high=30_000, low=30_000, close=30_000)


def by_id(fake: FakeBinance, coid: str) -> dict[str, object]:
    [o] = fake.orders_by_client_id(coid)
    return o


def test_spot_is_a_protecting_broker(broker: CcxtBroker) -> None:
    assert isinstance(broker, ProtectingBroker) and broker.separate_protection


def test_the_long_is_in_the_position_with_the_entry_s_answer(broker: CcxtBroker) -> None:
    """The engine sizes the legs from the position right after the entry's answer: the
    FULL answer's fills (and the commission they paid in BTC) count at once, and the
    next poll reports them without counting them twice."""
    assert broker.positions() == {}  # the book is built, as start-up reconciliation does
    entry = a_long(broker)
    assert broker.position(BTC).volume == pytest.approx(HELD)
    fills = broker.on_bar(bar())
    assert [(f.fill.client_order_id, f.kind) for f in fills] == [
        (entry.client_order_id, "entry"), (entry.client_order_id, "fee")]
    assert broker.position(BTC).volume == pytest.approx(HELD)
    # the book itself, under the balance's cap: the fills counted once
    assert broker._book.current()[BTC].volume == pytest.approx(HELD)
    assert broker.on_bar(bar()) == []


def test_a_long_gets_one_sell_oco_with_both_ids(fake: FakeBinance,
                                                broker: CcxtBroker) -> None:
    entry = a_long(broker)
    assert "not attached" not in entry.reason  # the exits are orders of their own now
    stop, target = broker.place_protection(legs_of(entry))
    sl, tp = (protective_id(entry.client_order_id, k) for k in ("stop_loss", "take_profit"))
    assert (stop.client_order_id, target.client_order_id) == (sl, tp)
    assert stop.state is target.state is OrderState.ACCEPTED
    [lst] = fake.order_lists
    assert lst["listClientOrderId"] == list_client_id(sl) and len(lst["listClientOrderId"]) <= 36
    assert lst["listOrderStatus"] == "EXECUTING"
    below, above = by_id(fake, sl), by_id(fake, tp)
    assert (below["type"], below["side"], below["stopPrice"], below["price"]) == (
        "STOP_LOSS_LIMIT", "SELL", "29000.00000000", "28710.00000000")  # limit: stop x 0.99
    assert (above["type"], above["side"], above["price"]) == (
        "LIMIT_MAKER", "SELL", "31000.00000000")
    # the quantity the account holds after the buy's commission came out of the BTC
    assert below["origQty"] == above["origQty"] == "0.00999000"
    assert stop.broker_order_id == str(below["orderId"])
    assert ("POST", "/api/v3/orderList/oco") in fake.requests
    assert ("POST", "/api/v3/order/oco") not in fake.requests  # the deprecated endpoint


def test_the_stop_fires_on_a_drop_and_the_exit_is_the_entry_s_stop_loss(
        fake: FakeBinance, broker: CcxtBroker) -> None:
    entry, (stop, target) = protected(broker)
    fake.set_price("BTCUSDT", 28_900.0)  # through the stop, above its limit
    [exit_fill] = broker.on_bar(bar())
    assert (exit_fill.fill.client_order_id, exit_fill.kind) == (entry.client_order_id,
                                                                "stop_loss")
    assert exit_fill.fill.side is OrderSide.SELL
    assert exit_fill.fill.volume == pytest.approx(HELD)
    assert exit_fill.fill.price == pytest.approx(28_900.0)
    fired = broker.lookup(stop.client_order_id)
    assert fired is not None and fired.state is OrderState.FILLED
    assert fired.intent.order_type is OrderType.STOP
    expired = broker.lookup(target.client_order_id)
    assert expired is not None and expired.state is OrderState.CANCELLED
    assert "other leg of its OCO" in expired.reason
    assert broker.position(BTC).is_flat
    assert fake.order_lists[0]["listOrderStatus"] == "ALL_DONE"


def test_the_target_fills_and_the_stop_expires(fake: FakeBinance, broker: CcxtBroker) -> None:
    entry, (stop, target) = protected(broker)
    fake.set_price("BTCUSDT", 31_050.0)
    [exit_fill] = broker.on_bar(bar())
    assert (exit_fill.fill.client_order_id, exit_fill.kind) == (entry.client_order_id,
                                                                "take_profit")
    assert exit_fill.fill.price == pytest.approx(31_000.0)  # the maker's own price
    assert broker.lookup(target.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]
    assert broker.lookup(stop.client_order_id).state is OrderState.CANCELLED  # type: ignore[union-attr]
    assert broker.position(BTC).is_flat


def test_a_gap_past_the_stop_limit_leaves_the_long_open(fake: FakeBinance,
                                                        broker: CcxtBroker) -> None:
    """The inconvenient part of a stop-limit: triggered, it is a limit sell at 28,710; a
    price that gaps to 28,000 leaves it resting, and the long is still there."""
    entry, (stop, target) = protected(broker)
    fake.set_price("BTCUSDT", 28_000.0)
    assert broker.on_bar(bar()) == []
    working = broker.lookup(stop.client_order_id)
    assert working is not None and working.state is OrderState.ACCEPTED
    assert "not filled" in working.reason and "28710" in working.reason
    assert broker.lookup(target.client_order_id).state is OrderState.CANCELLED  # type: ignore[union-attr]
    assert broker.position(BTC).volume == pytest.approx(HELD)
    fake.set_price("BTCUSDT", 28_800.0)  # back above the limit: it trades there
    [exit_fill] = broker.on_bar(bar())
    assert exit_fill.kind == "stop_loss" and exit_fill.fill.price == pytest.approx(28_710.0)
    assert entry.client_order_id == exit_fill.fill.client_order_id


def test_cancel_takes_both_legs_and_frees_the_long(fake: FakeBinance,
                                                   broker: CcxtBroker) -> None:
    entry, placed = protected(broker)
    close = replace(intent(2, side=OrderSide.SELL), stop_loss=None)
    again = replace(intent(3, side=OrderSide.SELL), stop_loss=None)
    # While the OCO works it locks the BTC: a market sell is refused for the balance.
    refused = broker.submit(submitting(close))
    assert refused.state is OrderState.REJECTED and "insufficient balance" in refused.reason
    cancelled = broker.cancel_protection(placed)
    assert [leg.state for leg in cancelled] == [OrderState.CANCELLED] * 2
    assert fake.requests.count(("DELETE", "/api/v3/orderList")) == 1  # one list, both legs
    assert fake.order_lists[0]["listOrderStatus"] == "ALL_DONE"
    assert broker.protective_orders(BTC) == []
    sold = broker.submit(submitting(again))
    assert sold.state is OrderState.FILLED and sold.filled_volume == pytest.approx(HELD)
    del entry


def test_cancelling_a_leg_that_fired_returns_it_filled(fake: FakeBinance,
                                                       broker: CcxtBroker) -> None:
    _, placed = protected(broker)
    fake.set_price("BTCUSDT", 28_900.0)
    stop, target = broker.cancel_protection(placed)
    assert (stop.state, target.state) == (OrderState.FILLED, OrderState.CANCELLED)
    assert stop.filled_volume == pytest.approx(HELD)
    assert ("DELETE", "/api/v3/orderList") not in fake.requests  # nothing left to cancel


@pytest.mark.parametrize(("stop", "target"), [(30_100.0, 31_000.0), (29_000.0, 29_900.0)])
def test_an_oco_the_price_already_passed_is_a_rejected_leg(
        fake: FakeBinance, broker: CcxtBroker, stop: float, target: float) -> None:
    """Binance: on a sell, LIMIT_MAKER price > last price > stop price, else -2010 "The
    relationship of the prices for the orders is not correct.": the long must be closed."""
    entry = a_long(broker, stop=stop, target=target)
    legs = broker.place_protection(legs_of(entry))
    assert [leg.state for leg in legs] == [OrderState.REJECTED] * 2
    assert all("relationship of the prices" in leg.reason for leg in legs)
    assert fake.order_lists == [] and len(fake.orders) == 1  # the entry only


def test_a_lone_stop_is_a_stop_limit_and_a_lone_target_a_limit_maker(
        fake: FakeBinance, broker: CcxtBroker) -> None:
    entry = a_long(broker, target=None)
    [stop] = broker.place_protection(legs_of(entry))
    o = by_id(fake, stop.client_order_id)
    assert stop.state is OrderState.ACCEPTED and o["orderListId"] == -1
    assert (o["type"], o["stopPrice"], o["price"]) == (
        "STOP_LOSS_LIMIT", "29000.00000000", "28710.00000000")
    broker.cancel_protection([stop])
    other = a_long(broker, 2, stop=None, target=31_000.0)
    [target] = broker.place_protection(legs_of(other))
    assert target.state is OrderState.ACCEPTED
    assert by_id(fake, target.client_order_id)["type"] == "LIMIT_MAKER"
    [cancelled] = broker.cancel_protection([target])
    assert cancelled.state is OrderState.CANCELLED
    assert fake.requests.count(("DELETE", "/api/v3/order")) == 2  # no list to cancel


def test_a_lone_stop_already_passed_is_rejected(fake: FakeBinance, broker: CcxtBroker) -> None:
    entry = a_long(broker, stop=30_500.0, target=None)
    [stop] = broker.place_protection(legs_of(entry))
    assert stop.state is OrderState.REJECTED and "would trigger immediately" in stop.reason
    entry = a_long(broker, 2, stop=None, target=29_500.0)
    [target] = broker.place_protection(legs_of(entry))
    assert target.state is OrderState.REJECTED and "immediately match" in target.reason


def test_placing_again_never_makes_a_second_oco(fake: FakeBinance, broker: CcxtBroker) -> None:
    """A re-send under the same ids (after a crash) finds the OCO: the BTC it locks leaves
    nothing free to sell, so the legs are looked up by id and adopted, not rejected."""
    entry, placed = protected(broker)
    again = broker.place_protection(legs_of(entry))
    assert [(o.state, o.broker_order_id) for o in again] == [
        (leg.state, leg.broker_order_id) for leg in placed]
    assert len(fake.order_lists) == 1


def test_a_duplicate_id_is_unknown_then_found(fake: FakeBinance, broker: CcxtBroker) -> None:
    """Binance refuses an id an open order has (-2010 "Duplicate order sent."): the legs
    are ``unknown`` (ours exist), found by lookup, never two OCOs."""
    entry, placed = protected(broker)
    fake.balances["BTC"] += 1.0  # free coins: this time the OCO itself goes out
    again = broker.place_protection(legs_of(entry))
    assert [leg.state for leg in again] == [OrderState.UNKNOWN] * 2
    assert all("duplicate" in leg.reason for leg in again)
    found = [broker.lookup(leg.client_order_id) for leg in again]
    assert [(o.state, o.broker_order_id) for o in found if o] == [
        (leg.state, leg.broker_order_id) for leg in placed]
    assert len(fake.order_lists) == 1


def test_an_oco_whose_answer_is_lost_is_unknown_then_found(fake: FakeBinance,
                                                           broker: CcxtBroker) -> None:
    entry = a_long(broker)
    fake.script("POST", "/api/v3/orderList/oco", ("accept_then_drop",))
    legs = broker.place_protection(legs_of(entry))
    assert [leg.state for leg in legs] == [OrderState.UNKNOWN] * 2
    assert [broker.lookup(leg.client_order_id).state for leg in legs] == [  # type: ignore[union-attr]
        OrderState.ACCEPTED] * 2
    assert fake.requests.count(("POST", "/api/v3/orderList/oco")) == 1  # never re-sent


def test_legs_of_a_short_never_arise_on_spot(fake: FakeBinance, broker: CcxtBroker) -> None:
    entry = a_long(broker)
    short_legs = [replace(leg, intent=replace(leg.intent, side=OrderSide.BUY))
                  for leg in legs_of(entry)]
    legs = broker.place_protection(short_legs)
    assert [leg.state for leg in legs] == [OrderState.REJECTED] * 2
    assert "no shorts" in legs[0].reason and fake.order_lists == []


def test_after_a_restart_the_legs_are_found_by_id(fake: FakeBinance,
                                                  broker: CcxtBroker) -> None:
    entry, (stop, target) = protected(broker)
    fresh = make_broker(fake)  # a new process; the journal gave it nothing yet
    found = fresh.lookup(stop.client_order_id)
    assert found is not None and found.state is OrderState.ACCEPTED
    assert found.intent.order_type is OrderType.STOP and found.intent.price == 29_000.0
    working = fresh.protective_orders(BTC)
    assert sorted((o.client_order_id, o.ours, o.price) for o in working) == sorted(
        [(stop.client_order_id, True, 29_000.0), (target.client_order_id, True, 31_000.0)])
    assert fresh.open_orders() == []  # legs are listed as protective orders only
    fake.set_price("BTCUSDT", 28_900.0)  # the stop fires while the daemon is down
    restarted = make_broker(fake)  # trades name exchange orders: their ids from allOrders
    exits = [f for f in restarted.recent_fills(datetime.now(UTC) - timedelta(hours=1))
             if f.kind == "stop_loss"]
    assert [(f.fill.client_order_id, f.fill.volume) for f in exits] == [
        (entry.client_order_id, pytest.approx(HELD))]
    assert restarted.lookup(target.client_order_id).state is OrderState.CANCELLED  # type: ignore[union-attr]


def test_a_foreign_stop_is_listed_as_not_ours(fake: FakeBinance, broker: CcxtBroker) -> None:
    protected(broker)
    fake.balances["BTC"] += 0.01  # the desk's own coins, and its own stop on them
    broker.exchange.create_order(BTC, "limit", "sell", 0.01, 27_000.0,
                                 {"stopLossPrice": 27_500.0, "clientOrderId": "desk-stop-1"})
    working = {o.client_order_id: o.ours for o in broker.protective_orders(BTC)}
    assert working["desk-stop-1"] is False and sum(working.values()) == 2
