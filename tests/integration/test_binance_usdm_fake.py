"""The loopback USD-M fake driven by the real ``ccxt.binanceusdm`` (not by our adapter):
each endpoint's shape as ccxt reads it, each documented error code, and a conditional
order that fires when the fake's price crosses it.

What is asserted is what Binance documents (the citations are in the fake's modules):
the endpoint ccxt 4.5.90 calls for each unified method, the fields it reads back, the
account arithmetic (netting, realised PnL, USDT commission, funding, liquidation price)
and the error codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest
from fakes.binance_usdm import FakeBinanceUsdm
from fakes.binance_usdm.market import BRACKETS

from executor.brokers.ccxt_errors import exchange_code

BTC = "BTC/USDT:USDT"


def client(fake: FakeBinanceUsdm, secret: str = "fake-secret") -> Any:
    ex = ccxt.binanceusdm({"apiKey": "fake-key", "secret": secret, "enableRateLimit": False,
                           "timeout": 2000,
                           "options": {"fetchCurrencies": False,
                                       "fetchMarkets": {"types": ["linear"]},
                                       "adjustForTimeDifference": False}})
    ex.urls["api"] = {**ex.urls["api"], **fake.api_urls()}
    return ex


@pytest.fixture
def fake() -> Iterator[FakeBinanceUsdm]:
    with FakeBinanceUsdm() as f:
        yield f


@pytest.fixture
def ex(fake: FakeBinanceUsdm) -> Any:
    e = client(fake)
    e.load_markets()
    return e


def code_of(call: Any, *args: Any, **kwargs: Any) -> int | None:
    with pytest.raises(ccxt.BaseError) as info:
        call(*args, **kwargs)
    return exchange_code(info.value)


def last_body(fake: FakeBinanceUsdm, ex: Any) -> dict[str, str]:
    """The parameters of ccxt's last request (body for POST, query otherwise)."""
    body = ex.last_request_body or ex.last_request_url.partition("?")[2]
    return dict(p.split("=", 1) for p in body.split("&") if "=" in p)


# ---------------------------------------------------------------------- market data


def test_markets_from_exchange_info_filters(fake: FakeBinanceUsdm, ex: Any) -> None:
    m = ex.market(BTC)
    assert (m["swap"], m["linear"], m["settle"], m["id"]) == (True, True, "USDT", "BTCUSDT")
    assert m["precision"]["amount"] == 0.001 and m["precision"]["price"] == 0.1
    assert m["limits"]["cost"]["min"] == 100.0  # MIN_NOTIONAL's "notional"
    assert m["limits"]["market"]["max"] == 120.0  # MARKET_LOT_SIZE, below LOT_SIZE's 1000
    assert fake.requests[0] == ("GET", "/fapi/v1/exchangeInfo")


def test_klines_last_one_forming_and_ticker_and_mark(fake: FakeBinanceUsdm, ex: Any) -> None:
    rows = ex.fetch_ohlcv(BTC, "15m", limit=4)
    assert len(rows) == 4 and rows[-1][0] + 15 * 60_000 > fake.now_ms()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert ex.fetch_ticker(BTC)["last"] == 30_000.0
    fake.set_price("BTCUSDT", 30_000.0, mark=30_010.0)
    rate = ex.fetch_funding_rate(BTC)
    assert (rate["markPrice"], rate["fundingRate"]) == (30_010.0, 0.0001)
    assert rate["fundingTimestamp"] % (8 * 3_600_000) == 0
    assert ("GET", "/fapi/v1/premiumIndex") in fake.requests


# ---------------------------------------------------------------------- account set-up


def test_position_mode_read_and_set(fake: FakeBinanceUsdm, ex: Any) -> None:
    assert ex.fetch_position_mode(BTC)["hedged"] is False
    assert code_of(ex.set_position_mode, False) == -4059  # "No need to change position side."
    ex.set_position_mode(True)
    assert ex.fetch_position_mode(BTC)["hedged"] is True
    # Hedge mode: a one-way order (no positionSide) is refused.
    assert code_of(ex.create_order, BTC, "market", "buy", 0.01) == -4061


def test_margin_mode_and_leverage_set_and_read_back(fake: FakeBinanceUsdm, ex: Any) -> None:
    assert ex.fetch_margin_mode(BTC)["marginMode"] == "cross"
    ex.set_margin_mode("isolated", BTC)
    with pytest.raises(ccxt.MarginModeAlreadySet) as info:  # -4046, matched by its message
        ex.set_margin_mode("isolated", BTC)
    assert exchange_code(info.value) == -4046
    assert ex.set_leverage(7, BTC)["leverage"] == 7
    lev = ex.fetch_leverage(BTC)
    assert (lev["marginMode"], lev["longLeverage"], lev["shortLeverage"]) == ("isolated", 7, 7)
    assert code_of(ex.fapiPrivatePostLeverage, {"symbol": "BTCUSDT", "leverage": 126}) == -4028
    ex.create_order(BTC, "market", "buy", 0.01)
    assert code_of(ex.set_margin_mode, "cross", BTC) == -4048  # not with a position
    assert ("POST", "/fapi/v1/marginType") in fake.requests


# ---------------------------------------------------------------------- orders, positions


def test_market_order_one_way_with_our_client_id(fake: FakeBinanceUsdm, ex: Any) -> None:
    o = ex.create_order(BTC, "market", "sell", 0.01, None, {"clientOrderId": "entry-1"})
    sent = last_body(fake, ex)
    assert (sent["newClientOrderId"], sent["newOrderRespType"], sent["type"]) == (
        "entry-1", "RESULT", "MARKET")
    assert (o["status"], o["filled"], o["average"], o["clientOrderId"]) == (
        "closed", 0.01, 30_000.0, "entry-1")
    assert o["info"]["positionSide"] == "BOTH"
    again = ex.fetch_order(None, BTC, {"clientOrderId": "entry-1"})
    assert (again["id"], again["status"]) == (o["id"], "closed")


def test_short_position_shape_and_liquidation_price(fake: FakeBinanceUsdm, ex: Any) -> None:
    ex.set_leverage(10, BTC)
    ex.create_order(BTC, "market", "sell", 0.01)
    [p] = ex.fetch_positions([BTC])
    assert (p["side"], p["contracts"], p["entryPrice"], p["marginMode"]) == (
        "short", 0.01, 30_000.0, "cross")
    # The FAQ's formula for one cross position: WB = wallet after the commission.
    wb = 10_000.0 - 0.01 * 30_000.0 * 0.0005
    _, _, _, mmr, cum = BRACKETS[0]
    expected = (wb + cum + 0.01 * 30_000.0) / (0.01 * mmr + 0.01)
    assert p["liquidationPrice"] == pytest.approx(expected)
    assert ("GET", "/fapi/v3/positionRisk") in fake.requests


def test_isolated_liquidation_price_uses_the_isolated_wallet(fake: FakeBinanceUsdm,
                                                             ex: Any) -> None:
    ex.set_margin_mode("isolated", BTC)
    ex.set_leverage(10, BTC)
    ex.create_order(BTC, "market", "buy", 0.01)
    [p] = ex.fetch_positions([BTC])
    margin = 0.01 * 30_000.0 / 10
    mmr = BRACKETS[0][3]
    assert p["marginMode"] == "isolated"
    assert p["liquidationPrice"] == pytest.approx((margin - 0.01 * 30_000.0) / (0.01 * mmr - 0.01))


def test_reduce_only_close_realises_pnl_and_charges_usdt(fake: FakeBinanceUsdm,
                                                         ex: Any) -> None:
    ex.create_order(BTC, "market", "sell", 0.01)
    fake.set_price("BTCUSDT", 29_000.0)
    # Larger than the position: cut to it, never flipping to a long.
    close = ex.create_order(BTC, "market", "buy", 0.02, None, {"reduceOnly": True})
    assert last_body(fake, ex)["reduceOnly"] == "true"
    assert (close["filled"], close["reduceOnly"]) == (0.01, True)
    assert ex.fetch_positions([BTC]) == []
    trades = ex.fetch_my_trades(BTC)
    assert [t["fee"]["currency"] for t in trades] == ["USDT", "USDT"]
    assert trades[1]["fee"]["cost"] == pytest.approx(0.01 * 29_000.0 * 0.0005)
    assert trades[1]["info"]["realizedPnl"] == "10.00000000"
    kinds = [r["incomeType"] for r in ex.fapiPrivateGetIncome({"symbol": "BTCUSDT"})]
    assert kinds == ["COMMISSION", "REALIZED_PNL", "COMMISSION"]
    # Nothing left to reduce: -2022.
    assert code_of(ex.create_order, BTC, "market", "buy", 0.01, None,
                   {"reduceOnly": True}) == -2022


def test_resting_limit_query_cancel_and_unknown_ids(fake: FakeBinanceUsdm, ex: Any) -> None:
    o = ex.create_order(BTC, "limit", "buy", 0.01, 29_000.0, {"clientOrderId": "lim-1"})
    assert o["status"] == "open"
    assert [x["clientOrderId"] for x in ex.fetch_open_orders(BTC)] == ["lim-1"]
    assert ex.cancel_order(o["id"], BTC)["status"] == "canceled"
    assert code_of(ex.cancel_order, o["id"], BTC) == -2011  # "Unknown order sent."
    assert code_of(ex.fetch_order, None, BTC, {"clientOrderId": "nope"}) == -2013
    ex.create_order(BTC, "limit", "buy", 0.01, 29_000.0, {"clientOrderId": "lim-2"})
    assert code_of(ex.create_order, BTC, "limit", "buy", 0.01, 29_000.0,
                   {"clientOrderId": "lim-2"}) == -4116  # duplicate id of an open order


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("params", "code"), [
    ({"type": "MARKET", "side": "BUY", "quantity": "100"}, -2019),  # margin: 3M at 20x
    ({"type": "MARKET", "side": "BUY", "quantity": "0.003"}, -4164),  # 90 < 100 notional
    ({"type": "MARKET", "side": "BUY", "quantity": "0.0015"}, -1111),  # off the step
    ({"type": "MARKET", "side": "BUY", "quantity": "121"}, -4005),  # MARKET_LOT_SIZE
    ({"type": "LIMIT", "side": "BUY", "quantity": "0.01", "price": "29000.05",
      "timeInForce": "GTC"}, -4014),  # off the tick
    ({"type": "STOP_MARKET", "side": "SELL", "quantity": "0.01", "stopPrice": "29000"},
     -4120),  # conditional types left this endpoint on 2025-12-09
    ({"type": "MARKET", "side": "BUY", "quantity": "0.01", "positionSide": "LONG"}, -4061),
])
def test_order_refusals_by_documented_code(fake: FakeBinanceUsdm, ex: Any,
                                           params: dict[str, str], code: int) -> None:
    assert code_of(ex.fapiPrivatePostOrder, {"symbol": "BTCUSDT", **params}) == code
    assert fake.orders == []


def test_signed_request_refusals_and_rate_limits(fake: FakeBinanceUsdm, ex: Any) -> None:
    assert code_of(client(fake, secret="wrong").fetch_positions, [BTC]) == -1022
    fake.script("POST", "/fapi/v1/order", ("timestamp",))
    assert code_of(ex.create_order, BTC, "market", "buy", 0.01) == -1021
    fake.time_offset_ms = 60_000  # the client's clock is a minute behind
    assert code_of(ex.fetch_positions, [BTC]) == -1021
    fake.time_offset_ms = 0
    for status in (429, 418):
        fake.script("GET", "/fapi/v3/positionRisk",
                    ("reject", -1003, "Too many requests.", status))
        with pytest.raises(ccxt.DDoSProtection):
            ex.fetch_positions([BTC])
        assert ex.last_response_headers["Retry-After"] == "1"
    assert fake.orders == []


# ---------------------------------------------------------------------- conditional orders


def test_stop_and_target_go_to_the_algo_endpoint(fake: FakeBinanceUsdm, ex: Any) -> None:
    ex.create_order(BTC, "market", "sell", 0.01)
    sl = ex.create_order(BTC, "market", "buy", 0.01, None,
                         {"stopLossPrice": 31_000.0, "reduceOnly": True,
                          "clientOrderId": "sl-1"})
    sent = last_body(fake, ex)
    assert fake.requests[-1] == ("POST", "/fapi/v1/algoOrder")
    assert (sent["algoType"], sent["type"], sent["clientAlgoId"], sent["triggerPrice"],
            sent["reduceOnly"]) == ("CONDITIONAL", "STOP_MARKET", "sl-1", "31000", "true")
    assert "newClientOrderId" not in sent
    assert (sl["clientOrderId"], sl["status"], sl["triggerPrice"], sl["reduceOnly"]) == (
        "sl-1", "open", 31_000.0, True)
    ex.create_order(BTC, "market", "buy", 0.01, None,
                    {"takeProfitPrice": 29_000.0, "reduceOnly": True, "clientOrderId": "tp-1"})
    assert last_body(fake, ex)["type"] == "TAKE_PROFIT_MARKET"
    # Reachable only with {"trigger": True}; the regular endpoints do not list them.
    assert ex.fetch_open_orders(BTC) == []
    listed = ex.fetch_open_orders(BTC, None, None, {"trigger": True})
    assert sorted(o["clientOrderId"] for o in listed) == ["sl-1", "tp-1"]
    found = ex.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "tp-1"})
    assert (found["takeProfitPrice"], found["status"]) == (29_000.0, "open")
    assert code_of(ex.fetch_order, None, BTC, {"clientOrderId": "tp-1"}) == -2013
    ex.cancel_order(None, BTC, {"trigger": True, "clientOrderId": "tp-1"})
    assert fake.algo_by_client_id("tp-1")[0]["algoStatus"] == "CANCELED"
    assert code_of(ex.cancel_order, None, BTC, {"trigger": True, "clientOrderId": "tp-1"}) == (
        -2011)


@pytest.mark.parametrize(("side", "params", "code"), [
    ("buy", {"stopLossPrice": 29_000.0}, -2021),  # a short's stop below the price
    ("sell", {"takeProfitPrice": 29_000.0}, -2021),  # a long's target below the price
    ("buy", {"stopLossPrice": 31_000.05}, -4014),
    ("buy", {"stopLossPrice": 31_000.0, "closePosition": True}, -1106),  # with quantity
    ("sell", {"stopLossPrice": 20_000.0, "quantity": "0.003"}, -4164),  # not reduce-only
])
def test_conditional_refusals(fake: FakeBinanceUsdm, ex: Any, side: str,
                              params: dict[str, Any], code: int) -> None:
    raw = {"symbol": "BTCUSDT", "side": side.upper(), "algoType": "CONDITIONAL",
           "type": "STOP_MARKET" if "stopLossPrice" in params else "TAKE_PROFIT_MARKET",
           "quantity": params.get("quantity", "0.01"),
           "triggerPrice": str(params.get("stopLossPrice", params.get("takeProfitPrice")))}
    if params.get("closePosition"):
        raw["closePosition"] = "true"
    assert code_of(ex.fapiPrivatePostAlgoOrder, raw) == code
    assert fake.algo_orders == []


def test_a_short_s_stop_fires_and_the_position_goes_flat(fake: FakeBinanceUsdm,
                                                         ex: Any) -> None:
    ex.create_order(BTC, "market", "sell", 0.01)
    ex.create_order(BTC, "market", "buy", 0.01, None,
                    {"stopLossPrice": 31_000.0, "reduceOnly": True, "clientOrderId": "sl-1"})
    fake.set_price("BTCUSDT", 30_999.9)
    assert ex.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "sl-1"})[
        "status"] == "open"
    fake.set_price("BTCUSDT", 31_050.0)
    algo = ex.fetch_order(None, BTC, {"trigger": True, "clientOrderId": "sl-1"})
    assert (algo["status"], algo["info"]["algoStatus"]) == ("closed", "FINISHED")
    actual = ex.fetch_order(algo["info"]["actualOrderId"], BTC)
    assert (actual["status"], actual["filled"], actual["average"], actual["side"]) == (
        "closed", 0.01, 31_050.0, "buy")
    assert (actual["info"]["origType"], actual["reduceOnly"]) == ("STOP_MARKET", True)
    assert actual["clientOrderId"] != "sl-1"  # linked by actualOrderId, not by our id
    assert ex.fetch_positions([BTC]) == []
    pnl = [float(r["income"]) for r in ex.fapiPrivateGetIncome({"incomeType": "REALIZED_PNL"})]
    assert pnl == [pytest.approx(-0.01 * 1_050.0)]


def test_mark_price_working_type_and_close_position(fake: FakeBinanceUsdm, ex: Any) -> None:
    ex.create_order(BTC, "market", "buy", 0.02)
    ex.fapiPrivatePostAlgoOrder({"symbol": "BTCUSDT", "side": "SELL", "algoType": "CONDITIONAL",
                                 "type": "STOP_MARKET", "triggerPrice": "29000",
                                 "workingType": "MARK_PRICE", "closePosition": "true",
                                 "clientAlgoId": "sl-mark"})
    fake.set_price("BTCUSDT", 28_900.0, mark=29_100.0)  # last crossed, mark did not
    assert fake.algo_by_client_id("sl-mark")[0]["algoStatus"] == "NEW"
    fake.set_price("BTCUSDT", 28_900.0, mark=28_950.0)
    assert fake.algo_by_client_id("sl-mark")[0]["algoStatus"] == "FINISHED"
    assert ex.fetch_positions([BTC]) == []  # Close-All: the whole 0.02


def test_an_orphan_stop_stays_and_expires_without_trading(fake: FakeBinanceUsdm,
                                                          ex: Any) -> None:
    ex.create_order(BTC, "market", "sell", 0.01)
    ex.create_order(BTC, "market", "buy", 0.01, None,
                    {"stopLossPrice": 31_000.0, "reduceOnly": True, "clientOrderId": "sl-1"})
    ex.create_order(BTC, "market", "buy", 0.01, None, {"reduceOnly": True})  # closed by hand
    assert [o["clientOrderId"] for o in ex.fetch_open_orders(BTC, None, None,
                                                             {"trigger": True})] == ["sl-1"]
    trades = len(fake.trades)
    fake.set_price("BTCUSDT", 31_100.0)
    assert fake.algo_by_client_id("sl-1")[0]["algoStatus"] == "EXPIRED"
    assert len(fake.trades) == trades and ex.fetch_positions([BTC]) == []


# ---------------------------------------------------------------------- funding, balance


def test_funding_paid_by_a_long_received_by_a_short(fake: FakeBinanceUsdm, ex: Any) -> None:
    ex.create_order(BTC, "market", "buy", 0.01)
    ex.create_order("ETH/USDT:USDT", "market", "sell", 0.1)
    assert fake.charge_funding("BTCUSDT") == pytest.approx(-0.01 * 30_000.0 * 0.0001)
    assert fake.charge_funding("ETHUSDT") == pytest.approx(0.1 * 2_000.0 * 0.0001)
    btc = ex.fetch_funding_history(BTC)
    assert [(f["amount"], f["code"]) for f in btc] == [(pytest.approx(-0.03), "USDT")]
    assert last_body(fake, ex)["incomeType"] == "FUNDING_FEE"
    eth = ex.fetch_funding_history("ETH/USDT:USDT")
    assert eth[0]["amount"] == pytest.approx(0.02)
    wallet = 10_000.0 - 0.0005 * (300.0 + 200.0) - 0.03 + 0.02
    assert ex.fetch_balance()["USDT"]["total"] == pytest.approx(wallet)
    assert ("GET", "/fapi/v3/account") in fake.requests


def test_tran_ids_repeat_across_income_types_and_three_months_are_kept(
        fake: FakeBinanceUsdm, ex: Any) -> None:
    """USD-M "Get Income History": "tranId is unique in the same incomeType for a user"
    (a funding payment may share its id with a commission: the journal keys costs by
    kind and id), and "Income history only contains data for the last three months"."""
    ex.create_order(BTC, "market", "buy", 0.01)
    fake.charge_funding("BTCUSDT")
    rows = ex.fapiPrivateGetIncome({"symbol": "BTCUSDT"})
    ids = {r["incomeType"]: r["tranId"] for r in rows}
    assert ids["FUNDING_FEE"] == ids["COMMISSION"]
    start = fake.now_ms() - 10 * 86_400_000
    fake.time_offset_ms += 91 * 86_400_000
    ex.load_time_difference()  # the client follows the server's clock
    assert ex.fapiPrivateGetIncome({"startTime": start}) == []


def test_income_history_window_and_limit(fake: FakeBinanceUsdm, ex: Any) -> None:
    for _ in range(3):
        ex.create_order(BTC, "market", "buy", 0.01)
    rows = ex.fapiPrivateGetIncome({"incomeType": "COMMISSION", "limit": 2})
    assert len(rows) == 2 and {r["asset"] for r in rows} == {"USDT"}
    later = fake.now_ms() + 1
    assert ex.fapiPrivateGetIncome({"startTime": later}) == []
    assert json.loads(json.dumps(rows))[0]["tradeId"]
