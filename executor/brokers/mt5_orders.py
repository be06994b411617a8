"""Where an order leaves the process for an MT5 terminal, and what its retcode means.

Retcode mapping (``order_send`` -> our order state; the table is in docs/brokers.md):
- DONE 10009 -> market ``filled`` (``partially_filled`` if less volume came back), pending
  ``accepted``; PLACED 10008 -> ``accepted``; DONE_PARTIAL 10010 -> ``partially_filled``;
- REQUOTE 10004, PRICE_CHANGED 10020, PRICE_OFF 10021 -> retried with a fresh tick at most
  ``requote_retries`` times (nothing was executed), then ``rejected``;
- MARKET_CLOSED, NO_MONEY, INVALID_STOPS, CLIENT/SERVER_DISABLES_AT, INVALID_VOLUME,
  INVALID_PRICE, INVALID_FILL, TRADE_DISABLED, REJECT, LIMIT_*, ... -> ``rejected`` with a
  clear reason;
- TIMEOUT 10012, CONNECTION 10031, ERROR 10011, a ``None`` answer, a lost link or an
  unknown code -> ``unknown``, settled by ``lookup``, never re-sent.

On a hedging account an opposite market order names the tickets it closes, then opens
what is left (``_submit_legs``), so the account ends where a netting account would.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from domain import Order, OrderIntent, OrderSide, OrderState, OrderType
from domain.errors import VenueError
from executor.brokers import mt5_client as C
from executor.brokers.config import Mt5Settings
from executor.brokers.mt5_account import Mt5Account
from executor.brokers.mt5_client import Mt5Client
from executor.brokers.mt5_ids import OrderMarks
from executor.brokers.mt5_positions import opposite_type, tickets_to_close
from executor.brokers.mt5_symbols import Mt5Symbols, choose_filling, round_price, round_volume

log = structlog.get_logger("dta.mt5")

_PRICE_RETRY = frozenset({C.TRADE_RETCODE_REQUOTE, C.TRADE_RETCODE_PRICE_CHANGED,
                          C.TRADE_RETCODE_PRICE_OFF})
_UNKNOWN = frozenset({C.TRADE_RETCODE_TIMEOUT, C.TRADE_RETCODE_CONNECTION,
                      C.TRADE_RETCODE_ERROR})
_REJECT_REASONS: dict[int, str] = {
    C.TRADE_RETCODE_REQUOTE: "requote (price moved), retries exhausted",
    C.TRADE_RETCODE_PRICE_CHANGED: "price changed, retries exhausted",
    C.TRADE_RETCODE_PRICE_OFF: "no quotes to process the request, retries exhausted",
    C.TRADE_RETCODE_REJECT: "request rejected by the trade server",
    C.TRADE_RETCODE_CANCEL: "request cancelled by the trader",
    C.TRADE_RETCODE_INVALID: "invalid request",
    C.TRADE_RETCODE_INVALID_VOLUME: "invalid volume",
    C.TRADE_RETCODE_INVALID_PRICE: "invalid price",
    C.TRADE_RETCODE_INVALID_STOPS: "invalid stops (SL/TP too close or on the wrong side)",
    C.TRADE_RETCODE_TRADE_DISABLED: "trading is disabled for the symbol",
    C.TRADE_RETCODE_MARKET_CLOSED: "market is closed",
    C.TRADE_RETCODE_NO_MONEY: "not enough money (margin) for the order",
    C.TRADE_RETCODE_INVALID_EXPIRATION: "invalid expiration",
    C.TRADE_RETCODE_ORDER_CHANGED: "order state changed",
    C.TRADE_RETCODE_TOO_MANY_REQUESTS: "too many requests",
    C.TRADE_RETCODE_NO_CHANGES: "no changes in the request",
    C.TRADE_RETCODE_SERVER_DISABLES_AT: "autotrading disabled by the server",
    C.TRADE_RETCODE_CLIENT_DISABLES_AT: "autotrading disabled in the terminal "
                                        "(enable Algo Trading)",
    C.TRADE_RETCODE_LOCKED: "request locked for processing",
    C.TRADE_RETCODE_FROZEN: "order or position frozen",
    C.TRADE_RETCODE_INVALID_FILL: "filling mode not supported by the symbol",
    C.TRADE_RETCODE_ONLY_REAL: "only real accounts allowed",
    C.TRADE_RETCODE_LIMIT_ORDERS: "pending orders limit reached",
    C.TRADE_RETCODE_LIMIT_VOLUME: "volume limit for the symbol reached",
    C.TRADE_RETCODE_INVALID_ORDER: "invalid or prohibited order type",
    C.TRADE_RETCODE_POSITION_CLOSED: "position already closed",
    C.TRADE_RETCODE_LIMIT_POSITIONS: "open positions limit reached",
    C.TRADE_RETCODE_LONG_ONLY: "only long positions allowed",
    C.TRADE_RETCODE_SHORT_ONLY: "only short positions allowed",
    C.TRADE_RETCODE_CLOSE_ONLY: "only position closing allowed",
    C.TRADE_RETCODE_FIFO_CLOSE: "FIFO close rule",
}
_PENDING_TYPES = {(OrderType.LIMIT, True): C.ORDER_TYPE_BUY_LIMIT,
                  (OrderType.LIMIT, False): C.ORDER_TYPE_SELL_LIMIT,
                  (OrderType.STOP, True): C.ORDER_TYPE_BUY_STOP,
                  (OrderType.STOP, False): C.ORDER_TYPE_SELL_STOP}


class Mt5Orders:
    def __init__(self, client: Mt5Client, settings: Mt5Settings, marks: OrderMarks,
                 symbols: Mt5Symbols, account: Mt5Account) -> None:
        self.client = client
        self.settings = settings
        self._marks = marks
        self._symbols = symbols
        self._account = account

    def submit(self, order: Order) -> Order:
        """Send a ``submitting`` order; any outcome is its next state, never an error."""
        intent = order.intent
        self._marks.intents[intent.client_order_id] = intent
        try:
            token = self._marks.token(intent.client_order_id)
            info = self._symbols.info(intent.symbol)
            request, note = self._request(intent, info, token)
            closes = (self._hedge_closes(intent, float(request["volume"]))
                      if request is not None and request["action"] == C.TRADE_ACTION_DEAL
                      and not intent.reduce_only and self._account.hedging() else [])
        except (VenueError, ValueError) as exc:
            # Nothing was sent: a clear rejection, not an unknown.
            return order.transition(OrderState.REJECTED, reason=f"not sent: {exc}")
        if request is None:
            return order.transition(OrderState.REJECTED, reason=note)
        if closes:
            return self._submit_legs(order, request, closes, note)
        mapped = self._send(order, request)
        if note and mapped.state is not OrderState.REJECTED:
            mapped = with_reason(mapped, note)
        return mapped

    def _send(self, order: Order, request: dict[str, Any]) -> Order:
        """One request to the terminal, re-priced and retried on requotes; the answer as
        the order's next state."""
        intent = order.intent
        market = request["action"] == C.TRADE_ACTION_DEAL
        result: dict[str, Any] | None = None
        for attempt in range(self.settings.requote_retries + 1):
            if market:
                tick = self.client.symbol_info_tick(intent.symbol)
                if tick is None:
                    # Still nothing sent on this attempt: every earlier answer was a requote.
                    return order.transition(OrderState.REJECTED,
                                            reason=f"no quote for {intent.symbol}: "
                                                   f"{self.client.last_error}; not sent")
                request["price"] = float(tick["ask"] if intent.side is OrderSide.BUY
                                         else tick["bid"])
            try:
                result = self.client.order_send(request)
            except VenueError as exc:
                return order.transition(OrderState.UNKNOWN, reason=f"order_send: {exc}")
            if result is None:
                return order.transition(
                    OrderState.UNKNOWN,
                    reason=f"order_send answered None, last_error {self.client.last_error}")
            retcode = int(result.get("retcode") or 0)
            if retcode in _PRICE_RETRY and attempt < self.settings.requote_retries:
                log.info("mt5_requote", client_order_id=intent.client_order_id,
                         retcode=retcode, attempt=attempt + 1)
                continue
            break
        assert result is not None
        mapped = map_result(order, result, float(request["volume"]), market)
        log.info("mt5_order_sent", client_order_id=intent.client_order_id,
                 retcode=result.get("retcode"), state=mapped.state.value,
                 ticket=result.get("order"), position=request.get("position"))
        return mapped

    def _ours_on(self, symbol: str) -> list[dict[str, Any]]:
        return [p for p in self.client.positions_get(symbol=symbol) if self._marks.ours(p)]

    def _hedge_closes(self, intent: OrderIntent, volume: float) -> list[tuple[int, float]]:
        return tickets_to_close(self._ours_on(intent.symbol), intent.side, volume)

    def _submit_legs(self, order: Order, request: dict[str, Any],
                     closes: list[tuple[int, float]], note: str) -> Order:
        """Close (or reduce) each opposite ticket by naming it in ``position`` ("On a
        hedging account, the position to be closed must be specified using a ticket in the
        position field", MQL5 book), then open what is left. Every leg carries the order's
        comment, so lookup and fills see one order. A leg that does not fill stops the rest:
        nothing is ever sent twice, and the resolver settles what did happen."""
        total = float(request["volume"])
        legs: list[dict[str, Any]] = []
        for ticket, lots in closes:
            leg = {k: v for k, v in request.items() if k not in ("sl", "tp")}
            legs.append(dict(leg, position=ticket, volume=lots))
        rest = round(total - sum(lots for _, lots in closes), 8)
        if rest > 1e-9:
            legs.append(dict(request, volume=rest))
        filled = cost = 0.0
        last: Order = order
        for leg in legs:
            last = self._send(order, leg)
            got = last.filled_volume if last.state in (OrderState.FILLED,
                                                       OrderState.PARTIALLY_FILLED) else 0.0
            filled += got
            cost += got * (last.avg_fill_price or 0.0)
            if last.state is not OrderState.FILLED:
                break
        if filled <= 1e-9:
            return last  # the first leg's own answer: rejected, unknown, ...
        avg = cost / filled if filled else None
        last_ticket = last.broker_order_id
        if last.state is OrderState.UNKNOWN:
            return order.transition(OrderState.UNKNOWN,
                                    reason=f"hedging legs: {filled:g} of {total:g} lots done, "
                                           f"then {last.reason}")
        state = OrderState.FILLED if filled >= total - 1e-9 else OrderState.PARTIALLY_FILLED
        reason = (f"hedging account: closed ticket(s) "
                  f"{', '.join(str(t) for t, _ in closes)} first")
        if state is OrderState.PARTIALLY_FILLED:
            reason += f"; {filled:g} of {total:g} lots done, then: {last.reason}"
        done = order.transition(state, filled_volume=round(filled, 8), avg_fill_price=avg,
                                broker_order_id=last_ticket, reason=reason)
        return with_reason(done, note) if note else done

    def _request(self, intent: OrderIntent, info: dict[str, Any],
                 token: str) -> tuple[dict[str, Any] | None, str]:
        """The ``order_send`` request, or None and why it is not sent."""
        volume, note = round_volume(intent.volume, info)
        if volume is None:
            return None, note
        buy = intent.side is OrderSide.BUY
        request: dict[str, Any] = {
            "symbol": intent.symbol, "volume": volume, "magic": self._marks.magic,
            "comment": token, "deviation": self.settings.deviation,
            "type_time": C.ORDER_TIME_GTC,
        }
        if intent.stop_loss is not None:
            request["sl"] = round_price(intent.stop_loss, info)
        if intent.take_profit is not None:
            request["tp"] = round_price(intent.take_profit, info)
        if intent.order_type is OrderType.MARKET:
            request.update(action=C.TRADE_ACTION_DEAL,
                           type=C.ORDER_TYPE_BUY if buy else C.ORDER_TYPE_SELL,
                           type_filling=choose_filling(int(info.get("filling_mode") or 0),
                                                       self.settings.filling_preference))
            if intent.reduce_only:
                pos = self._position_to_reduce(intent)
                if pos is None:
                    return None, f"reduce_only: no {intent.symbol} position of ours to reduce"
                request["position"] = int(pos["ticket"])
                request["volume"] = min(volume, float(pos["volume"]))
        else:
            if intent.price is None:
                return None, f"{intent.order_type.value} order without a price"
            request.update(action=C.TRADE_ACTION_PENDING,
                           type=_PENDING_TYPES[(intent.order_type, buy)],
                           price=round_price(intent.price, info),
                           type_filling=C.ORDER_FILLING_RETURN)
        return request, note

    def _position_to_reduce(self, intent: OrderIntent) -> dict[str, Any] | None:
        want = opposite_type(intent.side)
        for p in self._ours_on(intent.symbol):
            if int(p.get("type", -1)) == want:
                return p
        return None


def map_result(order: Order, result: dict[str, Any], volume: float, market: bool) -> Order:
    """An ``order_send`` answer as the order's next state (the module docstring's table)."""
    retcode = int(result.get("retcode") or 0)
    ticket = str(result.get("order") or "") or None
    text = f"{result.get('comment') or ''} (retcode {retcode})".strip()
    if retcode == C.TRADE_RETCODE_DONE and market:
        filled = float(result.get("volume") or 0.0)
        price = float(result.get("price") or 0.0) or None
        state = (OrderState.FILLED if filled >= volume - 1e-9
                 else OrderState.PARTIALLY_FILLED)
        return order.transition(state, filled_volume=filled, avg_fill_price=price,
                                broker_order_id=ticket)
    if retcode in (C.TRADE_RETCODE_DONE, C.TRADE_RETCODE_PLACED):
        return order.transition(OrderState.ACCEPTED, broker_order_id=ticket)
    if retcode == C.TRADE_RETCODE_DONE_PARTIAL:
        filled = float(result.get("volume") or 0.0)
        return order.transition(OrderState.PARTIALLY_FILLED, filled_volume=filled,
                                avg_fill_price=float(result.get("price") or 0.0) or None,
                                broker_order_id=ticket,
                                reason=f"partial fill {filled} of {volume}")
    if retcode in _REJECT_REASONS:
        return order.transition(OrderState.REJECTED,
                                reason=f"{_REJECT_REASONS[retcode]}: {text}")
    if retcode in _UNKNOWN:
        return order.transition(OrderState.UNKNOWN, reason=f"outcome unknown: {text}")
    return order.transition(OrderState.UNKNOWN, reason=f"unexpected retcode: {text}")


def with_reason(order: Order, note: str) -> Order:
    """``note`` appended to the order's reason."""
    return replace(order, reason=(order.reason + "; " if order.reason else "") + note)
