"""A small Binance spot REST exchange on 127.0.0.1 that the real ``ccxt.binance`` talks to.

Shapes follow the Binance Spot API documentation
(https://developers.binance.com/docs/binance-spot-api-docs/rest-api):
- ``GET /api/v3/time`` -> ``{"serverTime": ms}``; ``GET /api/v3/ping`` -> ``{}``;
- ``GET /api/v3/exchangeInfo`` -> ``timezone, serverTime, rateLimits, exchangeFilters,
  symbols[]`` with ``PRICE_FILTER`` (tickSize), ``LOT_SIZE`` (stepSize, minQty),
  ``NOTIONAL`` (minNotional, applyMinToMarket) filters;
- ``GET /api/v3/klines`` -> ``[[openTime, "open", "high", "low", "close", "volume",
  closeTime, "quoteVolume", trades, "takerBase", "takerQuote", "0"], ...]`` oldest first,
  the last one still forming (startTime/endTime/limit honoured, limit <= 1000);
- ``GET /api/v3/ticker/24hr?symbol=`` (FULL) -> ``symbol, priceChange,
  priceChangePercent, weightedAvgPrice, prevClosePrice, lastPrice, lastQty, bidPrice,
  bidQty, askPrice, askQty, openPrice, highPrice, lowPrice, volume, quoteVolume, openTime,
  closeTime, firstId, lastId, count`` (prices and quantities as strings); ``lastPrice`` is
  the symbol's current price (``set_price``), bid/ask one tick either side;
- ``POST /api/v3/order`` (signed) -> with ``newOrderRespType=FULL`` the order plus
  ``fills[]``; ``GET /api/v3/order`` by ``orderId`` or ``origClientOrderId``;
  ``DELETE /api/v3/order``; ``GET /api/v3/openOrders``; ``GET /api/v3/allOrders``;
  ``GET /api/v3/myTrades``; ``GET /api/v3/account`` (``balances[]`` of ``asset, free,
  locked``: what ccxt's ``fetch_balance`` reads; a resting order locks what it would
  spend, ``fakes.binance_spot_oco``);
- order types ``MARKET``, ``LIMIT``, ``LIMIT_MAKER``, ``STOP_LOSS_LIMIT`` (and
  ``TAKE_PROFIT_LIMIT``), and the order lists of ``fakes.binance_spot_oco``: ``POST
  /api/v3/orderList/oco``, ``GET``/``DELETE /api/v3/orderList``, ``GET
  /api/v3/openOrderList``; ``set_price`` moves the last price, which triggers stops and
  fills the resting orders it crosses (that module's docstring cites the docs).
- Errors are HTTP 400 with ``{"code": <negative>, "msg": ...}``: -1021 "Timestamp for this
  request is outside of the recvWindow.", -1022 "Signature for this request is not
  valid.", -2010 "Account has insufficient balance for requested action." / "Duplicate
  order sent.", -2011 "Unknown order sent.", -2013 "Order does not exist.", -1013 "Filter
  failure: LOT_SIZE" / "Filter failure: NOTIONAL", -1121 "Invalid symbol.".
- Commissions (Binance FAQ "What is Binance Spot Trading Fee and How to Calculate",
  binance.com/en/support/faq/e85d6e703b874674840122196b89780a: "Trading fees are always
  charged in the asset you receive"; 25 % off when paid in BNB): a BUY pays 0.1 % of the
  quantity in the *base* asset, so 0.001 BTC bought credits 0.000999; a SELL pays 0.1 % of
  the notional in the quote asset; with ``fees_in_bnb`` (and BNB on the account) 0.075 %
  of the notional in BNB at ``bnb_price``. Each trade reports it as ``commission`` /
  ``commissionAsset``, in the FULL order response's ``fills[]`` (REST API "New order
  (TRADE)", ``POST /api/v3/order``, response FULL) and in ``GET /api/v3/myTrades``
  ("Account trade list (USER_DATA)": ``commission``, ``commissionAsset``, ``isBuyer``,
  ``isMaker``); the balances of ``GET /api/v3/account`` ("Account information
  (USER_DATA)") move by exactly that, for market fills and for resting orders filled
  later (``fill_resting``).
- A new account holds the quote currency only (``balances`` defaults to 1,000,000 USDT,
  no base asset): a sell needs base asset we bought, and -2010 "Account has insufficient
  balance for requested action." answers one that is not covered.
- Error codes ("Error codes for Binance", developers.binance.com/docs/binance-spot-api-
  docs/errors) and HTTP statuses ("HTTP Return Codes": 429 rate limit, 418 IP ban, both
  with ``Retry-After`` per "LIMITS") as listed above and in ``script`` below.
- ``newClientOrderId`` must be unique among *open* orders (-2010 "Duplicate order sent.");
  like Binance, an id of a closed order can be used again, which is exactly why the
  executor must never re-send: every accepted order is kept, so a duplicate shows.
- A MARKET order that cannot fill completely ends ``EXPIRED`` with the partial
  ``executedQty`` (Binance's behaviour when liquidity runs out); a LIMIT order can be left
  ``PARTIALLY_FILLED``.

Faults: ``script(method, path, *steps)`` as ``fakes.binance_loopback`` documents, and
``("partial", fraction)``, ``("timestamp",)`` (-1021). ``on_order`` (a callback run when an
order is accepted, before the answer) lets a test kill a client at that exact point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fakes.binance_loopback import INTERVALS as _INTERVALS
from fakes.binance_loopback import MINUTE_MS, LoopbackBinance, find_order
from fakes.binance_loopback import fmt as _fmt
from fakes.binance_spot_oco import (
    NOT_ENABLED,
    OPEN,
    ORDER_TYPES,
    SpotOrderLists,
    crosses,
    err,
    fires,
    mandatory,
)

__all__ = ["MINUTE_MS", "_INTERVALS", "FakeBinance", "_fmt"]


class FakeBinance(SpotOrderLists, LoopbackBinance):
    COMMISSION = 0.001  # 0.1 %, Binance's regular spot rate
    BNB_DISCOUNT = 0.75  # paying in BNB: 25 % off

    def __init__(self, *, api_key: str = "fake-key", secret: str = "fake-secret",
                 balances: dict[str, float] | None = None, fees_in_bnb: bool = False,
                 bnb_price: float = 300.0) -> None:
        super().__init__(api_key=api_key, secret=secret)
        # Like a new account funded in the quote currency: no base asset at all.
        self.balances: dict[str, float] = dict(balances or {"USDT": 1_000_000.0})
        self.fees_in_bnb = fees_in_bnb
        self.bnb_price = bnb_price  # quote per BNB, to charge a fee in BNB
        self.symbols: dict[str, dict[str, Any]] = {
            "BTCUSDT": dict(base="BTC", quote="USDT", tick="0.01", step="0.00001",
                            min_qty="0.00001", min_notional="5.0", price=30_000.0),
            "ETHUSDT": dict(base="ETH", quote="USDT", tick="0.01", step="0.0001",
                            min_qty="0.0001", min_notional="5.0", price=2_000.0),
        }
        self.orders: list[dict[str, Any]] = []  # every accepted order, in order
        self.trades: list[dict[str, Any]] = []
        self.on_order: Callable[[dict[str, Any]], None] | None = None
        self._next_order = 1000
        self._next_trade = 5000
        self._lists_init()

    def api_urls(self) -> dict[str, str]:
        """The ``urls['api']`` entries the spot code paths of ccxt.binance use."""
        return {"public": f"{self.base_url}/api/v3", "private": f"{self.base_url}/api/v3",
                "v1": f"{self.base_url}/api/v1", "sapi": f"{self.base_url}/sapi/v1"}

    # ------------------------------------------------------------------ test helpers

    def orders_by_client_id(self, client_order_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self.orders if o["clientOrderId"] == client_order_id]

    def set_price(self, symbol_id: str, price: float) -> None:
        """A trade at ``price`` moved the last price: stops it reaches trigger, resting
        orders it crosses fill (``SpotOrderLists.match``)."""
        with self._lock:
            self.symbols[symbol_id]["price"] = price
            self.match(symbol_id)

    def fill_resting(self, client_order_id: str, fraction: float = 1.0) -> None:
        """A resting LIMIT order trades at its price (e.g. while the client is down)."""
        with self._lock:
            [o] = [o for o in self.orders if o["clientOrderId"] == client_order_id
                   and o["status"] in OPEN]
            step = float(self.symbols[o["symbol"]]["step"])
            left = float(o["origQty"]) - float(o["executedQty"])
            qty = round(int(left * fraction / step + 1e-6) * step, 8)
            self.execute(o, qty, float(o["price"]), maker=True)

    def _trade(self, o: dict[str, Any], qty: float, price: float, commission: float,
               asset: str, maker: bool) -> None:
        self._next_trade += 1
        self.trades.append({
            "symbol": o["symbol"], "id": self._next_trade, "orderId": o["orderId"],
            "orderListId": o["orderListId"], "price": _fmt(price), "qty": _fmt(qty),
            "quoteQty": _fmt(price * qty), "commission": _fmt(commission),
            "commissionAsset": asset, "time": self.now_ms(), "isBuyer": o["side"] == "BUY",
            "isMaker": maker, "isBestMatch": True})

    def _settle(self, s: dict[str, Any], side: str, qty: float, price: float
                ) -> tuple[float, str]:
        """Move the balances for one trade and charge its commission: in the asset
        received (the base on a buy, the quote on a sell), or in BNB when the account pays
        fees in BNB and holds enough of it. Returns (commission, commissionAsset)."""
        notional = qty * price
        if self.fees_in_bnb:
            bnb = notional * self.COMMISSION * self.BNB_DISCOUNT / self.bnb_price
            if self.balances.get("BNB", 0.0) >= bnb:
                self.balances["BNB"] -= bnb
                commission, asset = round(bnb, 8), "BNB"
            else:
                commission, asset = self._received_fee(s, side, qty, notional)
        else:
            commission, asset = self._received_fee(s, side, qty, notional)
        base, quote = s["base"], s["quote"]
        sign = 1 if side == "BUY" else -1
        self.balances[base] = round(self.balances.get(base, 0.0) + sign * qty, 12)
        self.balances[quote] = round(self.balances.get(quote, 0.0) - sign * notional, 12)
        if asset != "BNB":
            self.balances[asset] = round(self.balances[asset] - commission, 12)
        return commission, asset

    def _received_fee(self, s: dict[str, Any], side: str, qty: float,
                      notional: float) -> tuple[float, str]:
        if side == "BUY":
            return round(qty * self.COMMISSION, 8), s["base"]
        return round(notional * self.COMMISSION, 8), s["quote"]

    # ------------------------------------------------------------------ market data

    def exchange_info(self) -> dict[str, Any]:
        symbols = []
        for sid, s in self.symbols.items():
            symbols.append({
                "symbol": sid, "status": "TRADING", "baseAsset": s["base"],
                "baseAssetPrecision": 8, "quoteAsset": s["quote"], "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": list(s.get("order_types", ORDER_TYPES)),
                "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
                "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
                "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": s["tick"],
                     "maxPrice": "1000000.00000000", "tickSize": s["tick"]},
                    {"filterType": "LOT_SIZE", "minQty": s["min_qty"], "maxQty": "9000.0",
                     "stepSize": s["step"]},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000",
                     "maxQty": "100.00000000", "stepSize": "0.00000000"},
                    {"filterType": "NOTIONAL", "minNotional": s["min_notional"],
                     "applyMinToMarket": True, "maxNotional": "9000000.00000000",
                     "applyMaxToMarket": False, "avgPriceMins": 5},
                    {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                ],
                "permissions": [], "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER",
                                                    "EXPIRE_BOTH"],
            })
        return {"timezone": "UTC", "serverTime": self.now_ms(),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                     "limit": 6000},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": 100}],
                "exchangeFilters": [], "symbols": symbols}

    def ticker_24hr(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol", "")
        s = self.symbols.get(sid)
        if s is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        price, tick = float(s["price"]), float(s["tick"])
        now = self.now_ms()
        with self._lock:
            trades = [t for t in self.trades if t["symbol"] == sid]
        return 200, {
            "symbol": sid, "priceChange": _fmt(0.0), "priceChangePercent": "0.000",
            "weightedAvgPrice": _fmt(price), "prevClosePrice": _fmt(price),
            "lastPrice": _fmt(price), "lastQty": _fmt(0.001), "bidPrice": _fmt(price - tick),
            "bidQty": _fmt(1.0), "askPrice": _fmt(price + tick), "askQty": _fmt(1.0),
            "openPrice": _fmt(price), "highPrice": _fmt(price * 1.001),
            "lowPrice": _fmt(price * 0.999), "volume": _fmt(100.0),
            "quoteVolume": _fmt(price * 100.0), "openTime": now - 86_400_000,
            "closeTime": now, "firstId": trades[0]["id"] if trades else -1,
            "lastId": trades[-1]["id"] if trades else -1, "count": len(trades)}

    # ------------------------------------------------------------------ trading

    def _order_view(self, o: dict[str, Any], full: bool = False) -> dict[str, Any]:
        view = {k: v for k, v in o.items() if not k.startswith("_")}
        if not full:
            view.pop("fills", None)
        return view

    def new_order(self, q: dict[str, str], partial: float | None) -> tuple[int, Any]:
        sid = q.get("symbol", "")
        s = self.symbols.get(sid)
        if s is None:
            return err(-1121, "Invalid symbol.")
        side, otype = str(q.get("side")), str(q.get("type"))
        qty = float(q.get("quantity", "0"))
        problem = self._order_problem(s, q, otype, qty)
        if problem is not None:
            return problem
        coid = q.get("newClientOrderId") or f"web_{self._next_order}"
        with self._lock:
            problem = self._placement_problem(s, q, otype, side, qty, coid)
            if problem is not None:
                return problem
            order = self.rest(sid, q, otype, side, qty, coid)
            if otype in ("MARKET", "LIMIT"):
                self._take(s, order, partial)
        if self.on_order is not None:
            self.on_order(order)
        resp_type = q.get("newOrderRespType", "FULL")
        if resp_type == "ACK":
            return 200, {"symbol": sid, "orderId": order["orderId"], "orderListId": -1,
                         "clientOrderId": coid, "transactTime": order["transactTime"]}
        return 200, self._order_view(order, full=resp_type == "FULL")

    def _order_problem(self, s: dict[str, Any], q: dict[str, str], otype: str,
                       qty: float) -> tuple[int, Any] | None:
        """Type, parameters and filters (LOT_SIZE, PRICE_FILTER, NOTIONAL at the limit
        price or, for a market order, the last price)."""
        if otype not in ("MARKET", "LIMIT", "LIMIT_MAKER", *NOT_ENABLED):
            return err(-1116, "Invalid orderType.") if otype else mandatory("type")
        if otype not in s.get("order_types", ORDER_TYPES):
            return err(-2010, NOT_ENABLED.get(otype, "Unsupported order combination"))
        problem = self._lot_problem(s, qty)
        if problem is None and otype != "MARKET":
            problem = self.leg_problem(s, q, otype, qty)
        if problem is None and otype == "MARKET" and qty * s["price"] < float(
                s["min_notional"]):
            problem = err(-1013, "Filter failure: NOTIONAL")
        return problem

    def _placement_problem(self, s: dict[str, Any], q: dict[str, str], otype: str,
                           side: str, qty: float, coid: str) -> tuple[int, Any] | None:
        """What the matching engine refuses: a duplicate open id, a stop the last price
        already passed, a LIMIT_MAKER that would take, a balance the order exceeds."""
        if self.open_id_taken(coid):
            return err(-2010, "Duplicate order sent.")
        last = float(s["price"])
        if otype in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and fires(
                otype, side, last, float(q["stopPrice"])):
            return err(-2010, "Order would trigger immediately.")
        if otype == "LIMIT_MAKER" and crosses(side, last, float(q["price"])):
            return err(-2010, "Order would immediately match and take.")
        price = float(q["price"]) if otype != "MARKET" else last
        need_asset, need = (s["quote"], qty * price) if side == "BUY" else (s["base"], qty)
        if self.free(need_asset) < need - 1e-12:
            return err(-2010, "Account has insufficient balance for requested action.")
        return None

    def _take(self, s: dict[str, Any], order: dict[str, Any], partial: float | None) -> None:
        """A MARKET order, or a LIMIT that crosses the last price, trades at once at the
        last price (in part with a scripted ``partial``); a MARKET order that cannot
        fill in full ends EXPIRED."""
        step, last = float(s["step"]), float(s["price"])
        qty = float(order["origQty"])
        fill_qty = qty if partial is None else round(int(qty * partial / step + 1e-6) * step, 8)
        if order["type"] == "LIMIT" and not crosses(order["side"], last, float(order["price"])):
            fill_qty = 0.0
        if fill_qty > 0:
            self.execute(order, fill_qty, last, maker=False)
            t = self.trades[-1]
            order["fills"] = [{"price": t["price"], "qty": t["qty"],
                               "commission": t["commission"],
                               "commissionAsset": t["commissionAsset"], "tradeId": t["id"]}]
        if order["type"] == "MARKET" and fill_qty < qty - 1e-12:
            order["status"] = "EXPIRED"

    def query_view(self, o: dict[str, Any]) -> dict[str, Any]:
        view = self._order_view(o)
        view.pop("transactTime", None)
        view.update(time=o["_time"], updateTime=o.get("_update", o["_time"]),
                    stopPrice=o.get("stopPrice", _fmt(0.0)), icebergQty=_fmt(0.0),
                    isWorking=o["status"] in OPEN and o["_working"])
        return view

    def find(self, q: dict[str, str]) -> dict[str, Any] | None:
        return find_order(self.orders, q)

    def route(self, method: str, path: str, q: dict[str, str], raw: str,
              headers: Any, step: tuple[Any, ...] | None) -> tuple[int, Any]:
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/time":
            return 200, {"serverTime": self.now_ms()}
        if path == "/api/v3/exchangeInfo":
            return 200, self.exchange_info()
        if path == "/api/v3/klines":
            return self.klines(q)
        if path == "/api/v3/ticker/24hr":
            return self.ticker_24hr(q)
        private = {"/api/v3/order", "/api/v3/openOrders", "/api/v3/allOrders",
                   "/api/v3/myTrades", "/api/v3/account", "/api/v3/orderList/oco",
                   "/api/v3/orderList", "/api/v3/openOrderList"}
        if path not in private:
            return 404, {"code": -1000, "msg": f"unknown path {path}"}
        problem = self.refusal(q, raw, headers, step)
        if problem is not None:
            return problem
        with self._lock:
            if path == "/api/v3/order" and method == "POST":
                partial = step[1] if step is not None and step[0] == "partial" else None
                return self.new_order(q, partial)
            if path == "/api/v3/order" and method == "GET":
                o = self.find(q)
                return (200, self.query_view(o)) if o else (
                    400, {"code": -2013, "msg": "Order does not exist."})
            if path == "/api/v3/order" and method == "DELETE":
                o = self.find(q)
                if o is None or o["status"] not in OPEN:
                    return 400, {"code": -2011, "msg": "Unknown order sent."}
                o["status"] = "CANCELED"
                if o["orderListId"] != -1:
                    self.cancel_leg(o)
                return 200, {**self._order_view(o), "origClientOrderId": o["clientOrderId"]}
            if path in self.LIST_ROUTES:
                handler = self.LIST_ROUTES[path].get(method)
                return handler(self, q) if handler else err(-1000, f"{method} {path}?")
            if path == "/api/v3/openOrders":
                sid = q.get("symbol")
                return 200, [self.query_view(o) for o in self.orders
                             if o["status"] in OPEN and (sid is None or o["symbol"] == sid)]
            if path == "/api/v3/allOrders":
                start = int(q.get("startTime", 0))
                rows = [self.query_view(o) for o in self.orders
                        if o["symbol"] == q.get("symbol") and o["_time"] >= start]
                return 200, rows[: int(q.get("limit", 500))]
            if path == "/api/v3/myTrades":
                start = int(q.get("startTime", 0))
                rows = [t for t in self.trades
                        if t["symbol"] == q.get("symbol") and t["time"] >= start
                        and ("orderId" not in q or str(t["orderId"]) == q["orderId"])]
                return 200, rows[: int(q.get("limit", 500))]
            if path == "/api/v3/account":
                return 200, {
                    "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0,
                    "sellerCommission": 0, "canTrade": True, "canWithdraw": True,
                    "canDeposit": True, "brokered": False, "requireSelfTradePrevention": False,
                    "preventSor": False, "updateTime": self.now_ms(), "accountType": "SPOT",
                    "balances": [{"asset": a, "free": _fmt(v - self.locked(a)),
                                  "locked": _fmt(self.locked(a))}
                                 for a, v in self.balances.items()],
                    "permissions": ["SPOT"], "uid": 1}
        return 404, {"code": -1000, "msg": "unreachable"}
