"""A spot long's protective exits at the exchange: its stop-loss and take-profit as one
sell OCO (order list) Binance holds, so the long stays protected when the daemon, its
machine or the network goes away.

Binance spot attaches nothing to an order and holds no shorts, so the exits of a long are
sell orders of their own ("New Order list - OCO", ``POST /api/v3/orderList/oco``; ccxt
4.5.90 has no unified call for it and reaches it as ``privatePostOrderListOco``, the
deprecated ``POST /api/v3/order/oco`` never):
- the target is the *above* leg, a ``LIMIT_MAKER`` at the take-profit price
  (``aboveClientOrderId`` = the leg's id), and the stop the *below* leg, a
  ``STOP_LOSS_LIMIT`` triggered at the stop price (``belowClientOrderId``): Binance spot
  symbols enable no stop-market (``exchangeInfo`` ``orderTypes``). Once triggered it is a
  limit sell at ``stop x stop_limit_ratio`` (``[broker.ccxt]``, 0.99 as freqtrade's
  ``stoploss_on_exchange_limit_ratio``): a price that gaps below that limit leaves it
  resting unfilled, and ``lookup`` says so in the leg's reason (the leg stays
  ``accepted``: the position is *not* closed; the engine must decide);
- the list's own id (``listClientOrderId``) is the stop leg's id plus ``oco``: every id
  is deterministic, so after a crash the legs are found by id, never placed twice (an open
  id is refused: -2010 "Duplicate order sent.", which leaves the legs ``unknown`` for a
  lookup);
- only a stop: a lone ``STOP_LOSS_LIMIT``; only a target: a lone ``LIMIT_MAKER`` (not a
  plain ``LIMIT``: a target the price already passed is refused, -2010 "Order would
  immediately match and take.", as in an OCO, instead of selling at once);
- the quantity is what the account holds free of the base asset, at most the leg's
  volume, rounded down to the step: the buy's commission came out of the base asset
  (0.01 BTC bought holds 0.00999), and a sell of more is refused for the balance;
- a refusal is the legs' rejection with the venue's reason: the price already past a leg
  (-2010 "The relationship of the prices for the orders is not correct.", "Order would
  trigger immediately."), a filter (-1013), the balance; no answer leaves them
  ``unknown`` (looked up, never re-sent). Both legs of a list share its fate.
When a leg executes, Binance expires the other (spot glossary, "OCO"; expiry reason
``OCO_TRIGGER``); its trades name the leg's exchange order, mapped here to the leg's id,
and ``credited`` books them against the entry as a ``stop_loss`` / ``take_profit`` exit.
While the OCO works it *locks* the base asset: a market sell of the long is refused for
the balance until the OCO is cancelled (``cancel`` cancels the whole list,
``DELETE /api/v3/orderList``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from domain import Order, OrderIntent, OrderSide, OrderState
from domain.errors import VenueError
from domain.orders import ORDER_TRANSITIONS, PROTECTIVE_TYPE, protected_entry
from executor.brokers.base import BrokerFill, BrokerOrder
from executor.brokers.ccxt_errors import Outcome
from executor.brokers.ccxt_exchange import ExchangeReader, ccxt_module
from executor.brokers.ccxt_ids import OrderIds
from executor.brokers.ccxt_markets import MarketRules
from executor.brokers.ccxt_orders import CcxtOrders

log = structlog.get_logger("dta.ccxt")

LIST_SUFFIX = "oco"
# Order types that make an open order a protective one, whoever placed it.
_CONTINGENT = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")


def list_client_id(stop_leg_id: str) -> str:
    """The OCO's ``listClientOrderId``: distinct from both legs' ids, as Binance requires,
    and deterministic (29 characters for our ids; Binance allows 36)."""
    return f"{stop_leg_id}{LIST_SUFFIX}"


def credited(f: BrokerFill, ids: OrderIds) -> BrokerFill:
    """A trade of one of our protective legs as the exit of the entry it protects (the
    client id the engine books ``stop_loss`` / ``take_profit`` against)."""
    coid = f.fill.client_order_id
    found = protected_entry(coid) if ids.is_ours(coid) else None
    if found is None:
        return f
    entry, kind, _generation = found
    return replace(f, fill=replace(f.fill, client_order_id=entry),
                   kind=kind if f.kind == "entry" else f.kind)


class SpotProtection:
    def __init__(self, reader: ExchangeReader, ids: OrderIds, rules: MarketRules,
                 orders: CcxtOrders, *, stop_limit_ratio: float) -> None:
        self._reader = reader
        self.exchange = reader.exchange
        self._ids = ids
        self._rules = rules
        self._orders = orders
        self._ratio = stop_limit_ratio

    # ------------------------------------------------------------------ place

    def place(self, legs: Sequence[Order]) -> list[Order]:
        """Send the ``submitting`` legs of one entry; each comes back accepted, rejected
        (with the reason) or unknown, never as an error."""
        refused = _refusal(legs)
        if refused:
            return [leg.transition(OrderState.REJECTED, reason=f"not sent: {refused}")
                    for leg in legs]
        for leg in legs:
            self._ids.sent(leg.intent)
        c = ccxt_module()
        try:
            request = self._request(legs)
        except (VenueError, c.BaseError) as exc:
            return [leg.transition(OrderState.REJECTED, reason=f"not sent: {exc}")
                    for leg in legs]
        if isinstance(request, str):
            return self._already_placed(legs) or [
                leg.transition(OrderState.REJECTED, reason=request) for leg in legs]
        placed = self._send(legs, request)
        for leg in placed:
            log.info("spot_protective_order", client_order_id=leg.client_order_id,
                     kind=leg.protective_kind, state=leg.state.value,
                     trigger=leg.intent.price, reason=leg.reason[:200])
        return placed

    def _request(self, legs: Sequence[Order]) -> dict[str, Any] | str:
        """What to send for these legs (the OCO's request, or one order's ``amount``,
        ``price`` and ``params``), or why the market would refuse it."""
        by_kind = {leg.protective_kind: leg for leg in legs}
        stop, target = by_kind.get("stop_loss"), by_kind.get("take_profit")
        symbol = legs[0].intent.symbol
        self._reader.ensure_markets()
        market = self.exchange.market(symbol)
        amount = self._amount(symbol, min(leg.intent.volume for leg in legs))

        def price(x: float) -> str:
            return str(self.exchange.price_to_precision(symbol, x))

        limit = price(_trigger(stop) * self._ratio) if stop else None
        lowest = float(limit) if limit else float(price(_trigger(target)))
        refused = self._rules.below_minimum(market, float(amount), lowest)
        if refused is not None:
            return refused
        if stop and target:
            return {"list": True, "symbol": market["id"], "side": "SELL", "quantity": amount,
                    "listClientOrderId": list_client_id(stop.client_order_id),
                    "aboveType": "LIMIT_MAKER", "abovePrice": price(_trigger(target)),
                    "aboveClientOrderId": target.client_order_id,
                    "belowType": "STOP_LOSS_LIMIT", "belowStopPrice": price(_trigger(stop)),
                    "belowPrice": limit, "belowTimeInForce": "GTC",
                    "belowClientOrderId": stop.client_order_id, "newOrderRespType": "RESULT"}
        if stop:  # a STOP_LOSS_LIMIT: ccxt's ``stopLossPrice`` on a spot limit order
            return {"list": False, "symbol": symbol, "amount": float(amount),
                    "price": float(lowest), "params": {
                        "clientOrderId": stop.client_order_id, "timeInForce": "GTC",
                        "stopLossPrice": _trigger(stop)}}
        assert target is not None  # _refusal: one stop and/or one target
        return {"list": False, "symbol": symbol, "amount": float(amount), "price": lowest,
                "params": {"clientOrderId": target.client_order_id, "postOnly": True}}

    def _already_placed(self, legs: Sequence[Order]) -> list[Order]:
        """The legs as the venue holds them when a placement under their ids exists (a
        re-send after a crash: the OCO locks the base asset, so nothing is free to sell
        and the market would refuse a new one); ``[]`` when it does not."""
        seen = []
        for leg in legs:
            try:
                seen.append(self._seen(leg.client_order_id))
            except VenueError:
                seen.append(None)
        if all(x is None for x in seen):
            return []
        return [leg.transition(OrderState.UNKNOWN, reason="not found by its id")
                if x is None else _moved(leg, x[1]) for leg, x in zip(legs, seen, strict=True)]

    def _amount(self, symbol: str, volume: float) -> str:
        """The leg quantity: the free base asset, at most ``volume``, down to the step
        (``amount_to_precision`` truncates). When the balance cannot be read the volume
        goes as asked: the exchange judges what the account covers."""
        base = str(self.exchange.market(symbol)["base"])
        try:
            balance = self._reader.read("fetch_balance", self.exchange.fetch_balance)
            free = float((balance.get("free") or {}).get(base) or 0.0)
            volume = min(volume, free)
        except (VenueError, ccxt_module().BaseError) as exc:
            log.warning("spot_protection_balance_unknown", symbol=symbol,
                        error=str(exc)[:200])
        if volume <= 0:
            return "0"
        return str(self.exchange.amount_to_precision(symbol, volume))

    def _send(self, legs: Sequence[Order], request: Mapping[str, Any]) -> list[Order]:
        if not request["list"]:
            [leg] = legs
            r = request
            answer = self._orders.send([leg], lambda: self.exchange.create_order(
                r["symbol"], "limit", "sell", r["amount"], r["price"], dict(r["params"])))
            if isinstance(answer, list):
                return answer
            return [self._orders.sent(leg, answer, "")]
        body = {k: v for k, v in request.items() if k != "list"}
        answer = self._orders.send(legs, lambda: self.exchange.privatePostOrderListOco(body))
        if isinstance(answer, list):
            return answer
        market = self.exchange.market(legs[0].intent.symbol)
        reports = {str(r.get("clientOrderId")): r for r in answer.get("orderReports") or ()}
        ids = {str(o.get("clientOrderId")): o for o in answer.get("orders") or ()}
        placed = []
        for leg in legs:
            report = reports.get(leg.client_order_id)
            if report is None:  # an ACK answer: the list was placed, its legs stand
                oid = (ids.get(leg.client_order_id) or {}).get("orderId")
                if oid is not None:
                    self._ids.coid_of[str(oid)] = leg.client_order_id
                placed.append(leg.transition(OrderState.ACCEPTED, broker_order_id=(
                    str(oid) if oid is not None else None)))
                continue
            placed.append(self._orders.sent(leg, self.exchange.parse_order(report, market),
                                             ""))
        return placed

    # ------------------------------------------------------------------ look up, cancel

    def lookup(self, client_order_id: str) -> Order | None:
        """The leg's own state: working, filled once it executed, cancelled (also when the
        OCO's other leg executed: expired), with the reason a working leg needs (a stop
        triggered and left unfilled by a gap)."""
        seen = self._seen(client_order_id)
        return None if seen is None else seen[1]

    def _seen(self, client_order_id: str) -> tuple[Mapping[str, Any], Order] | None:
        o = self._orders.fetch(client_order_id)
        if o is None:
            return None
        order = self.from_open(o, client_order_id)
        return o, replace(order, reason=_why(o) or order.reason)

    def cancel(self, legs: Sequence[Order]) -> list[Order]:
        """Cancel working legs; each as the venue leaves it (cancelled, or filled when it
        executed first). A leg of an OCO cancels the whole list, once; a leg the venue
        does not know, or cannot be asked about now, is returned as it was."""
        done: set[str] = set()
        out = []
        for leg in legs:
            try:
                seen = self._seen(leg.client_order_id)
                if seen is not None and not seen[1].state.terminal:
                    self._cancel_at_venue(leg, seen[0], done)
                    seen = self._seen(leg.client_order_id)
            except VenueError as exc:
                log.warning("spot_protection_cancel_failed",
                            client_order_id=leg.client_order_id, error=str(exc)[:200])
                seen = None
            out.append(leg if seen is None else _moved(leg, seen[1]))
        return out

    def _cancel_at_venue(self, leg: Order, o: Mapping[str, Any], done: set[str]) -> None:
        """``DELETE /api/v3/orderList`` for a leg of a list (both legs go), else
        ``DELETE /api/v3/order``; gone already (it executed meanwhile) is no error."""
        list_id = str((o.get("info") or {}).get("orderListId", "-1"))
        symbol = leg.intent.symbol
        if list_id == "-1":
            self._reader.call("cancel protective order", self.exchange.cancel_order, None,
                              symbol, {"origClientOrderId": leg.client_order_id},
                              ok=(Outcome.NOT_FOUND,))
        elif list_id not in done:
            done.add(list_id)
            self._reader.call("cancel order list", self.exchange.privateDeleteOrderList,
                              {"symbol": self.exchange.market(symbol)["id"],
                               "orderListId": list_id}, ok=(Outcome.NOT_FOUND,))

    def working(self, symbol: str) -> list[BrokerOrder]:
        """Protective orders open on ``symbol``: ours (a protective id) and any stop,
        take-profit or order-list leg of another client's."""
        self._reader.ensure_markets()
        rows = self._reader.read("fetch_open_orders", self.exchange.fetch_open_orders, symbol)
        out = []
        for o in rows:
            info: Mapping[str, Any] = o.get("info") or {}
            coid = str(o.get("clientOrderId") or "") or None
            ours = self._ids.is_ours(coid) and protected_entry(coid or "") is not None
            if not ours and info.get("type") not in _CONTINGENT and str(
                    info.get("orderListId", "-1")) == "-1":
                continue
            order = self.from_open(o, coid)
            out.append(BrokerOrder(
                coid, str(o["id"]), symbol, OrderSide(str(o.get("side") or "sell")),
                float(o.get("amount") or 0.0), float(o.get("filled") or 0.0), order.state,
                ours=ours, price=o.get("triggerPrice") or o.get("price"),
                time=datetime.fromtimestamp((o.get("timestamp") or 0) / 1000, UTC)))
        return out

    def from_open(self, o: Mapping[str, Any], coid: str | None) -> Order:
        intent = self._ids.intents.get(coid or "") or _leg_intent(coid or "", o)
        return self._orders.from_ccxt(intent, o, coid)


def _refusal(legs: Sequence[Order]) -> str:
    """Why these legs cannot be one spot placement (nothing is sent), or ``""``."""
    if not legs:
        return "no legs"
    kinds = [leg.protective_kind for leg in legs]
    if None in kinds or len(set(kinds)) != len(kinds):
        return f"not one stop and/or one target: {kinds}"
    entries = {(protected_entry(leg.client_order_id) or ("",))[0] for leg in legs}
    if len(entries) != 1 or "" in entries or len({leg.intent.symbol for leg in legs}) != 1:
        return "legs of more than one entry"
    if any(leg.intent.side is not OrderSide.SELL for leg in legs):
        return "spot holds no shorts: a protective leg sells a long"
    if any(leg.intent.price is None or leg.intent.volume <= 0 for leg in legs):
        return "a leg without a trigger price or volume"
    return ""


def _trigger(leg: Order | None) -> float:
    assert leg is not None and leg.intent.price is not None  # _refusal checked both
    return leg.intent.price


def _leg_intent(coid: str, o: Mapping[str, Any]) -> OrderIntent:
    """The intent of a leg this process has no journal row for, as the exchange lists it."""
    found = protected_entry(coid)
    kind = found[1] if found else (
        "take_profit" if o.get("triggerPrice") is None else "stop_loss")
    return OrderIntent(
        coid, "", str(o.get("symbol") or ""), OrderSide(str(o.get("side") or "sell")),
        float(o.get("amount") or 0.0), PROTECTIVE_TYPE[kind],
        datetime.fromtimestamp((o.get("timestamp") or 0) / 1000, UTC),
        price=o.get("triggerPrice") or o.get("price"), reduce_only=True)


def _why(o: Mapping[str, Any]) -> str:
    """What a leg's state alone does not say."""
    info: Mapping[str, Any] = o.get("info") or {}
    if o.get("status") == "expired" and str(info.get("orderListId", "-1")) != "-1":
        return "expired: the other leg of its OCO executed (OCO_TRIGGER)"
    if (o.get("status") == "open" and info.get("isWorking") is True
            and info.get("type") in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")):
        return (f"triggered at {info.get('stopPrice')}, a limit sell at {info.get('price')} "
                "not filled: the price is below its limit (a gap); the long is not closed")
    return ""


def _moved(leg: Order, seen: Order) -> Order:
    """``leg`` in the state the venue shows (through ``unknown`` where the table wants it)."""
    changes = dict(filled_volume=seen.filled_volume, avg_fill_price=seen.avg_fill_price,
                   broker_order_id=seen.broker_order_id or leg.broker_order_id,
                   reason=seen.reason or leg.reason)
    if seen.state is leg.state:
        return replace(leg, **changes)  # type: ignore[arg-type]
    if seen.state in ORDER_TRANSITIONS[leg.state]:
        return leg.transition(seen.state, **changes)
    if (OrderState.UNKNOWN in ORDER_TRANSITIONS[leg.state]
            and seen.state in ORDER_TRANSITIONS[OrderState.UNKNOWN]):
        return leg.transition(OrderState.UNKNOWN).transition(seen.state, **changes)
    return leg
