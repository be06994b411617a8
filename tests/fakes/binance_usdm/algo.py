"""USD-M conditional orders on the Algo Service, and their triggering.

Binance moved every USD-M conditional order to the Algo Service on 2025-12-09 (change log,
developers.binance.com/docs/derivatives/change-log, 2025-11-06 entry; the old endpoint
answers -4120, see ``orders``). Shapes from "New Algo Order (TRADE)", "Query Algo Order
(USER_DATA)", "Cancel Algo Order (TRADE)" and "Query Current Algo Open Orders (USER_DATA)"
(developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/
New-Algo-Order, ...):
- ``POST /fapi/v1/algoOrder``: ``algoType`` CONDITIONAL (the only one), ``type`` one of
  STOP_MARKET / TAKE_PROFIT_MARKET / STOP / TAKE_PROFIT / TRAILING_STOP_MARKET (this fake
  executes the two *_MARKET types and refuses the others with -1116), ``triggerPrice``,
  ``workingType`` MARK_PRICE | CONTRACT_PRICE (default CONTRACT_PRICE: the last price),
  ``quantity`` unless ``closePosition=true`` ("Close-All", STOP_MARKET/TAKE_PROFIT_MARKET
  only, cannot be sent with ``quantity`` or ``reduceOnly``: -1106), ``reduceOnly``,
  ``clientAlgoId``. The answer is the algo order: ``algoId``, ``clientAlgoId``,
  ``algoType``, ``orderType``, ``symbol``, ``side``, ``positionSide``, ``quantity``,
  ``algoStatus`` NEW, ``triggerPrice``, ``workingType``, ``closePosition``,
  ``reduceOnly``, ``createTime``, ``updateTime``, ``triggerTime``. ccxt 4.5.90 sends
  every order with ``stopLossPrice``/``takeProfitPrice``/``triggerPrice`` here, with the
  unified ``clientOrderId`` as ``clientAlgoId``.
- -2021 "Order would immediately trigger." when the working price is already past the
  trigger (a SELL STOP_MARKET at or above the price, a SELL TAKE_PROFIT_MARKET at or
  below it, mirrored for BUY). No margin check at placement (Binance FAQ "What Are
  Conditional Orders", binance.com/en/support/faq/998e63d2587d4e2fb894b1615de3b288).
- ``GET /fapi/v1/algoOrder`` (``algoId`` or ``clientAlgoId``), ``DELETE`` the same ->
  ``{algoId, clientAlgoId, code: "200", msg: "success"}``; ``GET /fapi/v1/openAlgoOrders``
  -> a list. ccxt reaches these only with ``{"trigger": True}``. Unknown ids: -2013 on
  query, -2011 on cancel (the regular endpoints' codes; the algo pages list no others).
- Triggering (``algoStatus`` NEW -> TRIGGERING -> TRIGGERED -> FINISHED, or EXPIRED /
  REJECTED): when the working price crosses the trigger, a MARKET order goes to the
  matching engine; the algo order reports it as ``actualOrderId`` / ``actualPrice``. That
  order has its own client id, ``origType`` the conditional type. A stop left after its
  position was closed another way stays NEW: Binance does not cancel it (the orphan-stop
  reports of freqtrade and ccxt users), so the caller must.

Where the pages are silent this fake makes a choice, stated here so a test does not
mistake it for the venue's word: the triggered order's client id is ``algo-<algoId>``
(anything but ours: callers must link by ``actualOrderId``); a reduce-only or Close-All
leg that finds nothing to reduce when it fires ends EXPIRED and trades nothing; an
unknown algo id answers -2013 on query and -2011 on cancel, and a ``clientAlgoId`` of an
open algo order -4116, as the regular order endpoints do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fakes.binance_loopback import fmt
from fakes.binance_usdm.orders import err, off_grid

EXECUTED = ("STOP_MARKET", "TAKE_PROFIT_MARKET")
DOCUMENTED = (*EXECUTED, "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET")


def _true(q: dict[str, str], key: str) -> bool:
    return q.get(key, "false").lower() == "true"


def fires(kind: str, side: str, working: float, trigger: float) -> bool:
    """A stop fires when the price moves against the position it protects, a take-profit
    when it moves in favour: a SELL stop at or below its trigger, a SELL take-profit at or
    above it; BUY mirrored."""
    below = working <= trigger
    above = working >= trigger
    if kind == "STOP_MARKET":
        return below if side == "SELL" else above
    return above if side == "SELL" else below


class Algo:
    symbols: dict[str, dict[str, Any]]
    positions: dict[str, dict[str, float]]
    dual_side: bool
    _lock: threading.RLock
    # Test-only: called with each algo order accepted, before the answer leaves (the
    # crash-safety test kills the daemon there, between an entry and its exits).
    on_algo_order: Callable[[dict[str, Any]], None] | None

    def now_ms(self) -> int:
        raise NotImplementedError

    def mark(self, sid: str) -> float:
        raise NotImplementedError

    def place(self, sid: str, side: str, otype: str, qty: float, price: float, coid: str,
              reduce_only: bool, q: dict[str, str], partial: float | None = None,
              orig_type: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def reduce_only_qty(self, sid: str, side: str, qty: float) -> float | None:
        raise NotImplementedError

    def init_algo(self) -> None:
        self.algo_orders: list[dict[str, Any]] = []
        self._next_algo = 3000
        self.on_algo_order = None

    def working_price(self, a: dict[str, Any]) -> float:
        if a["workingType"] == "MARK_PRICE":
            return self.mark(a["symbol"])
        return float(self.symbols[a["symbol"]]["price"])

    # ------------------------------------------------------------------ endpoints

    def _check_algo(self, q: dict[str, str]) -> tuple[int, Any] | None:
        sid, kind = q.get("symbol", ""), q.get("type", "")
        s = self.symbols.get(sid)
        if s is None:
            return err(-1121, "Invalid symbol.")
        if q.get("algoType") != "CONDITIONAL":
            return err(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, "
                              "or malformed.")
        if kind not in EXECUTED:
            return err(-1116, "Invalid orderType.")
        side_param = q.get("positionSide")
        if (self.dual_side and side_param in (None, "BOTH")) or (
                not self.dual_side and side_param not in (None, "BOTH")):
            return err(-4061, "Order's position side does not match user's setting.")
        if "triggerPrice" not in q:
            return err(-1102, "Mandatory parameter 'triggerPrice' was not sent, was "
                              "empty/null, or malformed.")
        if off_grid(float(q["triggerPrice"]), float(s["tick"])):
            return err(-4014, "Price not increased by tick size.")
        if _true(q, "closePosition"):
            for extra in ("quantity", "reduceOnly"):
                if extra in q:
                    return err(-1106, f"Parameter '{extra}' sent when not required.")
        elif "quantity" not in q:
            return err(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, "
                              "or malformed.")
        elif off_grid(float(q["quantity"]), float(s["step"])):
            return err(-1111, "Precision is over the maximum defined for this asset.")
        return None

    def new_algo_order(self, q: dict[str, str]) -> tuple[int, Any]:
        problem = self._check_algo(q)
        if problem is not None:
            return problem
        sid, kind, side = q["symbol"], q["type"], q.get("side", "")
        s, trigger = self.symbols[sid], float(q["triggerPrice"])
        working = q.get("workingType", "CONTRACT_PRICE")
        reduce = _true(q, "reduceOnly") or _true(q, "closePosition")
        qty = float(q.get("quantity", "0"))
        if not reduce and qty * trigger < float(s["min_notional"]) - 1e-9:
            return err(-4164, f"Order's notional must be no smaller than "
                              f"{s['min_notional']} (unless you choose reduce only).")
        coid = q.get("clientAlgoId") or f"algo_web_{self._next_algo + 1}"
        with self._lock:
            if any(a["clientAlgoId"] == coid and a["algoStatus"] == "NEW"
                   for a in self.algo_orders):
                return err(-4116, "ClientOrderId is duplicated.")
            probe = {"symbol": sid, "workingType": working}
            if fires(kind, side, self.working_price(probe), trigger):
                return err(-2021, "Order would immediately trigger.")
            self._next_algo += 1
            now = self.now_ms()
            algo = {
                "algoId": self._next_algo, "clientAlgoId": coid, "algoType": "CONDITIONAL",
                "orderType": kind, "symbol": sid, "side": side, "positionSide": "BOTH",
                "timeInForce": q.get("timeInForce", "GTC"), "quantity": fmt(qty, 3),
                "algoStatus": "NEW", "actualOrderId": "", "actualPrice": "0.00",
                "triggerPrice": fmt(trigger, 2), "price": "0.00", "icebergQuantity": None,
                "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": working,
                "priceMatch": "NONE", "closePosition": _true(q, "closePosition"),
                "priceProtect": _true(q, "priceProtect"), "reduceOnly": _true(q, "reduceOnly"),
                "createTime": now, "updateTime": now, "triggerTime": 0, "goodTillDate": 0}
            self.algo_orders.append(algo)
        if self.on_algo_order is not None:
            self.on_algo_order(algo)
        return 200, dict(algo)

    def find_algo(self, q: dict[str, str]) -> dict[str, Any] | None:
        for a in reversed(self.algo_orders):
            if "algoId" in q and str(a["algoId"]) == q["algoId"]:
                return a
            if "clientAlgoId" in q and a["clientAlgoId"] == q["clientAlgoId"]:
                return a
        return None

    def query_algo(self, q: dict[str, str]) -> tuple[int, Any]:
        a = self.find_algo(q)
        return (200, dict(a)) if a else err(-2013, "Order does not exist.")

    def cancel_algo(self, q: dict[str, str]) -> tuple[int, Any]:
        a = self.find_algo(q)
        if a is None or a["algoStatus"] != "NEW":
            return err(-2011, "Unknown order sent.")
        a.update(algoStatus="CANCELED", updateTime=self.now_ms())
        return 200, {"algoId": a["algoId"], "clientAlgoId": a["clientAlgoId"],
                     "code": "200", "msg": "success"}

    def open_algo_orders(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol")
        return 200, [dict(a) for a in self.algo_orders
                     if a["algoStatus"] == "NEW" and (sid is None or a["symbol"] == sid)]

    # ------------------------------------------------------------------ triggering

    def set_price(self, sid: str, price: float, mark: float | None = None) -> None:
        """Move the last (and mark) price; conditional orders the move crosses fire."""
        with self._lock:
            self.symbols[sid]["price"] = price
            self.symbols[sid]["mark"] = mark
            for a in [a for a in self.algo_orders
                      if a["symbol"] == sid and a["algoStatus"] == "NEW"]:
                if fires(a["orderType"], a["side"], self.working_price(a),
                         float(a["triggerPrice"])):
                    self._trigger(a)

    def _trigger(self, a: dict[str, Any]) -> None:
        sid, side = a["symbol"], a["side"]
        now = self.now_ms()
        a.update(algoStatus="TRIGGERED", triggerTime=now, updateTime=now)
        qty = float(a["quantity"])
        if a["closePosition"]:
            qty = abs(self.positions[sid]["amt"])
        reduce = a["closePosition"] or a["reduceOnly"]
        if reduce:
            cut = self.reduce_only_qty(sid, side, qty) if qty > 0 else None
            if cut is None:
                a["algoStatus"] = "EXPIRED"
                return
            qty = cut
        order = self.place(sid, side, "MARKET", qty, 0.0, f"algo-{a['algoId']}", reduce,
                           {}, orig_type=a["orderType"])
        order["stopPrice"] = a["triggerPrice"]
        order["workingType"] = a["workingType"]
        order["closePosition"] = a["closePosition"]
        a.update(algoStatus="FINISHED", actualOrderId=str(order["orderId"]),
                 actualPrice=order["avgPrice"])
