"""MetaTrader 5 broker: the Broker seam over an MT5 terminal, one part per job.

Our orders are told apart from an EA's on the same account by our magic number and a
comment token carrying the client order id (``mt5_ids``). Everything with another magic
(the EA's trades) is never modified: it is only readable, for shadow mode
(``foreign_positions``/``foreign_orders``). One lock serialises the parts: the daemon's
thread and the resolver's may call in at once.

Where each job lives:
- ``mt5_orders``: where an order leaves the process; the retcode table; hedging legs.
- ``mt5_lookup``: our orders found by their comment, never sent again; open orders.
- ``mt5_fills``: our deals as fills, each reported once.
- ``mt5_positions``: positions netted per symbol; the tickets an order must close.
- ``mt5_account``: margin mode (netting or hedging) and equity.
- ``mt5_symbols``: symbol info, volume rules, price rounding, filling mode, point.
- ``mt5_client`` / ``mt5_bridge``: the terminal, in process or over our rpyc bridge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from domain import Bar, Fill, Order, Position
from domain.errors import ConfigError, VenueError
from executor.brokers.base import BrokerFill, BrokerOrder, VolumeRules
from executor.brokers.config import Mt5Settings
from executor.brokers.equity_cache import EquityCache
from executor.brokers.mt5_account import Mt5Account
from executor.brokers.mt5_client import Mt5Client
from executor.brokers.mt5_fills import Mt5Fills
from executor.brokers.mt5_ids import MAX_COMMENT, OrderMarks, comment_token
from executor.brokers.mt5_lookup import Mt5Lookup
from executor.brokers.mt5_orders import Mt5Orders
from executor.brokers.mt5_positions import net_positions
from executor.brokers.mt5_symbols import Mt5Symbols, choose_filling, round_price, round_volume
from executor.brokers.server_time import ServerClock

log = structlog.get_logger("dta.mt5")

__all__ = ["MAX_COMMENT", "Mt5Broker", "choose_filling", "comment_token", "round_price",
           "round_volume"]


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
        self._lock = threading.RLock()
        self._marks = OrderMarks(settings.magic, settings.comment_prefix)
        self._symbols = Mt5Symbols(client)
        self._account = Mt5Account(client)
        self._orders = Mt5Orders(client, settings, self._marks, self._symbols, self._account)
        # The history window is the broker's: it reads ``_clock`` when asked.
        self._lookup = Mt5Lookup(client, self._marks, window=self._window,
                                 hedging=self._account.hedging, to_utc=self.to_utc)
        self._fills = Mt5Fills(client, self._marks, window=self._window, to_utc=self.to_utc)
        self._equity = EquityCache(self._account.read_equity, equity_ttl_seconds,
                                   monotonic=monotonic)

    # ------------------------------------------------------------------ identity, time

    def token(self, client_order_id: str) -> str:
        return self._marks.token(client_order_id)

    def client_id_from_comment(self, comment: str) -> str | None:
        return self._marks.client_id(comment)

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

    # ------------------------------------------------------------------ start-up checks

    def check_server_time(self, symbols: Sequence[str]) -> str:
        """Start-up check of the configured server clock against the terminal: the newest
        tick of ``symbols`` against our UTC clock. Raises ``ConfigError`` (refuse to trade)
        when they disagree; returns what was compared, for the log."""
        newest = 0.0
        for symbol in symbols:
            self._symbols.info(symbol)
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
        return (f"MT5 account {self._account.mode_name()}; "
                f"{self.check_server_time(symbols)}")

    def margin_mode(self) -> int:
        """``account_info().margin_mode``, read once (fixed per account); ``VenueError``
        for a mode we do not know."""
        return self._account.margin_mode()

    def hedging(self) -> bool:
        """An opposite order opens a second ticket here unless it names the one to close."""
        return self._account.hedging()

    # ------------------------------------------------------------------ orders

    def submit(self, order: Order) -> Order:
        with self._lock:
            try:
                return self._orders.submit(order)
            finally:
                self._equity.invalidate()  # margin, and with a fill the position, moved

    def lookup(self, client_order_id: str) -> Order | None:
        """Find our order by its comment token across open orders, history and positions."""
        with self._lock:
            return self._lookup.lookup(client_order_id)

    def open_orders(self) -> list[BrokerOrder]:
        return self._lookup.open_orders()

    # ------------------------------------------------------------------ fills

    def recent_fills(self, since: datetime) -> list[BrokerFill]:
        """Our deals since ``since`` (aware UTC), oldest first; SL/TP exits are attributed
        to the order that opened the position."""
        with self._lock:
            return self._fills.recent(since)

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        """Deals of ours not reported yet (each exactly once across restarts: ``restore``
        seeds the ids the journal already holds). A failed poll is logged and repeated at
        the next bar."""
        with self._lock:
            since = self._fills.last_poll or (self._clock() - timedelta(days=1))
            poll_started = self._clock()
            try:
                polled = self._fills.recent(since - timedelta(minutes=5))
            except VenueError as exc:
                # Nothing advances: the next bar polls the same window again.
                log.warning("mt5_fill_poll_failed", symbol=bar.symbol, error=str(exc))
                return []
            fills = self._fills.unreported(polled)
            if fills:
                self._equity.invalidate()
            self._fills.last_poll = poll_started
            return fills

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        del fill_kinds
        with self._lock:
            for o in orders:
                self._marks.intents[o.client_order_id] = o.intent
            self._fills.restore(fills)

    def mark_journaled(self, fills: Sequence[Fill]) -> None:
        """Fills start-up reconciliation found in (or wrote to) the journal: never reported
        by ``on_bar`` again (``reconcile.KnowsJournaledFills``)."""
        with self._lock:
            self._fills.seen.update(f.fill_id for f in fills)

    # ------------------------------------------------------------------ account

    def equity(self) -> float:
        """Account equity in the deposit currency, as the terminal reports it
        (``account_info().equity``: balance + credit + floating profit of the open
        positions). It is the whole account's: an EA trading the same account moves it too.

        Read at most once per ``equity_ttl_seconds`` unless an order or a fill changed the
        account since (``EquityCache``). Raises ``VenueError`` when the terminal cannot
        answer; the daemon then treats equity as unknown (fail closed)."""
        return self._equity.get()

    def position(self, symbol: str) -> Position:
        return self.positions().get(symbol) or Position(symbol)

    def positions(self) -> dict[str, Position]:
        """Our net position per symbol (our magic only); on a hedging account every
        ticket's lots are ``gross_volume``, so a hedged book shows even when it nets to
        flat (``mt5_positions``)."""
        return net_positions((p for p in self.client.positions_get() if self._marks.ours(p)),
                             self._marks.client_id)

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """``symbol_info().volume_step`` and ``volume_min``; None when the terminal cannot
        tell (the daemon then rounds nothing and lets ``round_volume`` refuse at send)."""
        return self._symbols.volume_rules(symbol)

    def point(self, symbol: str) -> float | None:
        """The symbol's point, for stop distances given in points; None when unknown."""
        return self._symbols.point(symbol)

    # ------------------------------------------------------------------ shadow mode

    def foreign_positions(self) -> list[dict[str, Any]]:
        """Positions of other magic numbers (the EA's): read-only, for shadow mode."""
        return [p for p in self.client.positions_get() if not self._marks.ours(p)]

    def foreign_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.client.orders_get() if not self._marks.ours(o)]

    def foreign_net_positions(self) -> dict[str, Position]:
        return net_positions(iter(self.foreign_positions()), lambda _c: None)
