"""Where a spot order leaves the process for the exchange, and what its answer means.

Our client order id travels as the unified ``clientOrderId`` param (ccxt sends it as
Binance's ``newClientOrderId``) and comes back through
``fetch_order(..., {"origClientOrderId": id})``, which is how an order whose outcome we do
not know is found without sending it again.

Error mapping on submit (``ccxt_errors``: by Binance's error code; the table is in
docs/brokers.md): network or server-side (``RequestTimeout``, 5xx, -1007 ...) ->
``unknown``, settled by lookup, never re-sent; -1021 (timestamp) -> time resynced and sent
once more with the *same* client id (the exchange refused the first, nothing was placed);
a refusal (-1013 filters, 11xx parameters and precision, -2010 insufficient balance, key
and signature errors) -> ``rejected`` with the reason, not retried; a rate limit (HTTP 429
/ 418, -1003, -1015: refused, per Binance's "HTTP Return Codes") -> ``rejected``; -2010
"Duplicate order sent." -> ``unknown`` (an open order with our id exists: lookup adopts
it); anything else ``unknown``.

A sell that would exceed our long is cut to what we hold: a closing sell must neither
fail for the fee's dust nor sell inventory that is not ours. Binance spot attaches no
stop or target to an order: a long's exits are orders of their own (an OCO,
``ccxt_spot_protect``), placed after the entry fills through ``place_protection``, and
listed by ``protective_orders`` rather than ``open_orders``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from domain import Order, OrderIntent, OrderSide, OrderState, OrderType, Position
from domain.errors import PermanentVenueError, VenueError
from domain.orders import protected_entry
from executor.brokers.base import BrokerOrder
from executor.brokers.ccxt_errors import Outcome, classify
from executor.brokers.ccxt_exchange import ExchangeReader, ccxt_module
from executor.brokers.ccxt_ids import OrderIds
from executor.brokers.ccxt_markets import MarketRules

log = structlog.get_logger("dta.ccxt")


class CcxtOrders:
    def __init__(self, reader: ExchangeReader, ids: OrderIds, rules: MarketRules, *,
                 position: Callable[[str], Position],
                 last_close: Callable[[str], float | None],
                 answered: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        self._reader = reader
        self.exchange = reader.exchange
        self._ids = ids
        self._rules = rules
        self._position = position
        self._last_close = last_close
        self._answered = answered  # sees each answer (spot: the fills it carries)

    # ------------------------------------------------------------------ submit

    def submit(self, order: Order) -> Order:
        """Send a ``submitting`` order; any outcome is its next state, never an error."""
        checked = self._checked(order)
        if isinstance(checked, Order):
            return checked
        amount, price, note = checked
        response = self._create(order, amount, price)
        if isinstance(response, Order):
            return response
        return self.sent(order, response, note)

    def _checked(self, order: Order) -> tuple[float, float | None, str] | Order:
        """The amount and price to send and a note for the order's reason, or the order
        rejected for what the market would refuse (nothing sent)."""
        intent = order.intent
        precise = self._precise(order, "stop orders are not supported on spot")
        if isinstance(precise, Order):
            return precise
        market, amount, price = precise
        cut = ""
        if intent.side is OrderSide.SELL:
            amount, cut = self._sell_amount(intent.symbol, amount)
        refused = self._rules.below_minimum(
            market, amount, price or self._last_close(intent.symbol))
        if refused is not None:
            return order.transition(OrderState.REJECTED, reason=refused)
        return amount, price, cut

    def _precise(self, order: Order, no_stops: str
                 ) -> tuple[Mapping[str, Any], float, float | None] | Order:
        """The market, amount and price as the exchange accepts them written; or the order
        rejected (nothing sent) for a precision it cannot meet, a stop entry (``no_stops``
        says why), a limit without a price."""
        c = ccxt_module()
        intent = order.intent
        try:
            market, amount, price = self._rules.to_precision(intent)
        except (VenueError, c.BaseError) as exc:
            return order.transition(OrderState.REJECTED, reason=f"not sent: {exc}")
        if intent.order_type is OrderType.STOP:
            return order.transition(OrderState.REJECTED, reason=f"not sent: {no_stops}")
        if intent.order_type is OrderType.LIMIT and price is None:
            return order.transition(OrderState.REJECTED, reason="not sent: limit without price")
        return market, amount, price

    def _create(self, order: Order, amount: float, price: float | None,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any] | Order:
        """The exchange's answer, or the order in the state its error means.
        ``extra``: more unified params (a swap's ``reduceOnly``)."""
        intent = order.intent
        otype = "market" if intent.order_type is OrderType.MARKET else "limit"
        params = {**(extra or {}), "clientOrderId": intent.client_order_id}
        answer = self.send([order], lambda: self.exchange.create_order(
            intent.symbol, otype, intent.side.value, amount, price, params))
        return answer[0] if isinstance(answer, list) else answer

    def send(self, orders: Sequence[Order], call: Callable[[], dict[str, Any]]
             ) -> dict[str, Any] | list[Order]:
        """Send what places ``orders`` (one order, or the legs of one order list): the
        exchange's answer, or each order in the state its error means. A timestamp
        refusal placed nothing: the time is resynced and the same ids sent once more."""
        c = ccxt_module()
        futures = self._reader.futures
        for attempt in range(2):
            try:
                return call()
            except Exception as exc:  # every outcome is mapped below
                nonce = (isinstance(exc, c.BaseError)
                         and classify(exc, futures=futures).outcome is Outcome.TIMESTAMP)
                if nonce and attempt == 0:
                    self._reader.resync_time()
                    continue
                return [_submit_error(o, exc, nonce, futures) for o in orders]
        raise AssertionError("unreachable: the second attempt returns")

    def sent(self, order: Order, response: Mapping[str, Any], note: str) -> Order:
        """The order as the exchange's answer to its send leaves it (``note`` joins its
        reason)."""
        intent = order.intent
        seen = self.from_ccxt(intent, response)
        if self._answered is not None:
            self._answered(response)
        changes = dict(filled_volume=seen.filled_volume, avg_fill_price=seen.avg_fill_price,
                       broker_order_id=seen.broker_order_id, reason=_join(seen.reason, note))
        if seen.state is OrderState.CANCELLED:
            # Done at once without filling in full (a market order out of liquidity ends
            # EXPIRED): partially filled then cancelled, or, with no fill, rejected.
            if seen.filled_volume > 0:
                result = order.transition(OrderState.PARTIALLY_FILLED, **changes).transition(
                    OrderState.CANCELLED)
            else:
                result = order.transition(OrderState.REJECTED, **changes)
        else:
            result = order.transition(seen.state, **changes)
        log.info("ccxt_order_sent", client_order_id=intent.client_order_id,
                 state=result.state.value, exchange_order_id=result.broker_order_id)
        return result

    _sent = sent  # the name the swap's orders (``ccxt_swap_orders``) call it by

    def _sell_amount(self, symbol: str, amount: float) -> tuple[float, str]:
        """A sell cut to our long when we hold less than it asks: after a buy whose fee was
        paid in the base asset we hold a little less than we bought, and the rest of the
        account's base asset is not ours to sell. With no long of ours the order goes as
        asked (the exchange judges the balance); when our holding cannot be read it goes
        as asked too, and the exchange refuses what the account cannot cover."""
        try:
            held = self._position(symbol).volume
        except VenueError as exc:
            log.warning("ccxt_holding_unknown", symbol=symbol, error=str(exc)[:200])
            return amount, ""
        if held <= 0 or amount <= held + 1e-12:
            return amount, ""
        cut = float(self.exchange.amount_to_precision(symbol, held))
        return cut, f"sell cut from {amount:.8g} to our holding {held:.8g}"

    # ------------------------------------------------------------------ lookup

    def lookup(self, client_order_id: str) -> Order | None:
        found = self.fetch(client_order_id)
        if found is None:
            return None
        return self.from_ccxt(self._ids.intents.get(client_order_id), found,
                              client_order_id)

    def fetch(self, client_order_id: str) -> dict[str, Any] | None:
        """The exchange's order (ccxt's structure) with our client id, on the symbol we
        sent it to (else each configured one); None when no symbol has it."""
        c = ccxt_module()
        symbol = self._ids.symbol_of.get(client_order_id)
        symbols = [symbol] if symbol else list(self._reader.settings.symbols)
        if not symbols:
            raise PermanentVenueError(
                f"cannot look up {client_order_id}: its symbol is unknown")
        self._reader.ensure_markets()
        for sym in symbols:
            try:
                found: dict[str, Any] = self._reader.read(
                    "fetch_order", self.exchange.fetch_order, None, sym,
                    {"origClientOrderId": client_order_id})
            except c.OrderNotFound:
                continue
            except c.BaseError as exc:
                raise PermanentVenueError(
                    f"{self._reader.name} fetch_order {client_order_id}: {exc}") from None
            self._ids.symbol_of[client_order_id] = sym
            return found
        return None

    def from_ccxt(self, intent: OrderIntent | None, o: Mapping[str, Any],
                  coid: str | None = None) -> Order:
        """A ccxt order as ours (its exchange id remembered for the trades that name it)."""
        coid = coid or str(o.get("clientOrderId") or "")
        if o.get("id") is not None:
            self._ids.coid_of[str(o["id"])] = coid
        return _order(intent if intent is not None else _foreign_intent(coid, o), o)

    def open_orders(self) -> list[BrokerOrder]:
        self._reader.ensure_markets()
        out: list[BrokerOrder] = []
        for sym in self._ids.symbols():
            for o in self._reader.read("fetch_open_orders", self.exchange.fetch_open_orders,
                                       sym):
                coid = str(o.get("clientOrderId") or "") or None
                if self._ids.is_ours(coid) and protected_entry(coid or "") is not None:
                    continue  # a protective leg of ours: ``protective_orders`` lists it
                state = self.from_ccxt(self._ids.intents.get(coid or ""), o, coid).state
                out.append(BrokerOrder(
                    coid, str(o["id"]), sym, OrderSide(str(o.get("side") or "buy")),
                    float(o.get("amount") or 0.0), float(o.get("filled") or 0.0), state,
                    ours=self._ids.is_ours(coid), price=o.get("price"),
                    time=datetime.fromtimestamp((o.get("timestamp") or 0) / 1000, UTC)))
        return out


def _foreign_intent(coid: str, o: Mapping[str, Any]) -> OrderIntent:
    """The intent of an order this process did not send, as the exchange lists it."""
    return OrderIntent(
        coid, "", str(o.get("symbol") or ""), OrderSide(str(o.get("side") or "buy")),
        float(o.get("amount") or 0.0),
        OrderType.LIMIT if o.get("type") == "limit" else OrderType.MARKET,
        datetime.fromtimestamp((o.get("timestamp") or 0) / 1000, UTC),
        price=o.get("price"))


def _order(intent: OrderIntent, o: Mapping[str, Any]) -> Order:
    """ccxt's unified order status as our order state."""
    status = o.get("status")
    filled = float(o.get("filled") or 0.0)
    average = o.get("average")
    avg = float(average) if average else None
    oid = str(o["id"]) if o.get("id") is not None else None
    if status == "closed":
        return Order(intent, OrderState.FILLED, filled_volume=filled, avg_fill_price=avg,
                     broker_order_id=oid)
    if status in ("canceled", "expired"):
        amount = float(o.get("amount") or 0.0)
        reason = (f"{status} after a partial fill {filled} of {amount}" if filled > 0
                  else f"{status} at the exchange")
        return Order(intent, OrderState.CANCELLED, filled_volume=filled,
                     avg_fill_price=avg, broker_order_id=oid, reason=reason)
    if status == "rejected":
        return Order(intent, OrderState.REJECTED, broker_order_id=oid,
                     reason="rejected by the exchange")
    state = OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.ACCEPTED
    return Order(intent, state, filled_volume=filled, avg_fill_price=avg,
                 broker_order_id=oid)


def _submit_error(order: Order, exc: BaseException, nonce: bool,
                  futures: bool = False) -> Order:
    """An error from ``create_order`` as the order's next state (``futures``: the USD-M
    codes count, so -2019, -2022, -4164 are refusals, not unknown outcomes)."""
    c = ccxt_module()
    text = f"{exc.__class__.__name__}: {str(exc)[:300]}"
    if nonce:
        return order.transition(OrderState.REJECTED,
                                reason=f"timestamp outside recvWindow after a time "
                                       f"resync: {text}")
    if not isinstance(exc, c.BaseError):
        return order.transition(OrderState.UNKNOWN, reason=f"outcome unknown: {text}")
    outcome = classify(exc, futures=futures).outcome
    if outcome is Outcome.DUPLICATE:
        # An open order with our client id exists: ours. Lookup adopts it.
        return order.transition(OrderState.UNKNOWN, reason=f"duplicate id: {text}")
    if outcome is Outcome.REJECTED:
        return order.transition(OrderState.REJECTED, reason=text)
    if outcome is Outcome.RATE_LIMITED:
        # A 4XX answer: refused before it was placed ("HTTP Return Codes").
        return order.transition(OrderState.REJECTED,
                                reason=f"rate limited by the exchange, not placed: {text}")
    return order.transition(OrderState.UNKNOWN, reason=f"outcome unknown: {text}")


def _join(a: str, b: str) -> str:
    return "; ".join(x for x in (a, b) if x)
