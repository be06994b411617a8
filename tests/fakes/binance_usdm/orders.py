"""USD-M regular orders (``/fapi/v1/order``) and what a fill does to the account.

From "New Order (TRADE)" ``POST /fapi/v1/order`` (developers.binance.com/docs/derivatives/
usds-margined-futures/trade/rest-api/New-Order) and the USD-M "Error Codes" page
(.../usds-margined-futures/error-code):
- ``newOrderRespType`` ACK (the default: status NEW, nothing executed yet in the answer) or
  RESULT (the final state of a MARKET order: FILLED, ``avgPrice``, ``executedQty``,
  ``cumQuote``); ccxt sends RESULT. Every order carries ``positionSide`` (BOTH in one-way
  mode), ``reduceOnly``, ``closePosition``, ``origType``, ``workingType``.
- Since 2025-12-09 the conditional types (STOP, STOP_MARKET, TAKE_PROFIT,
  TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET) are refused here with -4120 "Order type not
  supported for this endpoint. Please use the Algo Order API endpoints instead." (change
  log, 2025-11-06 entry: "USDⓈ-M Futures will migrate conditional orders to the Algo
  Service"); they go to ``POST /fapi/v1/algoOrder`` (``algo``).
- ``reduceOnly=true`` may only reduce: on a flat position, or on the side that would grow
  the position, -2022 "ReduceOnly Order is rejected."; a reduce-only order larger than
  the position is cut to it. -4164 "Order's notional must be no smaller than 100 (unless
  you choose reduce only)." (the symbol's ``MIN_NOTIONAL``). -2019 "Margin is
  insufficient." when the initial margin (notional / leverage) of what the order opens
  exceeds the available balance. -1111 "Precision is over the maximum defined for this
  asset." for a quantity off the step; -4014 "Price not increased by tick size.";
  -4005 "Quantity greater than max quantity." (``MARKET_LOT_SIZE`` for MARKET);
  -4061 "Order's position side does not match user's setting." (positionSide other than
  BOTH in one-way mode, or missing in hedge mode); -4116 "ClientOrderId is duplicated."
  for an id of an open order; -2013 "Order does not exist." (query); -2011 "Unknown
  order sent." (cancel).
- A MARKET order that cannot fill in full (``("partial", f)`` scripted) ends EXPIRED with
  the part executed, as Binance's MARKET orders do when liquidity runs out.
- "Account Trade List" ``GET /fapi/v1/userTrades``: ``realizedPnl``, ``commission`` in
  ``commissionAsset`` USDT, ``buyer``, ``maker``, ``positionSide``. The page's example
  shows a negative commission; this fake reports it positive, as spot does and as ccxt's
  fee parsing expects (a choice: the page gives no rule).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fakes.binance_loopback import find_order, fmt
from fakes.binance_usdm.market import CONDITIONAL_TYPES

TAKER, MAKER = 0.0005, 0.0002
OPEN = ("NEW", "PARTIALLY_FILLED")


def err(code: int, msg: str) -> tuple[int, Any]:
    return 400, {"code": code, "msg": msg}


def off_grid(x: float, step: float) -> bool:
    return abs(x / step - round(x / step)) > 1e-6


class Orders:
    symbols: dict[str, dict[str, Any]]
    positions: dict[str, dict[str, float]]
    leverage: dict[str, int]
    margin_type: dict[str, str]
    dual_side: bool
    wallet: float
    _lock: threading.RLock
    on_order: Callable[[dict[str, Any]], None] | None

    def now_ms(self) -> int:
        raise NotImplementedError

    def available(self) -> float:
        raise NotImplementedError

    def book_income(self, sid: str, kind: str, amount: float, trade_id: Any = "",
                    info: str = "") -> None:
        raise NotImplementedError

    def init_orders(self) -> None:
        self.orders: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []
        self._next_order = 4_000_000
        self._next_trade = 7_000_000

    # ------------------------------------------------------------------ checks

    def check_order(self, q: dict[str, str], otype: str) -> tuple[int, Any] | None:
        """What Binance refuses before looking at the book; None when it passes."""
        sid = q.get("symbol", "")
        s = self.symbols.get(sid)
        if s is None:
            return err(-1121, "Invalid symbol.")
        side_param = q.get("positionSide")
        if (self.dual_side and side_param in (None, "BOTH")) or (
                not self.dual_side and side_param not in (None, "BOTH")):
            return err(-4061, "Order's position side does not match user's setting.")
        qty = float(q.get("quantity", "0"))
        if qty <= 0:
            return err(-4003, "Quantity less than or equal to zero.")
        if off_grid(qty, float(s["step"])):
            return err(-1111, "Precision is over the maximum defined for this asset.")
        max_qty = s["market_max_qty"] if otype == "MARKET" else s["max_qty"]
        if qty > float(max_qty):
            return err(-4005, "Quantity greater than max quantity.")
        if "price" in q and off_grid(float(q["price"]), float(s["tick"])):
            return err(-4014, "Price not increased by tick size.")
        return None

    def reduce_only_qty(self, sid: str, side: str, qty: float) -> float | None:
        """The quantity a reduce-only order may trade, None when it would not reduce."""
        amt = self.positions[sid]["amt"]
        if amt == 0 or (amt > 0) == (side == "BUY"):
            return None
        return min(qty, abs(amt))

    def margin_needed(self, sid: str, side: str, qty: float, price: float) -> float:
        amt = self.positions[sid]["amt"]
        signed = qty if side == "BUY" else -qty
        opened = max(abs(amt + signed) - abs(amt), 0.0)
        return opened * price / self.leverage[sid] + qty * price * TAKER

    # ------------------------------------------------------------------ new order

    def new_order(self, q: dict[str, str], partial: float | None) -> tuple[int, Any]:
        otype = q.get("type", "")
        if otype in CONDITIONAL_TYPES:
            return err(-4120, "Order type not supported for this endpoint. Please use the "
                              "Algo Order API endpoints instead.")
        if otype not in ("MARKET", "LIMIT"):
            return err(-1116, "Invalid orderType.")
        problem = self.check_order(q, otype)
        if problem is not None:
            return problem
        sid, side = q["symbol"], q.get("side", "")
        s = self.symbols[sid]
        qty = float(q["quantity"])
        reduce_only = q.get("reduceOnly", "false").lower() == "true"
        price = float(q["price"]) if otype == "LIMIT" else float(s["price"])
        coid = q.get("newClientOrderId") or f"web_{self._next_order + 1}"
        with self._lock:
            if any(o["clientOrderId"] == coid and o["status"] in OPEN for o in self.orders):
                return err(-4116, "ClientOrderId is duplicated.")
            if reduce_only:
                cut = self.reduce_only_qty(sid, side, qty)
                if cut is None:
                    return err(-2022, "ReduceOnly Order is rejected.")
                qty = cut
            elif qty * price < float(s["min_notional"]) - 1e-9:
                return err(-4164, f"Order's notional must be no smaller than "
                                  f"{s['min_notional']} (unless you choose reduce only).")
            if not reduce_only and self.margin_needed(sid, side, qty, price) > self.available():
                return err(-2019, "Margin is insufficient.")
            order = self.place(sid, side, otype, qty, price, coid, reduce_only, q, partial)
        if self.on_order is not None:
            self.on_order(order)
        if q.get("newOrderRespType", "ACK") == "ACK":
            return 200, {**self.view(order), "status": "NEW", "executedQty": "0",
                         "cumQty": "0", "cumQuote": "0", "avgPrice": "0.00"}
        return 200, self.view(order)

    def place(self, sid: str, side: str, otype: str, qty: float, price: float, coid: str,
              reduce_only: bool, q: dict[str, str], partial: float | None = None,
              orig_type: str | None = None) -> dict[str, Any]:
        """Accept an order and trade what is marketable (MARKET: all, at the last price)."""
        s = self.symbols[sid]
        self._next_order += 1
        now = self.now_ms()
        order: dict[str, Any] = {
            "orderId": self._next_order, "symbol": sid, "status": "NEW",
            "clientOrderId": coid, "price": fmt(price if otype == "LIMIT" else 0.0, 2),
            "avgPrice": "0.00", "origQty": fmt(qty, 3), "executedQty": "0.000",
            "cumQty": "0.000", "cumQuote": "0.00000", "timeInForce": q.get("timeInForce", "GTC"),
            "type": otype, "reduceOnly": reduce_only, "closePosition": False, "side": side,
            "positionSide": "BOTH", "stopPrice": "0.00", "workingType": "CONTRACT_PRICE",
            "priceProtect": False, "origType": orig_type or otype, "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
            "time": now, "updateTime": now}
        self.orders.append(order)
        last = float(s["price"])
        marketable = otype == "MARKET" or (side == "BUY" and price >= last) or (
            side == "SELL" and price <= last)
        if marketable:
            step = float(s["step"])
            part = qty if partial is None else round(int(qty * partial / step + 1e-6) * step, 8)
            if part > 0:
                self.fill(order, part, last, maker=False)
            if otype == "MARKET" and part < qty - 1e-12:
                order["status"] = "EXPIRED"
        return order

    def fill(self, order: dict[str, Any], qty: float, price: float, *, maker: bool) -> None:
        """One trade of ``order``: the position netted, PnL realised on what it reduces,
        the commission charged in USDT; each booked in the income history."""
        sid, side = order["symbol"], order["side"]
        p = self.positions[sid]
        signed = qty if side == "BUY" else -qty
        amt, realized = p["amt"], 0.0
        if amt == 0 or (amt > 0) == (signed > 0):
            p["entry"] = (abs(amt) * p["entry"] + qty * price) / (abs(amt) + qty)
            p["margin"] += qty * price / self.leverage[sid]
        else:
            closed = min(qty, abs(amt))
            realized = closed * (price - p["entry"]) * (1 if amt > 0 else -1)
            p["margin"] -= p["margin"] * closed / abs(amt)
            if qty > abs(amt):  # flipped: the rest opens the other side at this price
                p["entry"], p["margin"] = price, (qty - closed) * price / self.leverage[sid]
        p["amt"] = round(amt + signed, 8)
        if p["amt"] == 0:
            p["entry"], p["margin"] = 0.0, 0.0
        p["update"] = self.now_ms()
        commission = qty * price * (MAKER if maker else TAKER)
        self.wallet += realized - commission
        self._next_trade += 1
        self.trades.append({
            "buyer": side == "BUY", "commission": fmt(commission), "commissionAsset": "USDT",
            "id": self._next_trade, "maker": maker, "orderId": order["orderId"],
            "price": fmt(price, 2), "qty": fmt(qty, 3), "quoteQty": fmt(qty * price),
            "realizedPnl": fmt(realized), "side": side, "positionSide": "BOTH",
            "symbol": sid, "time": self.now_ms()})
        if realized:
            self.book_income(sid, "REALIZED_PNL", realized, self._next_trade)
        self.book_income(sid, "COMMISSION", -commission, self._next_trade)
        executed = float(order["executedQty"]) + qty
        quote = float(order["cumQuote"]) + qty * price
        order.update(executedQty=fmt(executed, 3), cumQty=fmt(executed, 3),
                     cumQuote=fmt(quote, 5), avgPrice=fmt(quote / executed, 5),
                     updateTime=self.now_ms(),
                     status="FILLED" if executed >= float(order["origQty"]) - 1e-12
                     else "PARTIALLY_FILLED")

    def fill_resting(self, client_order_id: str, fraction: float = 1.0) -> None:
        """A resting LIMIT order trades at its price (a maker fill)."""
        with self._lock:
            [o] = [o for o in self.orders if o["clientOrderId"] == client_order_id
                   and o["status"] in OPEN]
            step = float(self.symbols[o["symbol"]]["step"])
            left = float(o["origQty"]) - float(o["executedQty"])
            self.fill(o, round(int(left * fraction / step + 1e-6) * step, 8),
                      float(o["price"]), maker=True)

    # ------------------------------------------------------------------ queries

    def view(self, o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if not k.startswith("_")}

    def query_order(self, q: dict[str, str]) -> tuple[int, Any]:
        o = find_order(self.orders, q)
        return (200, self.view(o)) if o else err(-2013, "Order does not exist.")

    def cancel_order(self, q: dict[str, str]) -> tuple[int, Any]:
        o = find_order(self.orders, q)
        if o is None or o["status"] not in OPEN:
            return err(-2011, "Unknown order sent.")
        o.update(status="CANCELED", updateTime=self.now_ms())
        return 200, self.view(o)

    def open_orders(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol")
        return 200, [self.view(o) for o in self.orders
                     if o["status"] in OPEN and (sid is None or o["symbol"] == sid)]

    def all_orders(self, q: dict[str, str]) -> tuple[int, Any]:
        start = int(q.get("startTime", 0))
        rows = [self.view(o) for o in self.orders
                if o["symbol"] == q.get("symbol") and o["time"] >= start]
        return 200, rows[: int(q.get("limit", 500))]

    def user_trades(self, q: dict[str, str]) -> tuple[int, Any]:
        start = int(q.get("startTime", 0))
        rows = [t for t in self.trades
                if t["symbol"] == q.get("symbol") and t["time"] >= start
                and ("orderId" not in q or str(t["orderId"]) == q["orderId"])]
        return 200, rows[: int(q.get("limit", 500))]
