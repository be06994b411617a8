"""ccxt broker (spot): the Broker seam over a crypto exchange, one part per job.

Synchronous ccxt (the executor is a single-worker threaded daemon), rate limiting on,
markets loaded once. One lock serialises the parts: the daemon's thread and the
resolver's may call in at once, and the book, the id maps and the balance cache are
shared between them.

Where each job lives:
- ``ccxt_exchange``: ``make_exchange``; reads retried or refused by what the error means.
- ``ccxt_errors``: what a Binance error code means for us (the table in docs/brokers.md).
- ``ccxt_orders``: where an order leaves the process, and lookup by our client id.
- ``ccxt_spot_protect``: a long's stop and target as one sell OCO at the exchange
  (``ProtectingBroker``); a leg's trades credited to the entry as its exit.
- ``ccxt_markets``: precision, minimum amount and notional, volume step, price tick.
- ``ccxt_fills``: fills from the trade history, and which bars poll for them.
- ``ccxt_book``: spot positions from our own fills, capped by the balance.
- ``ccxt_equity``: balances and the equity of the traded sleeve.
- ``ccxt_ids``: which exchange orders are ours, under which client id.
- ``ccxt_seam``: submit, lookup, open orders, the trade history (shared with the swap broker).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from domain import Bar, Fill, Order, Position
from domain.errors import VenueError
from domain.orders import protected_entry
from executor.brokers.base import BrokerFill, BrokerOrder, VolumeRules
from executor.brokers.ccxt_book import SpotBook
from executor.brokers.ccxt_equity import Balances, SpotEquity
from executor.brokers.ccxt_errors import exchange_code
from executor.brokers.ccxt_exchange import ExchangeReader, make_exchange
from executor.brokers.ccxt_fills import PollSchedule, TradeHistory
from executor.brokers.ccxt_ids import OUR_ID_PREFIX, OrderIds
from executor.brokers.ccxt_markets import MarketRules
from executor.brokers.ccxt_orders import CcxtOrders
from executor.brokers.ccxt_seam import CcxtOrderSeam
from executor.brokers.ccxt_spot_protect import SpotProtection, credited
from executor.brokers.config import CcxtSettings
from executor.brokers.equity_cache import EquityCache

log = structlog.get_logger("dta.ccxt")

__all__ = ["OUR_ID_PREFIX", "CcxtBroker", "exchange_code", "make_exchange"]


class CcxtBroker(CcxtOrderSeam):
    simulated = False
    holds_shorts = False  # spot: a sell needs base asset of ours (guardrails' no_shorts)
    separate_protection = True  # a long's stop and target: a sell OCO (ProtectingBroker)

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
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monotonic = monotonic
        self._lock = threading.RLock()
        reader = ExchangeReader(exchange, settings, name=self.name, lock=self._lock,
                                sleep=sleep)
        self._reader = reader
        self._ids = OrderIds(settings.symbols, id_prefix)
        self._history = TradeHistory(reader, self._ids)
        self._schedule = PollSchedule(settings.catchup_poll_seconds, monotonic)
        self._book = SpotBook(reader, self._ids, self._history.recent_fills,
                              clock=self._clock, history_days=settings.history_days)
        self._balances = Balances(reader, equity_ttl_seconds, monotonic)
        self._spot = SpotEquity(reader, self._balances, self._ids.symbols, clock=self._clock,
                                mark_max_age=timedelta(seconds=mark_max_age_seconds))
        self._rules = MarketRules(reader)
        self._orders = CcxtOrders(reader, self._ids, self._rules, position=self.position,
                                  last_close=self._spot.last_close, answered=self._answered)
        self._equity = EquityCache(self._read_equity, equity_ttl_seconds, monotonic=monotonic)
        self._protect = SpotProtection(reader, self._ids, self._rules, self._orders,
                                       stop_limit_ratio=settings.stop_limit_ratio)

    # ------------------------------------------------------------------ fills
    # (submit, open_orders: ``CcxtOrderSeam``)

    def _answered(self, order: Mapping[str, Any]) -> None:
        """An order's answer: its fills are in the position at once (``ccxt_book``)."""
        self._book.applied_now(self._history.order_fills(order))

    def recent_fills(self, since: datetime, symbols: Sequence[str] | None = None
                     ) -> list[BrokerFill]:
        """Every trade since ``since`` on the scanned symbols, attributed to the client id of
        its order (foreign orders included: reconciliation tells them apart); a trade of a
        protective leg of ours is the exit of its entry (``credited``)."""
        return [credited(f, self._ids) for f in super().recent_fills(since, symbols)]

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        """Our fills on the bar's symbol not reported yet (``ccxt_fills`` says which bars
        poll). A failed poll is logged and retried at the next bar (nothing advances)."""
        with self._lock:
            if self._spot.see(bar):
                self._equity.invalidate()  # equity now covers one more symbol
            if not self._schedule.due(bar):
                return []
            started = self._clock()
            polled_at = (started, self._monotonic())
            since = self._book.last_poll.get(bar.symbol) or (started - timedelta(days=1))
            try:
                fills = self.recent_fills(since - timedelta(minutes=5), [bar.symbol])
            except VenueError as exc:
                log.warning("ccxt_fill_poll_failed", symbol=bar.symbol, error=str(exc)[:200])
                return []
            self._schedule.polled(bar.symbol, polled_at)
            new = self._book.fresh(fills)
            self._book.record(new)
            if new:
                self._account_changed()
            self._book.last_poll[bar.symbol] = started
            return new

    # ------------------------------------------------------------------ protection

    def place_protection(self, legs: Sequence[Order]) -> list[Order]:
        """The stop and target of one long as a sell OCO (or the one there is alone),
        ``ccxt_spot_protect``; each leg accepted, rejected (why) or unknown."""
        with self._lock:
            try:
                if legs:
                    self._schedule.order_sent(legs[0].intent.symbol)
                return self._protect.place(legs)
            finally:
                self._account_changed()  # the OCO locks base asset

    def cancel_protection(self, legs: Sequence[Order]) -> list[Order]:
        with self._lock:
            try:
                return self._protect.cancel(legs)
            finally:
                self._account_changed()

    def within_bar(self, bar: Bar) -> list[BrokerFill]:
        """A live venue's fired legs come with its next poll (``ProtectingBroker``)."""
        del bar
        return []

    def protective_orders(self, symbol: str) -> list[BrokerOrder]:
        with self._lock:
            return self._protect.working(symbol)

    def lookup(self, client_order_id: str) -> Order | None:
        """An order we sent, or a protective leg (its own state, ``ccxt_spot_protect``)."""
        with self._lock:
            if protected_entry(client_order_id) is not None:
                return self._protect.lookup(client_order_id)
            return self._orders.lookup(client_order_id)

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

    def _read_equity(self) -> float:
        with self._lock:
            return self._spot.read()

    def equity_currency(self) -> str:
        """The one currency equity is stated in: the settlement currency of the traded
        markets, for spot their quote currency (``market['settle']`` or
        ``market['quote']``). Symbols quoted in different currencies have no common unit
        without a conversion we do not make: that is refused."""
        with self._lock:
            return self._spot.currency()

    # ------------------------------------------------------------------ market rules

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """The market's amount step and minimum (Binance's LOT_SIZE); None when unknown."""
        with self._lock:
            return self._rules.volume_rules(symbol)

    def point(self, symbol: str) -> float | None:
        """The market's price tick, for ``min_stop_points``; None fails a configured stop
        distance closed."""
        with self._lock:
            return self._rules.point(symbol)

    # ------------------------------------------------------------------ positions

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
        with self._lock:
            return self._book.positions(self._balances.totals)

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        """The book from the journal's fills of this account's orders (all kinds: a
        ``fee`` fill took base asset), so a position older than the exchange's trade
        history is not lost; the trades since the newest of them are added on first use."""
        del fill_kinds
        with self._lock:
            self._book.restore(fills, self._ids.adopt(orders))
