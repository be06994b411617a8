"""Where a swap order leaves the process: as spot's (``ccxt_orders``: our client id,
lookup by it, the error table), plus what a one-way futures account needs.

Closes and reductions go ``reduceOnly`` (Binance USD-M "New Order": "reduceOnly ... true
or false"; -2022 "ReduceOnly Order is rejected." when there is nothing to reduce). A
reduce-only order can only shrink the position, so a close sent after the position was
closed another way (a stop that fired at the exchange, a liquidation, an operator) is
refused instead of opening the other side. Which orders reduce is decided from the
exchange's position, read just before sending:
- an order against the position, no larger than it: a reduction (``reduceOnly``);
- an intent marked ``reduce_only`` larger than the position: cut to it, ``reduceOnly``;
- an intent marked ``reduce_only`` with nothing against it: rejected, nothing sent;
- otherwise an entry (or, larger than the position against it, a reversal the exchange
  nets in one-way mode), sent plain and judged against the market's minimum notional
  (Binance exempts reduce-only orders from -4164).
When the position cannot be read the order is rejected, nothing sent: a close sent plain
on a position that is already gone would open the other side.

An entry's stop-loss and take-profit are not sent with it: once it fills the engine places
them as orders of their own (``ccxt_swap_protect``, ``executor/engine/protection.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain import Order, OrderIntent, OrderSide, OrderState
from domain.errors import VenueError
from executor.brokers.ccxt_exchange import ExchangeReader
from executor.brokers.ccxt_ids import OrderIds
from executor.brokers.ccxt_markets import MarketRules
from executor.brokers.ccxt_orders import CcxtOrders
from executor.brokers.ccxt_swap_account import SwapAccount

EPS = 1e-12


class SwapOrders(CcxtOrders):
    def __init__(self, reader: ExchangeReader, ids: OrderIds, rules: MarketRules, *,
                 account: SwapAccount, last_close: Callable[[str], float | None]) -> None:
        super().__init__(reader, ids, rules, position=account.position,
                         last_close=last_close)
        self._account = account

    def submit(self, order: Order) -> Order:
        """Send a ``submitting`` order; any outcome is its next state, never an error."""
        checked = self._swap_checked(order)
        if isinstance(checked, Order):
            return checked
        amount, price, extra, note = checked
        response = self._create(order, amount, price, extra)
        if isinstance(response, Order):
            return response
        return self._sent(order, response, note)

    def _swap_checked(self, order: Order
                      ) -> tuple[float, float | None, dict[str, Any], str] | Order:
        """Amount, price, extra params and a note for the reason; or the order rejected
        for what would be refused or is unsafe to send (nothing sent)."""
        intent = order.intent
        precise = self._precise(order, "stop entries are not supported")
        if isinstance(precise, Order):
            return precise
        market, amount, price = precise
        try:
            held = self._account.position(intent.symbol).volume
        except VenueError as exc:
            return order.transition(OrderState.REJECTED, reason=(
                f"not sent: the {intent.symbol} position cannot be read ({exc}); a close "
                "sent blind could open the other side"))
        reduce, amount, note = self._reduction(intent, amount, held)
        if reduce is None:
            return order.transition(OrderState.REJECTED, reason=(
                f"not sent: reduce_only, but no {intent.symbol} position against a "
                f"{intent.side.value} to reduce"))
        if not reduce:
            refused = self._rules.below_minimum(
                market, amount, price or self._last_close(intent.symbol))
            if refused is not None:
                return order.transition(OrderState.REJECTED, reason=refused)
        return amount, price, ({"reduceOnly": True} if reduce else {}), note

    def _reduction(self, intent: OrderIntent, amount: float, held: float
                   ) -> tuple[bool | None, float, str]:
        """(reduce-only?, amount, note); None: a reduce-only intent with nothing to reduce."""
        against = abs(held) > EPS and (held > 0) == (intent.side is OrderSide.SELL)
        if against and amount <= abs(held) + EPS:
            return True, amount, ""
        if intent.reduce_only and against:
            cut = float(self.exchange.amount_to_precision(intent.symbol, abs(held)))
            return True, cut, f"reduce-only cut from {amount:.8g} to the position {cut:.8g}"
        if intent.reduce_only:
            return None, amount, ""
        return False, amount, ""
