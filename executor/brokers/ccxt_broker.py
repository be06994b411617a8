"""ccxt broker (spot): where an order leaves the process for a crypto exchange.

Synchronous ccxt (the executor is a single-worker threaded daemon), rate limiting on,
markets loaded once. Our client order id travels as the unified ``clientOrderId`` param
(ccxt sends it as Binance's ``newClientOrderId``) and comes back through
``fetch_order(..., {"origClientOrderId": id})``, which is how an order whose outcome we do
not know is found without sending it again.

Error mapping (``executor.brokers.ccxt_errors``: by Binance's error code, which does not
depend on the request URL as ccxt's exception classes do; the table is in docs/brokers.md):
- on submit: network or server-side (``RequestTimeout``, 5xx, -1007 ...) -> ``unknown``,
  settled by lookup, never re-sent; -1021 (timestamp) -> time resynced
  (``load_time_difference``) and sent once more with the *same* client id (the exchange
  refused the first, nothing was placed); a refusal (-1013 filters, 11xx parameters and
  precision, -2010 insufficient balance, key and signature errors) -> ``rejected`` with
  the reason, not retried; a rate limit (HTTP 429 / 418, -1003, -1015: refused, per
  Binance's "HTTP Return Codes") -> ``rejected``; -2010 "Duplicate order sent." ->
  ``unknown`` (an open order with our id exists: lookup adopts it); anything else
  ``unknown``.
- on reads: network or server-side errors retried with backoff, then
  ``TemporaryVenueError``; a rate limit is not retried at once (the venue asks us
  to back off) but raised as ``TemporaryVenueError``; -1021 resyncs first;
  -2013/-2011 (no such order) reach the caller as ``ccxt.OrderNotFound``; anything else
  ``PermanentVenueError``.

Spot has no positions: ``positions()`` is the net of our own fills (orders whose client id
we sent), with a commission paid in the base asset netted out (Binance charges the fee "in
the asset you receive": a buy of 0.001 BTC credits 0.000999), and capped by what the
account's balance holds of that asset (``fetch_balance``): the balance is the venue's
truth, so a journal that believes in more than the account holds shows as a mismatch at
reconciliation instead of agreeing with itself. The book is restored from the journal's
fills (``restore``; a position older than the exchange's trade history survives a
restart), then brought up to date from the trade history; without a journal it is built
from ``history_days`` of trades. A base-asset fee is reported as a fill of kind ``fee``
(a sale of that much of the base asset at the trade price, no proceeds: the entry fill
carries the fee's quote value), so the journal's positions net it the same way. A sell
that would exceed our long is cut to what we hold (a closing sell must neither fail for
the fee's dust nor sell inventory that is not ours). Protective SL/TP are not attached on
spot (Binance spot has no attached stops); the order's journal reason says so.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from pydantic import SecretStr

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
from executor.brokers.base import BrokerFill, BrokerOrder, VolumeRules
from executor.brokers.ccxt_errors import Outcome, classify, exchange_code
from executor.brokers.config import CcxtSettings
from executor.brokers.equity_cache import EquityCache

log = structlog.get_logger("dta.ccxt")

T = TypeVar("T")

# Client ids the daemon generates (domain.orders.client_order_id) start with this.
OUR_ID_PREFIX = "dta"

__all__ = ["OUR_ID_PREFIX", "CcxtBroker", "exchange_code", "make_exchange"]


def make_exchange(settings: CcxtSettings, *, api_key: SecretStr | str | None = None,
                  secret: SecretStr | str | None = None,
                  api_urls: Mapping[str, str] | None = None) -> Any:
    """A configured sync ccxt exchange. ``api_urls`` overrides entries of ``urls['api']``
    (tests point them at a loopback fake; an operator could use it for a proxy)."""
    import ccxt

    cls = getattr(ccxt, settings.exchange, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(f"ccxt has no exchange {settings.exchange!r}")
    options: dict[str, Any] = {"defaultType": "spot", "adjustForTimeDifference": False}
    if settings.exchange.startswith("binance"):
        # Spot only: skip the private currencies call, the futures exchangeInfo calls and
        # the margin-pairs calls that load_markets would otherwise make.
        options.update({"fetchCurrencies": False, "fetchMargins": False,
                        "fetchMarkets": {"types": ["spot"]},
                        "recvWindow": settings.recv_window_ms,
                        "warnOnFetchOpenOrdersWithoutSymbol": False})
    options.update(settings.options)
    config: dict[str, Any] = {"enableRateLimit": settings.enable_rate_limit,
                              "timeout": settings.timeout_ms, "options": options}
    if settings.rate_limit_ms is not None:
        config["rateLimit"] = settings.rate_limit_ms
    if api_key is not None:
        config["apiKey"] = (api_key.get_secret_value() if isinstance(api_key, SecretStr)
                            else api_key)
    if secret is not None:
        config["secret"] = (secret.get_secret_value() if isinstance(secret, SecretStr)
                            else secret)
    exchange = cls(config)
    if settings.sandbox:
        exchange.set_sandbox_mode(True)
    if api_urls:
        exchange.urls["api"] = {**exchange.urls["api"], **dict(api_urls)}
    return exchange


def _ccxt() -> Any:
    import ccxt

    return ccxt


class CcxtBroker:
    simulated = False
    holds_shorts = False  # spot: a sell needs base asset of ours (guardrails' no_shorts)

    def __init__(self, exchange: Any, settings: CcxtSettings, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] | None = None,
                 id_prefix: str = OUR_ID_PREFIX,
                 equity_ttl_seconds: float = 1.0,
                 mark_max_age_seconds: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.exchange = exchange
        self.settings = settings
        self.name = f"ccxt:{exchange.id}"
        self.id_prefix = id_prefix
        self._sleep = sleep
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._markets_loaded = False
        self._intents: dict[str, OrderIntent] = {}
        self._symbol_of: dict[str, str] = {}
        self._coid_of: dict[str, str] = {}  # exchange order id -> client order id
        self._seen_fills: set[str] = set()
        self._last_price: dict[str, float] = {}
        self._last_poll: dict[str, datetime] = {}  # newest fill time seen: polls start here
        # symbol -> (wall clock, monotonic) of the last fill poll; symbols ordered since.
        self._polled_at: dict[str, tuple[datetime, float]] = {}
        self._sent_since_poll: set[str] = set()
        self._monotonic = monotonic
        self._book: dict[str, Position] | None = None
        self._book_pending = False  # restored from the journal, not yet brought up to date
        # (monotonic, generation, totals) of the last balance read; shared by equity and
        # positions, dropped whenever the account changes under us.
        self._balances: tuple[float, int, dict[str, float]] | None = None
        self._generation = 0
        self._balance_ttl = equity_ttl_seconds
        # symbol -> (price, as of): the newest closed bar's close or ticker, for equity.
        self._mark: dict[str, tuple[float, datetime]] = {}
        self._mark_max_age = timedelta(seconds=mark_max_age_seconds)
        self._equity = EquityCache(self._read_equity, equity_ttl_seconds, monotonic=monotonic)

    # ------------------------------------------------------------------ plumbing

    def _read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """A read: network and server-side errors retried with backoff, a timestamp refusal
        after a time resync. A rate limit is raised at once (retryable): retrying it
        within the cycle is what turns a 429 into a 418 ban. No such order reaches the
        caller as ``ccxt.OrderNotFound``, whatever class ccxt chose for the URL."""
        c = _ccxt()
        last: BaseException | None = None
        for attempt in range(self.settings.read_retries + 1):
            if attempt:
                self._sleep(self.settings.read_backoff_seconds * 2 ** (attempt - 1))
            try:
                return fn(*args)
            except c.BaseError as exc:
                seen = classify(exc)
                last = exc
                if seen.outcome is Outcome.TIMESTAMP:
                    self._resync_time()
                elif seen.outcome is Outcome.TRANSIENT:
                    log.warning("ccxt_read_retry", call=what, error=str(exc)[:200],
                                attempt=attempt + 1)
                elif seen.outcome is Outcome.RATE_LIMITED:
                    log.warning("ccxt_rate_limited", call=what, error=str(exc)[:200])
                    raise TemporaryVenueError(f"{self.name} {what}: rate limited by the exchange, "
                                              f"backing off: {str(exc)[:200]}") from None
                elif seen.outcome is Outcome.NOT_FOUND and not isinstance(
                        exc, c.OrderNotFound):
                    raise c.OrderNotFound(str(exc)) from exc
                else:
                    raise
        raise TemporaryVenueError(f"{self.name} {what} failed after "
                                  f"{self.settings.read_retries + 1} attempts: {last}")

    def _resync_time(self) -> None:
        try:
            diff = self.exchange.load_time_difference()
            log.warning("ccxt_time_resynced", time_difference_ms=diff)
        except Exception as exc:  # the retry that follows will tell
            log.warning("ccxt_time_resync_failed", error=str(exc)[:200])

    def ensure_markets(self) -> None:
        """Markets are loaded once per process (the endpoint is heavy and rate-limited)."""
        with self._lock:
            if not self._markets_loaded:
                self._read("load_markets", self.exchange.load_markets)
                self._markets_loaded = True

    def _symbols(self) -> list[str]:
        seen: dict[str, None] = dict.fromkeys(self.settings.symbols)
        seen.update(dict.fromkeys(self._symbol_of.values()))
        return list(seen)

    def _is_ours(self, coid: str | None) -> bool:
        return bool(coid) and (coid in self._intents or str(coid).startswith(self.id_prefix))

    # ------------------------------------------------------------------ submit

    def submit(self, order: Order) -> Order:
        with self._lock:
            try:
                return self._submit(order)
            finally:
                self._account_changed()  # a fill moves balances (and pays a fee)

    def _submit(self, order: Order) -> Order:
        c = _ccxt()
        intent = order.intent
        symbol = intent.symbol
        self._sent_since_poll.add(symbol)  # its fills must show at the next bar
        self._intents[intent.client_order_id] = intent
        self._symbol_of[intent.client_order_id] = symbol
        try:
            self.ensure_markets()
            market = self.exchange.market(symbol)
            amount = float(self.exchange.amount_to_precision(symbol, intent.volume))
            price = (float(self.exchange.price_to_precision(symbol, intent.price))
                     if intent.price is not None and intent.order_type is OrderType.LIMIT
                     else None)
        except (VenueError, c.BaseError) as exc:
            return order.transition(OrderState.REJECTED, reason=f"not sent: {exc}")
        if intent.order_type is OrderType.STOP:
            return order.transition(OrderState.REJECTED,
                                    reason="not sent: stop orders are not supported on spot")
        if intent.order_type is OrderType.LIMIT and price is None:
            return order.transition(OrderState.REJECTED, reason="not sent: limit without price")
        cut = ""
        if intent.side is OrderSide.SELL:
            amount, cut = self._sell_amount(symbol, amount)
        limits = market.get("limits") or {}
        amount_min = (limits.get("amount") or {}).get("min")
        cost_min = (limits.get("cost") or {}).get("min")
        if amount_min is not None and amount < float(amount_min):
            return order.transition(OrderState.REJECTED,
                                    reason=f"not sent: amount {amount} below the market "
                                           f"minimum {amount_min}")
        ref = price or self._last_price.get(symbol)
        if cost_min is not None and ref is not None and amount * ref < float(cost_min):
            return order.transition(OrderState.REJECTED,
                                    reason=f"not sent: notional {amount * ref:.8g} below the "
                                           f"market minimum {cost_min}")
        note = ("protective SL/TP not attached (spot)"
                if intent.stop_loss is not None or intent.take_profit is not None else "")
        note = _join(cut, note)
        otype = "market" if intent.order_type is OrderType.MARKET else "limit"
        params = {"clientOrderId": intent.client_order_id}
        response: dict[str, Any] | None = None
        for attempt in range(2):
            try:
                response = self.exchange.create_order(symbol, otype, intent.side.value, amount,
                                                      price, params)
                break
            except Exception as exc:  # every outcome is mapped below
                nonce = (isinstance(exc, c.BaseError)
                         and classify(exc).outcome is Outcome.TIMESTAMP)
                if nonce and attempt == 0:
                    # Refused for its timestamp: nothing was placed. Resync, same id again.
                    self._resync_time()
                    continue
                return self._submit_error(order, exc, nonce)
        assert response is not None
        seen = self._from_ccxt(intent, response)
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

    def _sell_amount(self, symbol: str, amount: float) -> tuple[float, str]:
        """A sell cut to our long when we hold less than it asks: after a buy whose fee was
        paid in the base asset we hold a little less than we bought, and the rest of the
        account's base asset is not ours to sell. With no long of ours the order goes as
        asked (the exchange judges the balance); when our holding cannot be read it goes
        as asked too, and the exchange refuses what the account cannot cover."""
        try:
            held = self.position(symbol).volume
        except VenueError as exc:
            log.warning("ccxt_holding_unknown", symbol=symbol, error=str(exc)[:200])
            return amount, ""
        if held <= 0 or amount <= held + 1e-12:
            return amount, ""
        cut = float(self.exchange.amount_to_precision(symbol, held))
        return cut, f"sell cut from {amount:.8g} to our holding {held:.8g}"

    def _submit_error(self, order: Order, exc: BaseException, nonce: bool) -> Order:
        c = _ccxt()
        text = f"{exc.__class__.__name__}: {str(exc)[:300]}"
        if nonce:
            return order.transition(OrderState.REJECTED,
                                    reason=f"timestamp outside recvWindow after a time "
                                           f"resync: {text}")
        if not isinstance(exc, c.BaseError):
            return order.transition(OrderState.UNKNOWN, reason=f"outcome unknown: {text}")
        outcome = classify(exc).outcome
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

    # ------------------------------------------------------------------ lookup

    def lookup(self, client_order_id: str) -> Order | None:
        c = _ccxt()
        with self._lock:
            symbol = self._symbol_of.get(client_order_id)
            symbols = [symbol] if symbol else list(self.settings.symbols)
            if not symbols:
                raise PermanentVenueError(
                    f"cannot look up {client_order_id}: its symbol is unknown")
            self.ensure_markets()
            for sym in symbols:
                try:
                    found = self._read("fetch_order", self.exchange.fetch_order, None, sym,
                                       {"origClientOrderId": client_order_id})
                except c.OrderNotFound:
                    continue
                except c.BaseError as exc:
                    raise PermanentVenueError(
                        f"{self.name} fetch_order {client_order_id}: {exc}") from None
                self._symbol_of[client_order_id] = sym
                return self._from_ccxt(self._intents.get(client_order_id), found,
                                       client_order_id)
            return None

    def _from_ccxt(self, intent: OrderIntent | None, o: Mapping[str, Any],
                   coid: str | None = None) -> Order:
        coid = coid or str(o.get("clientOrderId") or "")
        if o.get("id") is not None:
            self._coid_of[str(o["id"])] = coid
        if intent is None:
            intent = OrderIntent(
                coid, "", str(o.get("symbol") or ""), OrderSide(str(o.get("side") or "buy")),
                float(o.get("amount") or 0.0),
                OrderType.LIMIT if o.get("type") == "limit" else OrderType.MARKET,
                datetime.fromtimestamp((o.get("timestamp") or 0) / 1000, UTC),
                price=o.get("price"))
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

    # ------------------------------------------------------------------ reconciliation

    def open_orders(self) -> list[BrokerOrder]:
        self.ensure_markets()
        out: list[BrokerOrder] = []
        for sym in self._symbols():
            for o in self._read("fetch_open_orders", self.exchange.fetch_open_orders, sym):
                coid = str(o.get("clientOrderId") or "") or None
                state = self._from_ccxt(self._intents.get(coid or ""), o, coid).state
                out.append(BrokerOrder(
                    coid, str(o["id"]), sym, OrderSide(str(o.get("side") or "buy")),
                    float(o.get("amount") or 0.0), float(o.get("filled") or 0.0), state,
                    ours=self._is_ours(coid), price=o.get("price"),
                    time=datetime.fromtimestamp((o.get("timestamp") or 0) / 1000, UTC)))
        return out

    def recent_fills(self, since: datetime, symbols: Sequence[str] | None = None
                     ) -> list[BrokerFill]:
        """Every trade since ``since`` on the scanned symbols, attributed to the client id of
        its order (foreign orders included: reconciliation tells them apart)."""
        self.ensure_markets()
        since_ms = int(since.timestamp() * 1000)
        out: list[BrokerFill] = []
        for sym in symbols or self._symbols():
            trades = self._paged("fetch_my_trades", self.exchange.fetch_my_trades, sym,
                                 since_ms)
            unknown = {str(t["order"]) for t in trades if str(t["order"]) not in self._coid_of}
            if unknown:
                for o in self._paged("fetch_orders", self.exchange.fetch_orders, sym, since_ms):
                    if o.get("id") is not None:
                        self._coid_of[str(o["id"])] = str(o.get("clientOrderId") or "")
            market = self.exchange.market(sym)
            for t in trades:
                out.extend(self._trade_fills(sym, market, t))
        out.sort(key=lambda f: (f.fill.time, f.fill.fill_id))
        return out

    def _trade_fills(self, sym: str, market: Mapping[str, Any],
                     t: Mapping[str, Any]) -> list[BrokerFill]:
        """One trade: the entry fill, and a ``fee`` fill when the commission was paid in
        the base asset (the inventory it took). The entry's ``fee`` is the commission's
        value in the quote currency; one paid in a third asset (BNB) is not valued (no
        market for it is loaded) and moves no position."""
        coid = self._coid_of.get(str(t["order"])) or f"exchange:{t['order']}"
        fee = t.get("fee") or {}
        fee_cost = float(fee.get("cost") or 0.0)
        price = float(t["price"])
        fill_id = f"{self.exchange.id}:{sym}:{t['id']}"
        when = datetime.fromtimestamp(int(t["timestamp"]) / 1000, UTC)
        currency = fee.get("currency")
        quote_fee = (fee_cost if currency == market.get("quote")
                     else fee_cost * price if currency == market.get("base") else 0.0)
        out = [BrokerFill(Fill(coid, fill_id, sym, OrderSide(str(t["side"])), when, price,
                               float(t["amount"]), quote_fee), "entry", 0.0, None)]
        if currency == market.get("base") and fee_cost > 0:
            out.append(BrokerFill(Fill(coid, f"{fill_id}:fee", sym, OrderSide.SELL, when,
                                       price, fee_cost, 0.0), "fee", 0.0, None))
        return out

    def _paged(self, what: str, fn: Callable[..., list[dict[str, Any]]], symbol: str,
               since_ms: int, limit: int = 500) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        start = since_ms
        for _ in range(self.settings.max_catchup_pages):
            page = self._read(what, fn, symbol, start, limit)
            fresh = [r for r in page if str(r.get("id")) not in seen]
            for r in fresh:
                seen.add(str(r.get("id")))
            rows.extend(fresh)
            if len(page) < limit or not fresh:
                break
            start = int(max(int(r.get("timestamp") or 0) for r in page))
        return rows

    # ------------------------------------------------------------------ Broker protocol rest

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        """Our fills on the bar's symbol not reported yet. A failed poll is logged and
        retried at the next bar (nothing advances).

        The poll (``myTrades``, rate-limited and heavy) runs for a bar that closed after
        the last poll (live: every new bar) or after an order we sent since; bars a
        catch-up replays closed before it and share one poll per
        ``catchup_poll_seconds``, so a long catch-up does not spend one request per bar
        and miss the bar closes behind it."""
        with self._lock:
            self._last_price[bar.symbol] = bar.close
            mark = self._mark.get(bar.symbol)
            if mark is None and bar.symbol not in self._symbols():
                self._equity.invalidate()  # equity now covers one more symbol
            if mark is None or bar.close_time >= mark[1]:  # catch-up bars are older
                self._mark[bar.symbol] = (bar.close, bar.close_time)
            if not self._poll_due(bar):
                return []
            started = self._clock()
            polled_at = (started, self._monotonic())
            since = self._last_poll.get(bar.symbol) or (started - timedelta(days=1))
            try:
                fills = self.recent_fills(since - timedelta(minutes=5), [bar.symbol])
            except VenueError as exc:
                log.warning("ccxt_fill_poll_failed", symbol=bar.symbol, error=str(exc)[:200])
                return []
            self._sent_since_poll.discard(bar.symbol)
            self._polled_at[bar.symbol] = polled_at
            new = [f for f in fills if f.fill.fill_id not in self._seen_fills
                   and self._is_ours(f.fill.client_order_id)]
            for f in new:
                self._seen_fills.add(f.fill.fill_id)
                self._apply(f.fill)
            if new:
                self._account_changed()
            self._last_poll[bar.symbol] = started
            return new

    def _poll_due(self, bar: Bar) -> bool:
        last = self._polled_at.get(bar.symbol)
        if last is None or bar.symbol in self._sent_since_poll:
            return True
        at, mono = last
        return (bar.close_time > at
                or self._monotonic() - mono >= self.settings.catchup_poll_seconds)

    # ------------------------------------------------------------------ equity

    def equity(self) -> float:
        """Equity of the traded sleeve of the account, in ``equity_currency()``: the total
        (free + locked) balance of that currency plus the total balance of each traded
        symbol's base asset valued at a recent price. Assets no configured symbol trades
        (another coin, a fee token) are left out: they are not this daemon's risk, and
        valuing them would need markets we do not load.

        The price is the close of the newest closed bar ``on_bar`` saw when that bar closed
        less than ``mark_max_age_seconds`` ago: live, the cycle runs seconds after the
        close, so that close is as fresh as a ticker and costs no request. Otherwise (start
        up, catch-up bars from hours ago, a symbol on a slower timeframe) one
        ``fetch_ticker`` gives the last trade price: valuing today's balances at a
        historical close would show a profit or loss that never happened to the daily loss
        limit and the drawdown monitors.

        Read at most once per ``equity_ttl_seconds`` unless an order or a fill changed the
        account since (``EquityCache``). Every failure is a ``VenueError``."""
        return self._equity.get()

    def _traded(self) -> list[str]:
        """The symbols equity covers: configured, ordered, or seen in a bar (the daemon's
        streams reach ``on_bar`` before any decision, even when ``ccxt.symbols`` is empty)."""
        return list(dict.fromkeys([*self._symbols(), *self._mark]))

    def equity_currency(self) -> str:
        """The one currency equity is stated in: the settlement currency of the traded
        markets, for spot their quote currency (``market['settle']`` or
        ``market['quote']``). Symbols quoted in different currencies have no common unit
        without a conversion we do not make: that is refused."""
        with self._lock:
            self.ensure_markets()
            by_currency: dict[str, list[str]] = {}
            for sym in self._traded():
                market = self.exchange.market(sym)
                code = str(market.get("settle") or market["quote"])
                by_currency.setdefault(code, []).append(sym)
            if len(by_currency) != 1:
                detail = ("no symbol known yet (ccxt.symbols is empty and no bar was "
                          "seen)" if not by_currency else
                          "; ".join(f"{c}: {', '.join(s)}" for c, s in by_currency.items()))
                raise PermanentVenueError(f"{self.name}: cannot state equity in one currency: "
                                          f"{detail}")
            return next(iter(by_currency))

    def _precision_step(self, symbol: str, field: str) -> tuple[float, Mapping[str, Any]] | None:
        """The market's smallest step of ``field`` ("price" or "amount") and the market.
        ``precision[field]`` is the step itself when the exchange class counts precision
        in ``TICK_SIZE`` (binance), a number of decimals under ``DECIMAL_PLACES`` (step
        ``10**-n``); under ``SIGNIFICANT_DIGITS`` the step depends on the value: None."""
        c = _ccxt()
        with self._lock:
            self.ensure_markets()
            try:
                market = self.exchange.market(symbol)
            except c.BaseError:
                return None
            raw = (market.get("precision") or {}).get(field)
            if raw is None:
                return None
            mode = getattr(self.exchange, "precisionMode", None)
            if mode == c.TICK_SIZE:
                step = float(raw)
            elif mode == c.DECIMAL_PLACES:
                step = 10.0 ** -float(raw)
            else:
                return None
            return (step, market) if math.isfinite(step) and step > 0 else None

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """The market's amount step and minimum (``limits['amount']['min']``: Binance's
        LOT_SIZE minQty). None when unknown."""
        found = self._precision_step(symbol, "amount")
        if found is None:
            return None
        step, market = found
        vmin = ((market.get("limits") or {}).get("amount") or {}).get("min")
        minimum = float(vmin) if vmin is not None else step
        return VolumeRules(step, max(minimum, step)) if math.isfinite(minimum) else None

    def point(self, symbol: str) -> float | None:
        """The market's price tick, for ``min_stop_points`` (the MT5 ``point`` of a ccxt
        market); unknown (None) makes a configured stop distance fail closed."""
        found = self._precision_step(symbol, "price")
        return None if found is None else found[0]

    def _read_equity(self) -> float:
        c = _ccxt()
        with self._lock:
            try:
                currency = self.equity_currency()
                total = self._totals()
                equity = _amount(total.get(currency))
                bases: dict[str, str] = {}
                for sym in self._traded():
                    bases.setdefault(str(self.exchange.market(sym)["base"]), sym)
                for base, sym in bases.items():
                    held = _amount(total.get(base))
                    if held:
                        equity += held * self._mark_price(sym)
            except VenueError:
                raise
            except c.BaseError as exc:
                raise VenueError(f"{self.name} equity: {exc.__class__.__name__}: "
                                 f"{str(exc)[:300]}",
                                  retryable=isinstance(exc, c.NetworkError)) from None
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise PermanentVenueError(f"{self.name} equity: unexpected balance or ticker: "
                                          f"{exc.__class__.__name__}: {exc}") from None
            return equity

    def _mark_price(self, symbol: str) -> float:
        now = self._clock()
        mark = self._mark.get(symbol)
        if mark is not None and now - mark[1] <= self._mark_max_age:
            return mark[0]
        ticker = self._read("fetch_ticker", self.exchange.fetch_ticker, symbol)
        price = ticker.get("last") or ticker.get("close")
        if not price and ticker.get("bid") and ticker.get("ask"):
            price = (float(ticker["bid"]) + float(ticker["ask"])) / 2
        if not price or not math.isfinite(float(price)) or float(price) <= 0:
            raise TemporaryVenueError(f"{self.name}: no price for {symbol} in its ticker")
        self._mark[symbol] = (float(price), now)
        return float(price)

    def position(self, symbol: str) -> Position:
        return self.positions().get(symbol) or Position(symbol)

    def positions(self) -> dict[str, Position]:
        """Our fills net of base-asset fees, capped by the account's balance of each base
        asset (one balance read per ``equity_ttl_seconds``, shared with equity). The cap
        is logged: it means the account holds less than our fills say (a withdrawal, a
        fee we did not see), and reconciliation reports the difference. When the balance
        cannot be read the book is returned uncapped (logged): the decision path must not
        fail on it, and equity, read from the same balance, is then unknown, which vetoes
        new exposure anyway."""
        c = _ccxt()
        with self._lock:
            book = self._current_book()
            out: dict[str, Position] = {}
            if not any(not p.is_flat for p in book.values()):
                return out
            try:
                total = self._totals()
            except VenueError as exc:
                log.warning("ccxt_balance_unavailable", error=str(exc)[:200])
                return {s: p for s, p in book.items() if not p.is_flat}
            try:
                left: dict[str, float] = {}
                for sym, pos in book.items():
                    if pos.is_flat:
                        continue
                    base = str(self.exchange.market(sym)["base"])
                    have = left.setdefault(base, _amount(total.get(base)))
                    if pos.volume > have + 1e-12:
                        log.error("ccxt_position_exceeds_balance", symbol=sym,
                                  ours=pos.volume, balance=have, asset=base)
                        pos = replace(pos, volume=round(max(have, 0.0), 12))
                    if pos.volume > 0:
                        left[base] = have - pos.volume
                    if not pos.is_flat:
                        out[sym] = pos
            except c.BaseError as exc:
                raise VenueError(f"{self.name} positions: {exc.__class__.__name__}: "
                                 f"{str(exc)[:300]}",
                                  retryable=isinstance(exc, c.NetworkError)) from None
            return out

    def _current_book(self) -> dict[str, Position]:
        """The book, built on first use: from the exchange's trades of ``history_days``
        without a journal; after ``restore``, the journal's fills plus the trades since
        the newest of them (fills made while we were down; reconciliation journals them)."""
        if self._book is None:
            self._book = {}
            since = self._clock() - timedelta(days=self.settings.history_days)
            # All of it, fills on_bar already reported included (they were not applied).
            self._take_fills(self.recent_fills(since), fresh_only=False)
        elif self._book_pending:
            default = self._clock() - timedelta(days=self.settings.history_days)
            for sym in self._symbols():
                last = self._last_poll.get(sym)
                since = last - timedelta(minutes=5) if last is not None else default
                self._take_fills(self.recent_fills(since, [sym]))
            self._book_pending = False
        return self._book

    def _take_fills(self, fills: Sequence[BrokerFill], *, fresh_only: bool = True) -> None:
        for f in fills:
            if self._is_ours(f.fill.client_order_id) and (
                    not fresh_only or f.fill.fill_id not in self._seen_fills):
                self._seen_fills.add(f.fill.fill_id)
                self._apply(f.fill)

    def _totals(self) -> dict[str, float]:
        """The account's total (free + locked) balance per asset, read at most once per
        ``equity_ttl_seconds`` unless the account changed since."""
        now = self._monotonic()
        cached = self._balances
        if (cached is not None and cached[1] == self._generation
                and now - cached[0] < self._balance_ttl):
            return cached[2]
        generation = self._generation
        balance = self._read("fetch_balance", self.exchange.fetch_balance)
        totals = {str(k): _amount(v) for k, v in (balance.get("total") or {}).items()}
        if generation == self._generation:
            self._balances = (now, generation, totals)
        return totals

    def _account_changed(self) -> None:
        self._generation += 1
        self._balances = None
        self._equity.invalidate()

    def _apply(self, fill: Fill) -> None:
        if self._book is None:
            return  # built from the exchange in full on first use
        pos = self._book.get(fill.symbol) or Position(fill.symbol)
        signed = fill.volume * fill.side.sign
        new = round(pos.volume + signed, 12)
        if pos.is_flat or (pos.volume > 0) == (signed > 0):
            avg = (pos.avg_price * abs(pos.volume) + fill.price * fill.volume) / abs(new)
        elif abs(new) < 1e-12 or (new > 0) == (pos.volume > 0):
            avg = pos.avg_price
        else:
            avg = fill.price
        self._book[fill.symbol] = Position(fill.symbol, volume=new, avg_price=avg)

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        """The book from the journal's fills of this account's orders (all kinds: a
        ``fee`` fill took base asset), so a position older than the exchange's trade
        history is not lost; the trades since the newest of them are added on first use."""
        del fill_kinds
        with self._lock:
            ours: set[str] = set()
            for o in orders:
                ours.add(o.client_order_id)
                self._intents[o.client_order_id] = o.intent
                self._symbol_of[o.client_order_id] = o.intent.symbol
                if o.broker_order_id:
                    self._coid_of[o.broker_order_id] = o.client_order_id
            self._book = {}
            for f in fills:
                if f.client_order_id not in ours:
                    continue  # another account's fill in the same journal
                self._seen_fills.add(f.fill_id)
                self._apply(f)
                self._last_poll[f.symbol] = max(self._last_poll.get(f.symbol, f.time), f.time)
            self._book_pending = True


def _amount(value: Any) -> float:
    """A balance entry: ccxt leaves a currency the exchange did not list as ``None``."""
    return 0.0 if value is None else float(value)


def _join(a: str, b: str) -> str:
    return "; ".join(x for x in (a, b) if x)

