"""The Binance spot fake's resting and contingent orders: order lists (OCO), stop-limit
orders that trigger when the price moves, limit orders that fill when it crosses them, and
the balance a resting order locks. Mixed into ``fakes.binance_fake.FakeBinance``.

Documented behaviour (Binance Spot REST API, developers.binance.com/docs/binance-spot-api-
docs/rest-api, and github.com/binance/binance-spot-api-docs ``rest-api.md``):
- "New Order list - OCO (TRADE)", ``POST /api/v3/orderList/oco``: an *above* and a *below*
  order, "activation of one order immediately cancels the other". One leg must be
  ``LIMIT_MAKER``/``TAKE_PROFIT``/``TAKE_PROFIT_LIMIT``, the other ``STOP_LOSS``/
  ``STOP_LOSS_LIMIT``; ``aboveClientOrderId``/``belowClientOrderId`` name the legs and
  ``listClientOrderId`` the list ("unique among open order lists", "distinct from" the
  legs' ids); ``*TimeInForce`` is required for a ``*_LIMIT`` leg; one ``quantity`` for
  both. Price restrictions on a ``SELL``: ``LIMIT_MAKER price > Last Traded Price >
  STOP_LOSS_LIMIT stopPrice``, else -2010 "The relationship of the prices for the orders
  is not correct." ("Error codes", messages for -2010). The answer lists ``orders``
  (symbol, orderId, clientOrderId) and ``orderReports``, below leg first, with
  ``listStatusType`` EXEC_STARTED and ``listOrderStatus`` EXECUTING.
- Leg placement errors ("Error codes"): -1158 "Order type not supported in OCO.", -1166
  "A limit order in a sell OCO must be above.", -1197 "A stop loss order in a sell OCO must
  be below.", -1199 "A take profit order in a sell OCO must be above.", -1165/-1196/-1198
  the same for a buy; -1102 "Mandatory parameter '%s' was not sent, was empty/null, or
  malformed."; filter failures -1013 (``LOT_SIZE`` on the quantity, ``PRICE_FILTER`` on
  every price and stop price, ``NOTIONAL`` on each leg's price x quantity).
- Spot glossary, "OCO": "if one of the orders execute, the other is automatically
  expired"; the user data stream's expiry reason ``OCO_TRIGGER``: "canceled because the
  other order of the pair started working". So a stop leg that *triggers* expires the
  limit leg at once, and a limit leg that fills expires the stop. The list is then
  ``ALL_DONE`` ("Order List Status": "finished executing and thus is no longer active").
- A ``STOP_LOSS_LIMIT`` (alone or in a list) is a *limit* order once triggered
  (``isWorking`` true, ``workingTime`` set; before, ``workingTime`` -1): it trades only at
  its ``price`` or better. A price that gaps below the limit leaves it resting unfilled:
  the position is not closed. That is why freqtrade's ``stoploss_on_exchange_limit_ratio``
  (0.99) puts the limit below the stop. Placed alone, a stop whose ``stopPrice`` the last
  price already passed is refused: -2010 "Order would trigger immediately."; a
  ``LIMIT_MAKER`` that would trade at once: -2010 "Order would immediately match and
  take."
- "Cancel Order list (TRADE)", ``DELETE /api/v3/orderList`` (``symbol`` and
  ``orderListId`` or ``listClientOrderId``): every leg ``CANCELED``, the list
  ``ALL_DONE``; each ``orderReports`` row names its leg by ``origClientOrderId`` while its
  ``clientOrderId`` is the *cancel's* id (``newClientOrderId``, generated if not sent).
  "Canceling an individual order from an order list will cancel the entire order list."
  (``DELETE /api/v3/order`` on a leg).
- "Query Order list (USER_DATA)", ``GET /api/v3/orderList`` (``orderListId`` or
  ``origClientOrderId``, the *list's* client id) and "Query Open Order lists
  (USER_DATA)", ``GET /api/v3/openOrderList``: the list without ``orderReports``.
- Balances ("Account information": ``free`` and ``locked`` per asset): a resting sell
  locks its base asset and a resting buy its quote; an OCO's two legs share one quantity,
  locked once. A sell the free balance does not cover is -2010 "Account has insufficient
  balance for requested action.": a long protected by an OCO cannot be sold at market
  until the OCO is cancelled.

Where the documentation is silent, the fake chooses (and says so here): a query of an
unknown list answers -2011 "Order list does not exist." and a cancel of an unknown or
finished list -2011 "Unknown order sent."; a list is ``ALL_DONE`` from the moment one leg
triggers or fills; an order crossed by a price move fills in full (a just-triggered stop at
the new last price as taker, a resting limit at its own price as maker). The fake's
symbols enable the order types Binance's BTCUSDT lists in ``exchangeInfo`` (``LIMIT``,
``LIMIT_MAKER``, ``MARKET``, ``STOP_LOSS_LIMIT``, ``TAKE_PROFIT_LIMIT``: no stop-market
``STOP_LOSS``), so a leg of another type answers -2010 "Stop loss orders are not supported
for this symbol." and the like. The deprecated ``POST /api/v3/order/oco`` ("New OCO -
Deprecated") is not served: ccxt 4.5.90 reaches the current endpoint as
``privatePostOrderListOco``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fakes.binance_loopback import fmt

OPEN = ("NEW", "PARTIALLY_FILLED")
TRIGGERED_TYPES = ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")  # rest untriggered, then a limit
ABOVE_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS", "LIMIT_MAKER", "TAKE_PROFIT",
               "TAKE_PROFIT_LIMIT")
BELOW_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
# A symbol's ``orderTypes`` as Binance lists BTCUSDT's (no stop-market STOP_LOSS); a symbol
# of the fake may set its own ``order_types``.
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
# The types a symbol may leave disabled ("Error codes", messages for -2010).
NOT_ENABLED = {"STOP_LOSS": "Stop loss orders are not supported for this symbol.",
               "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
               "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
               "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this "
                                    "symbol."}
Answer = tuple[int, Any]


def err(code: int, msg: str) -> Answer:
    return 400, {"code": code, "msg": msg}


def mandatory(name: str) -> Answer:
    return err(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                      "malformed.")


def off_step(x: float, step: float) -> bool:
    return abs(x / step - round(x / step)) > 1e-6


def fires(otype: str, side: str, last: float, stop: float) -> bool:
    """Does the last price trigger a stop order? A sell stop-loss (and a buy take-profit)
    on a fall to the stop price, the other two on a rise to it."""
    falling = (side == "SELL") == otype.startswith("STOP_LOSS")
    return last <= stop if falling else last >= stop


def crosses(side: str, last: float, limit: float) -> bool:
    """Would a limit order at ``limit`` trade at the last price?"""
    return last >= limit if side == "SELL" else last <= limit


class SpotOrderLists:
    """The order-list endpoints and the matching of resting orders on price moves."""

    symbols: dict[str, dict[str, Any]]
    balances: dict[str, float]
    orders: list[dict[str, Any]]
    _lock: threading.RLock
    _next_order: int
    LIST_ROUTES: dict[str, dict[str, Callable[[Any, dict[str, str]], Answer]]]

    if TYPE_CHECKING:  # the fake's own, defined where the account and the clock live
        def now_ms(self) -> int: ...

        def _settle(self, s: dict[str, Any], side: str, qty: float, price: float
                    ) -> tuple[float, str]: ...

        def _trade(self, o: dict[str, Any], qty: float, price: float, commission: float,
                   asset: str, maker: bool) -> None: ...

    def _lists_init(self) -> None:
        self.order_lists: list[dict[str, Any]] = []
        self._next_list = 100
        # Test-only: run when an order list was accepted, before the answer leaves (the
        # crash-safety test kills the client there), like ``on_order`` for one order.
        self.on_order_list: Callable[[dict[str, Any]], None] | None = None

    # ------------------------------------------------------------------ balances

    def locked(self, asset: str) -> float:
        """What resting orders hold of ``asset``: a sell its base quantity left, a buy
        its quote at the limit price; an order list's legs share one quantity."""
        total, lists = 0.0, set()
        for o in self.orders:
            if o["status"] not in OPEN:
                continue
            if o["orderListId"] != -1:
                if o["orderListId"] in lists:
                    continue
                lists.add(o["orderListId"])
            s = self.symbols[o["symbol"]]
            left = float(o["origQty"]) - float(o["executedQty"])
            if o["side"] == "SELL" and s["base"] == asset:
                total += left
            elif o["side"] == "BUY" and s["quote"] == asset:
                total += left * float(o["price"])
        return total

    def free(self, asset: str) -> float:
        return self.balances.get(asset, 0.0) - self.locked(asset)

    # ------------------------------------------------------------------ one resting order

    def leg_problem(self, s: dict[str, Any], q: dict[str, str], otype: str, qty: float,
                    prefix: str = "") -> Answer | None:
        """Mandatory parameters and filters of one resting order (``prefix``: ``above`` /
        ``below`` for an order list's leg, whose parameters carry it)."""
        def name(n: str) -> str:
            return prefix + n[0].upper() + n[1:] if prefix else n

        if otype in ("LIMIT", "LIMIT_MAKER", *TRIGGERED_TYPES) and not q.get(name("price")):
            return mandatory(name("price"))
        if otype in TRIGGERED_TYPES and not q.get(name("stopPrice")):
            return mandatory(name("stopPrice"))
        if otype in ("LIMIT", *TRIGGERED_TYPES) and not q.get(name("timeInForce")):
            return mandatory(name("timeInForce"))
        tick = float(s["tick"])
        for key in ("price", "stopPrice"):
            if q.get(name(key)) and off_step(float(q[name(key)]), tick):
                return err(-1013, "Filter failure: PRICE_FILTER")
        if q.get(name("price")) and qty * float(q[name("price")]) < float(s["min_notional"]):
            return err(-1013, "Filter failure: NOTIONAL")
        return None

    def rest(self, sid: str, q: dict[str, str], otype: str, side: str, qty: float,
             coid: str, list_id: int = -1, prefix: str = "") -> dict[str, Any]:
        """A resting order as the exchange keeps it (not yet matched)."""
        def get(n: str) -> str | None:
            return q.get(prefix + n[0].upper() + n[1:] if prefix else n)

        self._next_order += 1
        now = self.now_ms()
        order: dict[str, Any] = {
            "symbol": sid, "orderId": self._next_order, "orderListId": list_id,
            "clientOrderId": coid, "transactTime": now, "price": fmt(float(get("price") or 0)),
            "origQty": fmt(qty), "executedQty": fmt(0.0), "origQuoteOrderQty": fmt(0.0),
            "cummulativeQuoteQty": fmt(0.0), "status": "NEW",
            "timeInForce": get("timeInForce") or "GTC", "type": otype, "side": side,
            "workingTime": now, "selfTradePreventionMode": "EXPIRE_MAKER", "fills": [],
            "_time": now, "_working": otype not in TRIGGERED_TYPES}
        if otype in TRIGGERED_TYPES:
            order["stopPrice"] = fmt(float(get("stopPrice") or 0))
            order["workingTime"] = -1
        self.orders.append(order)
        return order

    def open_id_taken(self, coid: str) -> bool:
        return any(o["clientOrderId"] == coid and o["status"] in OPEN for o in self.orders)

    # ------------------------------------------------------------------ POST orderList/oco

    def new_oco(self, q: dict[str, str]) -> Answer:
        sid = q.get("symbol", "")
        s = self.symbols.get(sid)
        if s is None:
            return err(-1121, "Invalid symbol.")
        for key in ("side", "quantity", "aboveType", "belowType"):
            if not q.get(key):
                return mandatory(key)
        side, above, below = q["side"], q["aboveType"], q["belowType"]
        qty = float(q["quantity"])
        problem = (self._oco_types(sid, side, above, below)
                   or self._lot_problem(s, qty)
                   or self.leg_problem(s, q, above, qty, "above")
                   or self.leg_problem(s, q, below, qty, "below")
                   or self._oco_prices(s, q))
        if problem is not None:
            return problem
        list_coid = q.get("listClientOrderId") or f"list_{self._next_list + 1}"
        above_coid = q.get("aboveClientOrderId") or f"web_{self._next_order + 1}a"
        below_coid = q.get("belowClientOrderId") or f"web_{self._next_order + 1}b"
        if (any(x["listClientOrderId"] == list_coid and x["listOrderStatus"] == "EXECUTING"
                for x in self.order_lists)
                or self.open_id_taken(above_coid) or self.open_id_taken(below_coid)):
            return err(-2010, "Duplicate order sent.")
        need = (s["base"], qty) if side == "SELL" else (
            s["quote"], qty * max(float(q.get("abovePrice") or 0),
                                  float(q.get("belowPrice") or 0)))
        if self.free(need[0]) < need[1] - 1e-12:
            return err(-2010, "Account has insufficient balance for requested action.")
        self._next_list += 1
        lid = self._next_list
        legs = [self.rest(sid, q, below, side, qty, below_coid, lid, "below"),
                self.rest(sid, q, above, side, qty, above_coid, lid, "above")]
        lst = {"orderListId": lid, "contingencyType": "OCO", "listStatusType": "EXEC_STARTED",
               "listOrderStatus": "EXECUTING", "listClientOrderId": list_coid,
               "transactionTime": self.now_ms(), "symbol": sid,
               "orders": [{"symbol": sid, "orderId": o["orderId"],
                           "clientOrderId": o["clientOrderId"]} for o in legs],
               "_legs": legs}
        self.order_lists.append(lst)
        if self.on_order_list is not None:
            self.on_order_list(lst)
        reports = [self.report(o) for o in legs]
        if q.get("newOrderRespType") == "ACK":
            reports = [{k: r[k] for k in ("symbol", "orderId", "orderListId",
                                           "clientOrderId", "transactTime")} for r in reports]
        return 200, {**self.list_view(lst), "orderReports": reports}

    def _oco_types(self, sid: str, side: str, above: str, below: str) -> Answer | None:
        if above not in ABOVE_TYPES or below not in BELOW_TYPES:
            return err(-1158, "Order type not supported in OCO.")
        for t in (above, below):
            if t not in self.symbols[sid].get("order_types", ORDER_TYPES):
                return err(-2010, NOT_ENABLED.get(t, "Unsupported order combination"))
        if side == "SELL":
            if above.startswith("STOP_LOSS"):
                return err(-1197, "A stop loss order in a sell OCO must be below.")
            if below.startswith("TAKE_PROFIT"):
                return err(-1199, "A take profit order in a sell OCO must be above.")
            return None
        if above == "LIMIT_MAKER":
            return err(-1165, "A limit order in a buy OCO must be below.")
        if above.startswith("TAKE_PROFIT"):
            return err(-1198, "A take profit order in a buy OCO must be below.")
        if below.startswith("STOP_LOSS"):
            return err(-1196, "A stop loss order in a buy OCO must be above.")
        return None

    def _lot_problem(self, s: dict[str, Any], qty: float) -> Answer | None:
        if qty < float(s["min_qty"]) or off_step(qty, float(s["step"])):
            return err(-1013, "Filter failure: LOT_SIZE")
        return None

    def _oco_prices(self, s: dict[str, Any], q: dict[str, str]) -> Answer | None:
        """Above leg > last price > below leg, each leg placed by its ``price`` (a
        ``LIMIT_MAKER``, a ``TAKE_PROFIT_LIMIT``) or its ``stopPrice`` (a stop-loss): on a
        sell the limit is above and the stop below, on a buy the other way round."""
        last = float(s["price"])

        def level(prefix: str) -> float:
            by_stop = q[prefix + "Type"].startswith("STOP_LOSS")
            return float(q[prefix + ("StopPrice" if by_stop else "Price")])

        if not level("above") > last > level("below"):
            return err(-2010, "The relationship of the prices for the orders is not correct.")
        return None

    # ------------------------------------------------------------------ views

    def report(self, o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if not k.startswith("_") and k != "fills"}

    def list_view(self, lst: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in lst.items() if not k.startswith("_")}

    def find_list(self, q: dict[str, str], by_client: str) -> dict[str, Any] | None:
        for lst in reversed(self.order_lists):
            if "orderListId" in q and str(lst["orderListId"]) == q["orderListId"]:
                return lst
            if q.get(by_client) and lst["listClientOrderId"] == q[by_client]:
                return lst
        return None

    def query_list(self, q: dict[str, str]) -> Answer:
        if not q.get("orderListId") and not q.get("origClientOrderId"):
            return err(-1102, "Param 'orderListId' or 'origClientOrderId' must be sent, but "
                              "both were empty/null!")
        lst = self.find_list(q, "origClientOrderId")
        if lst is None:
            return err(-2011, "Order list does not exist.")
        return 200, self.list_view(lst)

    def open_lists(self, q: dict[str, str]) -> Answer:
        del q
        return 200, [self.list_view(x) for x in self.order_lists
                     if x["listOrderStatus"] == "EXECUTING"]

    def cancel_list(self, q: dict[str, str]) -> Answer:
        if not q.get("orderListId") and not q.get("listClientOrderId"):
            return err(-1102, "Param 'orderListId' or 'listClientOrderId' must be sent, but "
                              "both were empty/null!")
        lst = self.find_list(q, "listClientOrderId")
        if (lst is None or lst["symbol"] != q.get("symbol")
                or lst["listOrderStatus"] != "EXECUTING"):
            return err(-2011, "Unknown order sent.")
        return 200, self._cancel(lst, q.get("newClientOrderId") or f"cancel_{lst['orderListId']}")

    def _cancel(self, lst: dict[str, Any], cancel_id: str) -> dict[str, Any]:
        reports = []
        for o in lst["_legs"]:
            if o["status"] in OPEN:
                o["status"] = "CANCELED"
            reports.append({**self.report(o), "origClientOrderId": o["clientOrderId"],
                            "clientOrderId": cancel_id, "transactTime": self.now_ms()})
        self._all_done(lst)
        return {**self.list_view(lst), "orderReports": reports}

    def cancel_leg(self, o: dict[str, Any]) -> None:
        """``DELETE /api/v3/order`` on a leg: the whole list goes."""
        for lst in self.order_lists:
            if lst["orderListId"] == o["orderListId"]:
                self._cancel(lst, f"cancel_{lst['orderListId']}")

    def _all_done(self, lst: dict[str, Any]) -> None:
        lst.update(listStatusType="ALL_DONE", listOrderStatus="ALL_DONE",
                   transactionTime=self.now_ms())

    def _expire_others(self, o: dict[str, Any]) -> None:
        """One leg started working or traded: the rest of its list expires (OCO_TRIGGER)."""
        for lst in self.order_lists:
            if lst["orderListId"] != o["orderListId"] or lst["listOrderStatus"] != "EXECUTING":
                continue
            for other in lst["_legs"]:
                if other is not o and other["status"] in OPEN:
                    other["status"] = "EXPIRED"
                    other["_update"] = self.now_ms()
            self._all_done(lst)

    # ------------------------------------------------------------------ matching

    def match(self, sid: str) -> None:
        """The symbol's last price moved: stops it reaches trigger, limits it crosses
        trade (see the module docstring for the fill price)."""
        last = float(self.symbols[sid]["price"])
        for o in [o for o in self.orders if o["symbol"] == sid and o["status"] in OPEN]:
            if o["status"] not in OPEN:
                continue  # expired by a sibling in this same pass
            taker = False
            if not o.get("_working", True):
                if not fires(o["type"], o["side"], last, float(o["stopPrice"])):
                    continue
                o.update(_working=True, workingTime=self.now_ms(), _update=self.now_ms())
                if o["orderListId"] != -1:
                    self._expire_others(o)
                taker = True
            limit = float(o["price"])
            if crosses(o["side"], last, limit):
                self.execute(o, float(o["origQty"]) - float(o["executedQty"]),
                             last if taker else limit, maker=not taker)

    def execute(self, o: dict[str, Any], qty: float, price: float, *, maker: bool) -> None:
        """One trade of a resting order: balances, commission, the trade list, and (for a
        leg of a list) the other legs expired."""
        s = self.symbols[o["symbol"]]
        commission, asset = self._settle(s, o["side"], qty, price)
        self._trade(o, qty, price, commission, asset, maker)
        executed = float(o["executedQty"]) + qty
        o["executedQty"] = fmt(executed)
        o["cummulativeQuoteQty"] = fmt(float(o["cummulativeQuoteQty"]) + price * qty)
        o["status"] = ("FILLED" if executed >= float(o["origQty"]) - 1e-12
                       else "PARTIALLY_FILLED")
        o["_update"] = self.now_ms()
        if o["orderListId"] != -1:
            self._expire_others(o)


# path -> method -> handler, for ``FakeBinance.route`` (every one a SIGNED endpoint).
SpotOrderLists.LIST_ROUTES = {
    "/api/v3/orderList/oco": {"POST": SpotOrderLists.new_oco},
    "/api/v3/orderList": {"GET": SpotOrderLists.query_list,
                          "DELETE": SpotOrderLists.cancel_list},
    "/api/v3/openOrderList": {"GET": SpotOrderLists.open_lists},
}
