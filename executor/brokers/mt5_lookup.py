"""Our orders as the terminal lists them: found by their comment token, never re-sent.

An order whose outcome we do not know (a timeout, a lost link, a crash between journal and
answer) is looked for among the working orders, then the history, then the open
positions (a position can show before its order reaches the history). On a hedging
account one order of ours may be several requests (tickets closed by name, then the
rest): their deals are summed into one order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from domain import Order, OrderIntent, OrderSide, OrderState, OrderType
from executor.brokers import mt5_client as C
from executor.brokers.base import BrokerOrder
from executor.brokers.mt5_client import Mt5Client
from executor.brokers.mt5_ids import OrderMarks

log = structlog.get_logger("dta.mt5")

_ACTIVE_STATES = {C.ORDER_STATE_STARTED: OrderState.ACCEPTED,
                  C.ORDER_STATE_PLACED: OrderState.ACCEPTED,
                  C.ORDER_STATE_REQUEST_ADD: OrderState.ACCEPTED,
                  C.ORDER_STATE_REQUEST_MODIFY: OrderState.ACCEPTED,
                  C.ORDER_STATE_REQUEST_CANCEL: OrderState.ACCEPTED,
                  C.ORDER_STATE_PARTIAL: OrderState.PARTIALLY_FILLED}
_BUY_TYPES = frozenset({C.ORDER_TYPE_BUY, C.ORDER_TYPE_BUY_LIMIT, C.ORDER_TYPE_BUY_STOP})

Window = Callable[[], tuple[int, int]]  # the history window, in server epoch seconds


class Mt5Lookup:
    def __init__(self, client: Mt5Client, marks: OrderMarks, *, window: Window,
                 hedging: Callable[[], bool], to_utc: Callable[[float], datetime]) -> None:
        self.client = client
        self._marks = marks
        self._window = window
        self._hedging = hedging
        self._to_utc = to_utc

    def lookup(self, client_order_id: str) -> Order | None:
        """Find our order by its comment token across open orders, history and positions."""
        marks = self._marks
        token = marks.token(client_order_id)  # a malformed id fails before any call
        active = [o for o in self.client.orders_get() if marks.ours(o)
                  and marks.client_id_of(o) == client_order_id]
        if active:
            return self._order_from_mt5(client_order_id, active[0], active=True)
        lo, hi = self._window()
        history = [o for o in self.client.history_orders_get(lo, hi) if marks.ours(o)
                   and marks.client_id_of(o) == client_order_id]
        history.sort(key=lambda o: (int(o.get("time_setup_msc") or 0),
                                    int(o.get("ticket") or 0)))
        if len(history) > 1 and self._hedging():
            return self._order_from_legs(client_order_id, history)
        if len(history) > 1:
            log.error("mt5_duplicate_comment", client_order_id=client_order_id,
                      tickets=[o.get("ticket") for o in history])
        if history:
            return self._order_from_mt5(client_order_id, history[0], active=False)
        return self._from_position(client_order_id, token)

    def _from_position(self, client_order_id: str, token: str) -> Order | None:
        """The position exists though its order is not (yet) in history."""
        for p in self.client.positions_get():
            if self._marks.ours(p) and str(p.get("comment", "")).startswith(token):
                intent = self._intent_for(client_order_id, p, is_position=True)
                return Order(intent, OrderState.FILLED, filled_volume=float(p["volume"]),
                             avg_fill_price=float(p["price_open"]),
                             broker_order_id=str(p["ticket"]),
                             reason="found as an open position")
        return None

    def _order_from_legs(self, coid: str, legs: list[dict[str, Any]]) -> Order:
        """One order of ours sent as several requests on a hedging account (closes by
        ticket, then the rest: ``Mt5Orders._submit_legs``): the sum of their deals."""
        parts = [self._order_from_mt5(coid, o, active=False) for o in legs]
        intent = self._intent_for(coid, legs[0])
        filled = round(sum(p.filled_volume for p in parts), 8)
        cost = sum(p.filled_volume * (p.avg_fill_price or 0.0) for p in parts)
        avg = cost / filled if filled > 0 else None
        wanted = intent.volume if coid in self._marks.intents else sum(
            float(o.get("volume_initial") or 0.0) for o in legs)
        ticket = parts[-1].broker_order_id
        if filled >= wanted - 1e-9 or all(p.state is OrderState.FILLED for p in parts):
            return Order(intent, OrderState.FILLED, filled_volume=filled, avg_fill_price=avg,
                         broker_order_id=ticket)
        return Order(intent, OrderState.CANCELLED, filled_volume=filled, avg_fill_price=avg,
                     broker_order_id=ticket,
                     reason=f"partially filled {filled:g} of {wanted:g}, remainder not sent "
                            "or cancelled")

    def _intent_for(self, coid: str, item: dict[str, Any], *,
                    is_position: bool = False) -> OrderIntent:
        """The intent we sent (in this process, or the journal's after ``restore``), else
        the one the terminal's row describes."""
        known = self._marks.intents.get(coid)
        if known is not None:
            return known
        mt5_type = int(item.get("type", 0))
        buy = (mt5_type == C.POSITION_TYPE_BUY) if is_position else mt5_type in _BUY_TYPES
        order_type = (OrderType.MARKET if is_position or mt5_type in (C.ORDER_TYPE_BUY,
                                                                     C.ORDER_TYPE_SELL)
                      else OrderType.LIMIT if mt5_type in (C.ORDER_TYPE_BUY_LIMIT,
                                                           C.ORDER_TYPE_SELL_LIMIT)
                      else OrderType.STOP)
        volume = float(item.get("volume_initial") or item.get("volume") or 0.0)
        t = item.get("time_setup") or item.get("time") or 0
        return OrderIntent(coid, "", str(item.get("symbol", "")),
                           OrderSide.BUY if buy else OrderSide.SELL, volume, order_type,
                           self._to_utc(float(t)),
                           price=float(item.get("price_open") or 0.0) or None)

    def _order_from_mt5(self, coid: str, o: dict[str, Any], *, active: bool) -> Order:
        intent = self._intent_for(coid, o)
        ticket = str(o.get("ticket"))
        initial = float(o.get("volume_initial") or 0.0)
        state_code = int(o.get("state", -1))
        if active:
            state = _ACTIVE_STATES.get(state_code, OrderState.ACCEPTED)
            filled = round(initial - float(o.get("volume_current") or 0.0), 8)
            return Order(intent, state, filled_volume=filled, broker_order_id=ticket)
        deals = self.client.history_deals_get(ticket=int(o["ticket"]))
        filled = sum(float(d["volume"]) for d in deals)
        avg = (sum(float(d["volume"]) * float(d["price"]) for d in deals) / filled
               if filled > 0 else None)
        if state_code == C.ORDER_STATE_FILLED:
            return Order(intent, OrderState.FILLED, filled_volume=filled or initial,
                         avg_fill_price=avg or float(o.get("price_current") or 0.0) or None,
                         broker_order_id=ticket)
        if state_code in (C.ORDER_STATE_PARTIAL, C.ORDER_STATE_CANCELED,
                          C.ORDER_STATE_EXPIRED):
            reason = (f"partially filled {filled} of {initial}, remainder cancelled"
                      if filled > 0 else "cancelled or expired at the broker")
            return Order(intent, OrderState.CANCELLED, filled_volume=filled,
                         avg_fill_price=avg, broker_order_id=ticket, reason=reason)
        if state_code == C.ORDER_STATE_REJECTED:
            return Order(intent, OrderState.REJECTED, broker_order_id=ticket,
                         reason="rejected by the trade server")
        return Order(intent, OrderState.ACCEPTED, filled_volume=filled, avg_fill_price=avg,
                     broker_order_id=ticket)

    def open_orders(self) -> list[BrokerOrder]:
        """Working orders, ours and foreign (the EA's: ``ours`` False, no client id)."""
        out: list[BrokerOrder] = []
        for o in self.client.orders_get():
            ours = self._marks.ours(o)
            coid = self._marks.client_id_of(o) if ours else None
            state = _ACTIVE_STATES.get(int(o.get("state", -1)), OrderState.ACCEPTED)
            initial = float(o.get("volume_initial") or 0.0)
            out.append(BrokerOrder(
                coid, str(o["ticket"]), str(o["symbol"]),
                OrderSide.BUY if int(o.get("type", 0)) in _BUY_TYPES else OrderSide.SELL,
                initial, round(initial - float(o.get("volume_current") or 0.0), 8), state,
                ours=ours, price=float(o.get("price_open") or 0.0) or None,
                time=self._to_utc(float(o.get("time_setup") or 0))))
        return out
