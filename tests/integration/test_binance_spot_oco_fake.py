"""The spot fake's order lists and stop orders as Binance documents them ("New Order list -
OCO", "Cancel Order list", "Query Order list", "Query Open Order lists", "Error codes"),
driven through the real ``ccxt.binance`` (its implicit ``privatePostOrderListOco`` & co.),
so the broker's tests stand on a venue that refuses and expires what Binance does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fakes.binance_fake import FakeBinance
from test_ccxt_broker import settings

from executor.brokers.ccxt_broker import exchange_code, make_exchange
from executor.brokers.ccxt_errors import exchange_message


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(balances={"USDT": 1_000_000.0, "BTC": 0.01}) as f:
        yield f


@pytest.fixture
def ex(fake: FakeBinance) -> Any:
    e = make_exchange(settings(), api_key=fake.api_key, secret=fake.secret,
                      api_urls=fake.api_urls())
    e.load_markets()
    return e


def oco(**over: str) -> dict[str, str]:
    """A sell OCO around the last price 30,000: target 31,000 above, stop 29,000 below."""
    q = {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01",
         "listClientOrderId": "L1", "aboveType": "LIMIT_MAKER", "abovePrice": "31000",
         "aboveClientOrderId": "tp1", "belowType": "STOP_LOSS_LIMIT",
         "belowStopPrice": "29000", "belowPrice": "28710", "belowTimeInForce": "GTC",
         "belowClientOrderId": "sl1", "newOrderRespType": "RESULT"}
    q.update(over)
    return {k: v for k, v in q.items() if v}


def refused(call: Any, *args: Any) -> tuple[int | None, str]:
    """Binance's code and message. ccxt's general map knows some messages exactly
    ("Order would trigger immediately.", "Account has insufficient balance ...") and
    raises ``"binance " + msg`` without the code: then the code is None."""
    import ccxt

    with pytest.raises(ccxt.BaseError) as info:
        call(*args)
    code = exchange_code(info.value)
    if code is None:
        return None, str(info.value).removeprefix("binance ")
    return code, exchange_message(info.value)


def test_an_oco_is_two_orders_and_a_list(fake: FakeBinance, ex: Any) -> None:
    answer = ex.privatePostOrderListOco(oco())
    assert (answer["contingencyType"], answer["listStatusType"], answer["listOrderStatus"],
            answer["listClientOrderId"]) == ("OCO", "EXEC_STARTED", "EXECUTING", "L1")
    assert [o["clientOrderId"] for o in answer["orders"]] == ["sl1", "tp1"]  # below first
    below, above = answer["orderReports"]
    assert (below["type"], below["stopPrice"], below["status"], below["workingTime"]) == (
        "STOP_LOSS_LIMIT", "29000.00000000", "NEW", -1)
    assert (above["type"], above["price"], above["orderListId"]) == (
        "LIMIT_MAKER", "31000.00000000", answer["orderListId"])
    listed = ex.privateGetOrderList({"origClientOrderId": "L1"})
    assert listed["orders"] == answer["orders"] and "orderReports" not in listed
    [open_list] = ex.privateGetOpenOrderList()
    assert open_list["orderListId"] == answer["orderListId"]
    leg = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "sl1"})
    assert leg["status"] == "open" and leg["info"]["isWorking"] is False
    assert leg["triggerPrice"] == 29_000.0
    balance = ex.fetch_balance()  # one quantity for both legs, locked once
    assert (balance["BTC"]["free"], balance["BTC"]["used"]) == (0.0, 0.01)


@pytest.mark.parametrize(("over", "code", "words"), [
    ({"belowStopPrice": "30100", "belowPrice": "30000"}, -2010,
     "The relationship of the prices for the orders is not correct."),
    ({"abovePrice": "29900"}, -2010,
     "The relationship of the prices for the orders is not correct."),
    ({"aboveType": "STOP_LOSS_LIMIT", "aboveStopPrice": "31000",
      "aboveTimeInForce": "GTC", "belowType": "TAKE_PROFIT_LIMIT"}, -1197,
     "A stop loss order in a sell OCO must be below."),
    ({"belowType": "STOP_LOSS", "belowPrice": ""}, -2010,
     "Stop loss orders are not supported for this symbol."),
    ({"belowTimeInForce": ""}, -1102, "Mandatory parameter 'belowTimeInForce'"),
    ({"quantity": "0.000105"}, -1013, "Filter failure: LOT_SIZE"),
    ({"quantity": "0.0001"}, -1013, "Filter failure: NOTIONAL"),
    ({"belowPrice": "28710.005"}, -1013, "Filter failure: PRICE_FILTER"),
    ({"quantity": "0.02"}, -2010, "Account has insufficient balance for requested action."),
])
def test_the_documented_refusals(fake: FakeBinance, ex: Any, over: dict[str, str], code: int,
                                 words: str) -> None:
    got, message = refused(ex.privatePostOrderListOco, oco(**over))
    assert got in (code, None) and message.startswith(words), (got, message)
    assert fake.order_lists == [] and fake.orders == []


def test_ids_unique_among_open_lists_and_orders(fake: FakeBinance, ex: Any) -> None:
    fake.balances["BTC"] = 1.0
    ex.privatePostOrderListOco(oco())
    assert refused(ex.privatePostOrderListOco, oco(aboveClientOrderId="tp2",
                                                   belowClientOrderId="sl2")) == (
        -2010, "Duplicate order sent.")
    assert refused(ex.privatePostOrderListOco, oco(listClientOrderId="L2")) == (
        -2010, "Duplicate order sent.")
    ex.privateDeleteOrderList({"symbol": "BTCUSDT", "listClientOrderId": "L1"})
    ex.privatePostOrderListOco(oco())  # a finished list's ids may be used again
    assert len(fake.order_lists) == 2


def test_a_drop_triggers_the_stop_and_expires_the_limit(fake: FakeBinance, ex: Any) -> None:
    ex.privatePostOrderListOco(oco())
    fake.set_price("BTCUSDT", 28_950.0)
    sl = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "sl1"})
    tp = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "tp1"})
    assert (sl["status"], sl["filled"], sl["average"]) == ("closed", 0.01, 28_950.0)
    assert tp["status"] == "expired"
    assert ex.privateGetOrderList({"origClientOrderId": "L1"})["listOrderStatus"] == "ALL_DONE"
    assert ex.privateGetOpenOrderList() == []
    [trade] = ex.fetch_my_trades("BTC/USDT")
    assert (trade["order"], trade["side"], trade["fee"]["currency"]) == (
        sl["id"], "sell", "USDT")  # a sell pays its commission in the quote asset
    assert fake.balances["BTC"] == pytest.approx(0.0)


def test_a_gap_below_the_limit_leaves_the_stop_working_unfilled(fake: FakeBinance,
                                                                ex: Any) -> None:
    ex.privatePostOrderListOco(oco())
    fake.set_price("BTCUSDT", 28_000.0)
    sl = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "sl1"})
    assert (sl["status"], sl["filled"], sl["info"]["isWorking"]) == ("open", 0.0, True)
    assert sl["info"]["workingTime"] > 0
    assert ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "tp1"})["status"] == "expired"
    fake.set_price("BTCUSDT", 28_710.0)  # back to the limit: it trades there, as maker
    sl = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "sl1"})
    assert (sl["status"], sl["average"]) == ("closed", 28_710.0)


def test_the_limit_leg_fills_on_a_rise_and_the_stop_expires(fake: FakeBinance,
                                                            ex: Any) -> None:
    ex.privatePostOrderListOco(oco())
    fake.set_price("BTCUSDT", 30_999.0)
    assert ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "tp1"})["status"] == "open"
    fake.set_price("BTCUSDT", 31_200.0)
    tp = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "tp1"})
    assert (tp["status"], tp["average"]) == ("closed", 31_000.0)
    assert ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "sl1"})["status"] == "expired"


def test_cancelling_the_list_names_legs_by_their_original_ids(fake: FakeBinance,
                                                              ex: Any) -> None:
    ex.privatePostOrderListOco(oco())
    answer = ex.privateDeleteOrderList({"symbol": "BTCUSDT", "listClientOrderId": "L1",
                                        "newClientOrderId": "cx1"})
    assert answer["listOrderStatus"] == "ALL_DONE"
    assert [(r["origClientOrderId"], r["clientOrderId"], r["status"])
            for r in answer["orderReports"]] == [("sl1", "cx1", "CANCELED"),
                                                 ("tp1", "cx1", "CANCELED")]
    assert refused(ex.privateDeleteOrderList, {"symbol": "BTCUSDT",
                                               "listClientOrderId": "L1"})[0] == -2011
    assert refused(ex.privateGetOrderList, {"origClientOrderId": "nope"})[0] == -2011
    assert ex.fetch_balance()["BTC"]["free"] == 0.01


def test_cancelling_one_leg_cancels_the_list(fake: FakeBinance, ex: Any) -> None:
    ex.privatePostOrderListOco(oco())
    ex.cancel_order(None, "BTC/USDT", {"origClientOrderId": "tp1"})
    assert ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "sl1"})["status"] == (
        "canceled")
    assert fake.order_lists[0]["listOrderStatus"] == "ALL_DONE"


def test_a_lone_stop_limit_and_limit_maker(fake: FakeBinance, ex: Any) -> None:
    """ccxt sends ``stopLossPrice`` on a spot limit as STOP_LOSS_LIMIT and ``postOnly`` as
    LIMIT_MAKER; one already past is refused as Binance's -2010 messages say."""
    placed = ex.create_order("BTC/USDT", "limit", "sell", 0.005, 28_710.0,
                             {"stopLossPrice": 29_000.0, "clientOrderId": "s1"})
    assert placed["info"]["type"] == "STOP_LOSS_LIMIT" and placed["status"] == "open"
    maker = ex.create_order("BTC/USDT", "limit", "sell", 0.005, 31_000.0,
                            {"postOnly": True, "clientOrderId": "m1"})
    assert maker["info"]["type"] == "LIMIT_MAKER"
    fake.balances["BTC"] += 0.01
    assert refused(ex.create_order, "BTC/USDT", "limit", "sell", 0.005, 30_000.0,
                   {"stopLossPrice": 30_500.0})[1] == "Order would trigger immediately."
    assert refused(ex.create_order, "BTC/USDT", "limit", "sell", 0.005, 29_900.0,
                   {"postOnly": True})[1] == "Order would immediately match and take."
    assert refused(ex.create_order, "BTC/USDT", "market", "sell", 0.011, None)[1] == (
        "Account has insufficient balance for requested action.")  # 0.01 of it locked
