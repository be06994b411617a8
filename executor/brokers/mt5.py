"""MetaTrader 5 broker: where an order leaves the process for an MT5 terminal.

Our orders are told apart from an EA's on the same account by two marks: the daemon's
``magic`` number and a comment token (``comment_prefix + client_order_id``, at most 31
characters, MT5's comment limit). Everything with another magic (the EA's trades) is never
modified: it is only readable, for shadow mode (``foreign_positions``/``foreign_orders``).

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
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from domain import (
    Bar,
    Fill,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    Position,
)
from domain.errors import ConfigError, PermanentVenueError, TemporaryVenueError, VenueError
from executor.brokers import mt5_client as C
from executor.brokers.base import BrokerFill, BrokerOrder, VolumeRules
from executor.brokers.config import Mt5Settings
from executor.brokers.equity_cache import EquityCache
from executor.brokers.mt5_client import Mt5Client
from executor.brokers.server_time import ServerClock

log = structlog.get_logger("dta.mt5")

MAX_COMMENT = 31

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
_ACTIVE_STATES = {C.ORDER_STATE_STARTED: OrderState.ACCEPTED,
                  C.ORDER_STATE_PLACED: OrderState.ACCEPTED,
                  C.ORDER_STATE_REQUEST_ADD: OrderState.ACCEPTED,
                  C.ORDER_STATE_REQUEST_MODIFY: OrderState.ACCEPTED,
                  C.ORDER_STATE_REQUEST_CANCEL: OrderState.ACCEPTED,
                  C.ORDER_STATE_PARTIAL: OrderState.PARTIALLY_FILLED}
_BUY_TYPES = frozenset({C.ORDER_TYPE_BUY, C.ORDER_TYPE_BUY_LIMIT, C.ORDER_TYPE_BUY_STOP})
_MARGIN_MODES = frozenset({C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING, C.ACCOUNT_MARGIN_MODE_EXCHANGE,
                           C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING})


def comment_token(client_order_id: str, prefix: str = "") -> str:
    """The comment that carries our client order id to the terminal and back."""
    token = prefix + client_order_id
    if len(token) > MAX_COMMENT:
        raise ValueError(f"comment token {token!r} exceeds MT5's {MAX_COMMENT} characters")
    return token


def choose_filling(mask: int, preference: Sequence[str]) -> int:
    """ORDER_FILLING_* for a market order from the symbol's SYMBOL_FILLING_* bitmask."""
    for p in preference:
        if p == "fok" and mask & C.SYMBOL_FILLING_FOK:
            return C.ORDER_FILLING_FOK
        if p == "ioc" and mask & C.SYMBOL_FILLING_IOC:
            return C.ORDER_FILLING_IOC
        if p == "return":
            return C.ORDER_FILLING_RETURN
    return C.ORDER_FILLING_RETURN


def round_volume(volume: float, info: dict[str, Any]) -> tuple[float | None, str]:
    """Floor to ``volume_step``, cap at ``volume_max``; ``None`` below ``volume_min``
    (rounding up would add risk nobody approved)."""
    step = float(info.get("volume_step") or 0.01)
    vmin = float(info.get("volume_min") or step)
    vmax = float(info.get("volume_max") or math.inf)
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    rounded = round(math.floor(volume / step + 1e-9) * step, decimals + 2)
    if rounded < vmin - 1e-12:
        return None, (f"volume {volume} is below the symbol minimum {vmin} "
                      f"(step {step}): not sent")
    if rounded > vmax:
        return vmax, f"volume capped at the symbol maximum {vmax}"
    return rounded, ""


def round_price(price: float, info: dict[str, Any]) -> float:
    tick = float(info.get("trade_tick_size") or info.get("point") or 0.0)
    digits = int(info.get("digits") or 8)
    if tick > 0:
        price = round(price / tick) * tick
    return round(price, digits)


class Mt5Broker:
    name = "mt5"
    simulated = False

    def __init__(self, client: Mt5Client, settings: Mt5Settings, *,
                 clock: Callable[[], datetime] | None = None,
                 equity_ttl_seconds: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.settings = settings
        self.magic = settings.magic
        self._clock = clock or (lambda: datetime.now(UTC))
        self.server_clock = ServerClock.from_settings(settings)
        self._intents: dict[str, OrderIntent] = {}
        self._seen_fills: set[str] = set()
        self._selected: set[str] = set()
        self._last_poll: datetime | None = None
        self._margin_mode: int | None = None
        self._lock = threading.RLock()
        self._equity = EquityCache(self._read_equity, equity_ttl_seconds, monotonic=monotonic)

    # ------------------------------------------------------------------ helpers

    def token(self, client_order_id: str) -> str:
        return comment_token(client_order_id, self.settings.comment_prefix)

    def client_id_from_comment(self, comment: str) -> str | None:
        prefix = self.settings.comment_prefix
        if not comment or not comment.startswith(prefix):
            return None
        rest = comment[len(prefix):]
        end = 0
        while end < len(rest) and (rest[end].isalnum() or rest[end] in "-_"):
            end += 1
        return rest[:end] or None

    def _symbol(self, symbol: str) -> dict[str, Any]:
        if symbol not in self._selected:
            if not self.client.symbol_select(symbol, True):
                raise PermanentVenueError(f"MT5 symbol_select({symbol}) failed: "
                                          f"{self.client.last_error}")
            self._selected.add(symbol)
        info = self.client.symbol_info(symbol)
        if info is None:
            raise PermanentVenueError(f"MT5 symbol {symbol} unknown: {self.client.last_error}")
        return info

    def to_utc(self, server_epoch: float) -> datetime:
        """Broker server time (epoch seconds on the server's wall clock) to aware UTC."""
        return self.server_clock.to_utc(server_epoch)

    def _window(self, since: datetime | None = None) -> tuple[int, int]:
        now = self._clock()
        start = since if since is not None else now - timedelta(days=self.settings.history_days)
        # History is stamped in server time; pad a day each side for offset/DST slack.
        clock = self.server_clock
        return (int(clock.to_server_epoch(start - timedelta(days=1))),
                int(clock.to_server_epoch(now + timedelta(days=1))))

    def check_server_time(self, symbols: Sequence[str]) -> str:
        """Start-up check of the configured server clock against the terminal: the newest
        tick of ``symbols`` against our UTC clock. Raises ``ConfigError`` (refuse to trade)
        when they disagree; returns what was compared, for the log."""
        newest = 0.0
        for symbol in symbols:
            self._symbol(symbol)
            tick = self.client.symbol_info_tick(symbol)
            if tick is not None:
                newest = max(newest, float(tick.get("time_msc") or 0) / 1000.0
                             or float(tick.get("time") or 0))
        now = self._clock()
        if newest <= 0:
            return f"server clock {self.server_clock.describe()}: no tick to check it against"
        problem = self.server_clock.check_offset(
            newest, now, self.settings.server_time_tolerance_seconds)
        if problem is not None:
            raise ConfigError(problem)
        return (f"server clock {self.server_clock.describe()} agrees with the terminal "
                f"(newest tick {self.to_utc(newest):%Y-%m-%d %H:%M:%S} UTC)")

    def check_terminal(self, symbols: Sequence[str]) -> str:
        """Everything to confirm before trading: the account's margin mode is one we handle
        and the server clock matches the configuration. Raises on either."""
        mode = {C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING: "netting",
                C.ACCOUNT_MARGIN_MODE_EXCHANGE: "exchange (netting)",
                C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING: "hedging"}[self.margin_mode()]
        return f"MT5 account {mode}; {self.check_server_time(symbols)}"

    # ------------------------------------------------------------------ submit

    def submit(self, order: Order) -> Order:
        with self._lock:
            try:
                return self._submit(order)
            finally:
                self._equity.invalidate()  # margin, and with a fill the position, moved

    def _submit(self, order: Order) -> Order:
        intent = order.intent
        self._intents[intent.client_order_id] = intent
        try:
            token = self.token(intent.client_order_id)
            info = self._symbol(intent.symbol)
            request, note = self._request(intent, info, token)
            closes = (self._hedge_closes(intent, float(request["volume"]))
                      if request is not None and request["action"] == C.TRADE_ACTION_DEAL
                      and not intent.reduce_only and self.hedging() else [])
        except (VenueError, ValueError) as exc:
            # Nothing was sent: a clear rejection, not an unknown.
            return order.transition(OrderState.REJECTED, reason=f"not sent: {exc}")
        if request is None:
            return order.transition(OrderState.REJECTED, reason=note)
        if closes:
            return self._submit_legs(order, request, closes, note)
        mapped = self._send(order, request)
        if note and mapped.state is not OrderState.REJECTED:
            mapped = _with_reason(mapped, note)
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
        mapped = self._map_result(order, result, float(request["volume"]), market)
        log.info("mt5_order_sent", client_order_id=intent.client_order_id,
                 retcode=result.get("retcode"), state=mapped.state.value,
                 ticket=result.get("order"), position=request.get("position"))
        return mapped

    # ------------------------------------------------------------------ hedging

    def margin_mode(self) -> int:
        """``account_info().margin_mode``, read once: it is fixed per account (MQL5
        ENUM_ACCOUNT_MARGIN_MODE). Raises ``VenueError`` for a mode we do not know."""
        if self._margin_mode is None:
            info = self.client.account_info()
            if not isinstance(info, dict) or info.get("margin_mode") is None:
                raise TemporaryVenueError(f"MT5 account_info has no margin_mode: "
                                          f"{self.client.last_error}")
            mode = int(info["margin_mode"])
            if mode not in _MARGIN_MODES:
                raise PermanentVenueError(f"MT5 account margin_mode {mode} is not supported "
                                          "(netting 0, exchange 1, hedging 2): refusing to trade")
            self._margin_mode = mode
        return self._margin_mode

    def hedging(self) -> bool:
        """A hedging account holds every deal as its own ticket: an opposite order opens a
        second position instead of closing the first (netting and exchange accounts net)."""
        return self.margin_mode() == C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING

    def _hedge_closes(self, intent: OrderIntent, volume: float) -> list[tuple[int, float]]:
        """On a hedging account, the tickets of ours an order must close first, oldest first,
        with the lots to take off each, so the account ends where a netting account would:
        reduced, closed or reversed, never long and short at once."""
        want = C.POSITION_TYPE_SELL if intent.side is OrderSide.BUY else C.POSITION_TYPE_BUY
        tickets = sorted((p for p in self.client.positions_get(symbol=intent.symbol)
                          if self._ours(p) and int(p.get("type", -1)) == want),
                         key=lambda p: (int(p.get("time_msc") or 0), int(p["ticket"])))
        out: list[tuple[int, float]] = []
        left = volume
        for p in tickets:
            if left <= 1e-9:
                break
            take = round(min(left, float(p["volume"])), 8)
            out.append((int(p["ticket"]), take))
            left = round(left - take, 8)
        return out

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
        return _with_reason(done, note) if note else done

    def _request(self, intent: OrderIntent, info: dict[str, Any],
                 token: str) -> tuple[dict[str, Any] | None, str]:
        volume, note = round_volume(intent.volume, info)
        if volume is None:
            return None, note
        buy = intent.side is OrderSide.BUY
        request: dict[str, Any] = {
            "symbol": intent.symbol, "volume": volume, "magic": self.magic,
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
            kind = {(OrderType.LIMIT, True): C.ORDER_TYPE_BUY_LIMIT,
                    (OrderType.LIMIT, False): C.ORDER_TYPE_SELL_LIMIT,
                    (OrderType.STOP, True): C.ORDER_TYPE_BUY_STOP,
                    (OrderType.STOP, False): C.ORDER_TYPE_SELL_STOP}[(intent.order_type, buy)]
            request.update(action=C.TRADE_ACTION_PENDING, type=kind,
                           price=round_price(intent.price, info),
                           type_filling=C.ORDER_FILLING_RETURN)
        return request, note

    def _position_to_reduce(self, intent: OrderIntent) -> dict[str, Any] | None:
        want = C.POSITION_TYPE_SELL if intent.side is OrderSide.BUY else C.POSITION_TYPE_BUY
        for p in self.client.positions_get(symbol=intent.symbol):
            if int(p.get("magic") or 0) == self.magic and int(p.get("type", -1)) == want:
                return p
        return None

    def _map_result(self, order: Order, result: dict[str, Any], volume: float,
                    market: bool) -> Order:
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

    # ------------------------------------------------------------------ lookup

    def lookup(self, client_order_id: str) -> Order | None:
        """Find our order by its comment token across open orders, history and positions."""
        with self._lock:
            token = self.token(client_order_id)
            active = [o for o in self.client.orders_get() if self._ours(o)
                      and self.client_id_from_comment(str(o.get("comment", ""))) ==
                      client_order_id]
            if active:
                return self._order_from_mt5(client_order_id, active[0], active=True)
            lo, hi = self._window()
            history = [o for o in self.client.history_orders_get(lo, hi) if self._ours(o)
                       and self.client_id_from_comment(str(o.get("comment", ""))) ==
                       client_order_id]
            history.sort(key=lambda o: (int(o.get("time_setup_msc") or 0),
                                        int(o.get("ticket") or 0)))
            if len(history) > 1 and self.hedging():
                return self._order_from_legs(client_order_id, history)
            if len(history) > 1:
                log.error("mt5_duplicate_comment", client_order_id=client_order_id,
                          tickets=[o.get("ticket") for o in history])
            if history:
                return self._order_from_mt5(client_order_id, history[0], active=False)
            for p in self.client.positions_get():
                if self._ours(p) and str(p.get("comment", "")).startswith(token):
                    # The position exists though its order is not (yet) in history.
                    intent = self._intent_for(client_order_id, p, is_position=True)
                    return Order(intent, OrderState.FILLED, filled_volume=float(p["volume"]),
                                 avg_fill_price=float(p["price_open"]),
                                 broker_order_id=str(p["ticket"]),
                                 reason="found as an open position")
            return None

    def _order_from_legs(self, coid: str, legs: list[dict[str, Any]]) -> Order:
        """One order of ours sent as several requests on a hedging account (closes by
        ticket, then the rest: ``_submit_legs``): the sum of their deals."""
        parts = [self._order_from_mt5(coid, o, active=False) for o in legs]
        intent = self._intent_for(coid, legs[0])
        filled = round(sum(p.filled_volume for p in parts), 8)
        cost = sum(p.filled_volume * (p.avg_fill_price or 0.0) for p in parts)
        avg = cost / filled if filled > 0 else None
        wanted = intent.volume if coid in self._intents else sum(
            float(o.get("volume_initial") or 0.0) for o in legs)
        ticket = parts[-1].broker_order_id
        if filled >= wanted - 1e-9 or all(p.state is OrderState.FILLED for p in parts):
            return Order(intent, OrderState.FILLED, filled_volume=filled, avg_fill_price=avg,
                         broker_order_id=ticket)
        return Order(intent, OrderState.CANCELLED, filled_volume=filled, avg_fill_price=avg,
                     broker_order_id=ticket,
                     reason=f"partially filled {filled:g} of {wanted:g}, remainder not sent "
                            "or cancelled")

    def _ours(self, item: dict[str, Any]) -> bool:
        return int(item.get("magic") or 0) == self.magic

    def _intent_for(self, coid: str, item: dict[str, Any], *,
                    is_position: bool = False) -> OrderIntent:
        known = self._intents.get(coid)
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
                           self.to_utc(float(t)),
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

    # ------------------------------------------------------------------ fills, positions

    def recent_fills(self, since: datetime) -> list[BrokerFill]:
        """Our deals since ``since`` (aware UTC), oldest first; SL/TP exits are attributed
        to the order that opened the position (their comment is the server's ``[sl x]``)."""
        with self._lock:
            lo, hi = self._window(since)
            deals = [d for d in self.client.history_deals_get(lo, hi) if self._ours(d)
                     and int(d.get("type", -1)) in (C.DEAL_TYPE_BUY, C.DEAL_TYPE_SELL)]
            deals.sort(key=lambda d: (int(d.get("time_msc") or 0), int(d["ticket"])))
            opener: dict[int, str] = {}
            for d in deals:
                if int(d.get("entry", -1)) == C.DEAL_ENTRY_IN:
                    coid = self.client_id_from_comment(str(d.get("comment", "")))
                    if coid:
                        opener.setdefault(int(d["position_id"]), coid)
            out: list[BrokerFill] = []
            for d in deals:
                t = self.to_utc(float(d["time"]))
                if t < since:
                    continue
                coid = self._deal_client_id(d, opener)
                if coid is None:
                    continue
                out.append(self._broker_fill(d, coid, t))
            return out

    def _deal_client_id(self, d: dict[str, Any], opener: dict[int, str]) -> str | None:
        own = self.client_id_from_comment(str(d.get("comment", "")))
        if own:
            return own
        pid = int(d.get("position_id") or 0)
        if pid in opener:
            return opener[pid]
        for entry in self.client.history_deals_get(position=pid):
            if int(entry.get("entry", -1)) == C.DEAL_ENTRY_IN:
                coid = self.client_id_from_comment(str(entry.get("comment", "")))
                if coid:
                    opener[pid] = coid
                    return coid
        return None

    def _broker_fill(self, d: dict[str, Any], coid: str, t: datetime) -> BrokerFill:
        side = OrderSide.BUY if int(d["type"]) == C.DEAL_TYPE_BUY else OrderSide.SELL
        reason = int(d.get("reason", -1))
        if self.client_id_from_comment(str(d.get("comment", ""))) == coid:
            kind = "entry"  # the order's own execution (opening or reducing)
        elif reason == C.DEAL_REASON_SL:
            kind = "stop_loss"
        elif reason == C.DEAL_REASON_TP:
            kind = "take_profit"
        else:
            kind = "close"  # e.g. a stop-out, attributed to the order that opened it
        cost = 0.0 - (float(d.get("commission") or 0.0) + float(d.get("fee") or 0.0))
        fill = Fill(coid, f"mt5:{d['ticket']}", str(d["symbol"]), side, t, float(d["price"]),
                    float(d["volume"]), cost)
        return BrokerFill(fill, kind, float(d.get("profit") or 0.0), None)

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        """Deals of ours not reported yet (each exactly once across restarts: ``restore``
        seeds the ids the journal already holds). A failed poll is logged and repeated at
        the next bar."""
        with self._lock:
            since = self._last_poll or (self._clock() - timedelta(days=1))
            poll_started = self._clock()
            try:
                polled = self.recent_fills(since - timedelta(minutes=5))
            except VenueError as exc:
                # Nothing advances: the next bar polls the same window again.
                log.warning("mt5_fill_poll_failed", symbol=bar.symbol, error=str(exc))
                return []
            fills = [f for f in polled if f.fill.fill_id not in self._seen_fills]
            for f in fills:
                self._seen_fills.add(f.fill.fill_id)
            if fills:
                self._equity.invalidate()
            self._last_poll = poll_started
            return fills

    # ------------------------------------------------------------------ equity

    def equity(self) -> float:
        """Account equity in the deposit currency, as the terminal reports it
        (``account_info().equity``: balance + credit + floating profit of the open
        positions). It is the whole account's: an EA trading the same account moves it too.

        Read at most once per ``equity_ttl_seconds`` unless an order or a fill changed the
        account since (``EquityCache``). Raises ``VenueError`` when the terminal cannot
        answer; the daemon then treats equity as unknown (fail closed)."""
        return self._equity.get()

    def _read_equity(self) -> float:
        info = self.client.account_info()  # VenueError once the client's retries are spent
        if info is None:
            raise TemporaryVenueError(f"MT5 account_info failed: {self.client.last_error}")
        equity: Any = info.get("equity") if isinstance(info, dict) else None
        try:
            return float(equity)
        except (TypeError, ValueError):
            raise PermanentVenueError(
                f"MT5 account_info has no usable equity: {equity!r}") from None

    def position(self, symbol: str) -> Position:
        return self.positions().get(symbol) or Position(symbol)

    def positions(self) -> dict[str, Position]:
        """Our net position per symbol (our magic only). On a hedging account tickets on
        both sides may be open at once (ours are only if someone else opened or closed
        them): the net is ``volume`` and every ticket's lots are ``gross_volume``, so a
        hedged book shows, even when it nets to flat."""
        return _net((p for p in self.client.positions_get() if self._ours(p)),
                    self.client_id_from_comment)

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """``symbol_info().volume_step`` and ``volume_min``; None when the terminal cannot
        tell (the daemon then rounds nothing and lets ``round_volume`` refuse at send)."""
        try:
            info = self._symbol(symbol)
        except VenueError as exc:
            log.warning("mt5_volume_rules_unknown", symbol=symbol, error=str(exc))
            return None
        try:
            step = float(info.get("volume_step") or 0.0)
            vmin = float(info.get("volume_min") or step)
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(step) and step > 0 and math.isfinite(vmin)):
            return None
        return VolumeRules(step, vmin)

    def point(self, symbol: str) -> float | None:
        """The symbol's point (``symbol_info().point``, the smallest price change), for
        stop distances given in points; None when the terminal cannot tell."""
        try:
            info = self._symbol(symbol)
        except VenueError as exc:
            log.warning("mt5_point_unknown", symbol=symbol, error=str(exc))
            return None
        point = info.get("point")
        try:
            value = float(point) if point is not None else 0.0
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) and value > 0 else None

    def open_orders(self) -> list[BrokerOrder]:
        out: list[BrokerOrder] = []
        for o in self.client.orders_get():
            ours = self._ours(o)
            coid = self.client_id_from_comment(str(o.get("comment", ""))) if ours else None
            state = _ACTIVE_STATES.get(int(o.get("state", -1)), OrderState.ACCEPTED)
            initial = float(o.get("volume_initial") or 0.0)
            out.append(BrokerOrder(
                coid, str(o["ticket"]), str(o["symbol"]),
                OrderSide.BUY if int(o.get("type", 0)) in _BUY_TYPES else OrderSide.SELL,
                initial, round(initial - float(o.get("volume_current") or 0.0), 8), state,
                ours=ours, price=float(o.get("price_open") or 0.0) or None,
                time=self.to_utc(float(o.get("time_setup") or 0))))
        return out

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        del fill_kinds
        with self._lock:
            for o in orders:
                self._intents[o.client_order_id] = o.intent
            self._seen_fills.update(f.fill_id for f in fills)
            if fills:
                self._last_poll = max(f.time for f in fills)

    def mark_journaled(self, fills: Sequence[Fill]) -> None:
        """Fills start-up reconciliation found in (or wrote to) the journal: never reported
        by ``on_bar`` again (``reconcile.KnowsJournaledFills``)."""
        with self._lock:
            self._seen_fills.update(f.fill_id for f in fills)

    # ------------------------------------------------------------------ shadow mode

    def foreign_positions(self) -> list[dict[str, Any]]:
        """Positions of other magic numbers (the EA's): read-only, for shadow mode."""
        return [p for p in self.client.positions_get() if not self._ours(p)]

    def foreign_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.client.orders_get() if not self._ours(o)]

    def foreign_net_positions(self) -> dict[str, Position]:
        return _net(iter(self.foreign_positions()), lambda _c: None)


def _net(items: Any, opener: Callable[[str], str | None]) -> dict[str, Position]:
    acc: dict[str, list[tuple[float, float, dict[str, Any]]]] = {}
    for p in items:
        sign = 1.0 if int(p.get("type", 0)) == C.POSITION_TYPE_BUY else -1.0
        acc.setdefault(str(p["symbol"]), []).append(
            (sign * float(p["volume"]), float(p["price_open"]), p))
    out: dict[str, Position] = {}
    for symbol, rows in acc.items():
        net = round(sum(v for v, _, _ in rows), 8)
        gross = round(sum(abs(v) for v, _, _ in rows), 8)
        if gross < 1e-12:
            continue
        same = [(v, px) for v, px, _ in rows if (v > 0) == (net > 0)]
        avg = (sum(abs(v) * px for v, px in same) / sum(abs(v) for v, _ in same)
               if abs(net) >= 1e-12 else 0.0)
        first = rows[0][2]
        out[symbol] = Position(symbol, volume=0.0 if abs(net) < 1e-12 else net, avg_price=avg,
                               stop_loss=float(first.get("sl") or 0.0) or None,
                               take_profit=float(first.get("tp") or 0.0) or None,
                               opened_by=opener(str(first.get("comment", ""))),
                               gross_volume=gross if len(rows) > 1 else None)
    return out


def _with_reason(order: Order, note: str) -> Order:
    return replace(order, reason=(order.reason + "; " if order.reason else "") + note)
