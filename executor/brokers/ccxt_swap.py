"""ccxt broker for perpetual swaps (linear, USDT-margined; Binance USD-M first): the Broker
seam over a futures account, built from the spot broker's parts where the venue behaves
the same and from its own where it does not.

Shared with spot: the exchange reader (``ccxt_exchange``: retries, back-off, the error
table by Binance's code, here with the USD-M codes), our client ids (``ccxt_ids``), market
rules (``ccxt_markets``), the trade history (``ccxt_fills``: USD-M commissions are in
USDT, the quote, so no ``fee`` fill takes inventory). Of its own:
- ``ccxt_swap_account``: one-way mode, margin mode and leverage set at start and
  verified; positions read from the exchange (not rebuilt from fills: the exchange holds
  them, and a stop or a liquidation changes them without an order of ours).
- ``ccxt_swap_orders``: closes and reductions sent ``reduceOnly``.
- ``ccxt_swap_protect``: a filled entry's stop-loss and take-profit as conditional orders
  at the exchange (``protect``), cancelled on request (``cancel_protection``); a leg that
  fired is found and its trades credited to the entry as a ``stop_loss`` /
  ``take_profit`` exit, also after a restart (``restore`` adopts the journaled entries'
  legs).
- funding payments read per symbol (``funding``) with their exchange ids, which the live
  daemon journals as costs (``executor/engine/funding.py``).
- margin terms (``margin_terms``: leverage, margin mode, maintenance brackets), which the
  stop-to-liquidation guardrail estimates a new position's liquidation price from.
Equity is the settlement currency's total from ``fetch_balance`` (Binance
``marginBalance``: wallet balance plus unrealised PnL).

Not yet (issue 19, next steps): the engine calling ``protect`` (journaled first) and
cancelling the other leg, restart reconciliation of legs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from domain import Bar, Fill, Order, OrderSide, Position
from domain.errors import PermanentVenueError, VenueError
from domain.margin import MarginTerms
from executor.brokers.base import BrokerFill, VolumeRules
from executor.brokers.ccxt_equity import Balances
from executor.brokers.ccxt_exchange import ExchangeReader, make_exchange
from executor.brokers.ccxt_fills import PollSchedule, TradeHistory
from executor.brokers.ccxt_ids import OUR_ID_PREFIX, OrderIds
from executor.brokers.ccxt_markets import MarketRules
from executor.brokers.ccxt_seam import CcxtOrderSeam
from executor.brokers.ccxt_swap_account import FundingPayment, SwapAccount
from executor.brokers.ccxt_swap_orders import SwapOrders
from executor.brokers.ccxt_swap_protect import Kind, Leg, SwapProtection, entry_of, protective_id
from executor.brokers.config import CcxtSettings, SwapSettings
from executor.brokers.equity_cache import EquityCache

log = structlog.get_logger("dta.ccxt")

# The ccxt classes traded as perpetual swaps by this broker (its error table is Binance's).
SWAP_EXCHANGES = ("binanceusdm",)

# Linear perpetuals only: load_markets skips spot, margin and the inverse exchangeInfo.
SWAP_OPTIONS: Mapping[str, Any] = {"defaultType": "swap", "defaultSubType": "linear",
                                   "fetchMarkets": {"types": ["linear"]}}


def make_swap_exchange(settings: CcxtSettings, **kwargs: Any) -> Any:
    """``make_exchange`` with the swap defaults under the configured ``options``."""
    options = {**SWAP_OPTIONS, **settings.options}
    return make_exchange(settings.model_copy(update={"options": options}), **kwargs)


class CcxtSwapBroker(CcxtOrderSeam):
    simulated = False
    holds_shorts = True

    def __init__(self, exchange: Any, settings: CcxtSettings, swap: SwapSettings, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] | None = None,
                 id_prefix: str = OUR_ID_PREFIX, equity_ttl_seconds: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.exchange = exchange
        self.settings = settings
        self.name = f"ccxt:{exchange.id}"
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monotonic = monotonic
        self._lock = threading.RLock()
        reader = ExchangeReader(exchange, settings, name=self.name, lock=self._lock,
                                sleep=sleep)
        if not reader.futures:
            raise PermanentVenueError(f"{self.name}: not a futures exchange (defaultType "
                                      f"{exchange.options.get('defaultType')!r})")
        self._reader = reader
        self._ids = OrderIds(settings.symbols, id_prefix)
        self._history = TradeHistory(reader, self._ids)
        self._schedule = PollSchedule(settings.catchup_poll_seconds, monotonic)
        self._rules = MarketRules(reader)
        self.account = SwapAccount(reader, swap, settings.symbols)
        self._closes: dict[str, float] = {}
        self._orders = SwapOrders(reader, self._ids, self._rules, account=self.account,
                                  last_close=self._closes.get,
                                  unprotected_entries=swap.unprotected_entries)
        self._balances = Balances(reader, equity_ttl_seconds, monotonic)
        self._equity = EquityCache(self._read_equity, equity_ttl_seconds, monotonic=monotonic)
        self.protection = SwapProtection(reader, self._ids, swap.trigger_price)
        self._seen: set[str] = set()
        self._last_poll: dict[str, datetime] = {}

    def configure(self) -> str:
        """One-way mode, margin mode and leverage, set and verified (``ConfigError``)."""
        with self._lock:
            return self.account.configure()

    # ------------------------------------------------------------------ fills
    # (submit, lookup, open_orders, recent_fills: ``CcxtOrderSeam``)

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        """Our fills on the bar's symbol not reported yet; a failed poll is retried at the
        next bar (nothing advances)."""
        with self._lock:
            self._closes[bar.symbol] = bar.close
            if not self._schedule.due(bar):
                return []
            started = self._clock()
            since = self._last_poll.get(bar.symbol) or (started - timedelta(days=1))
            try:
                self.protection.link_triggered(bar.symbol)  # before its trades are read
                fills = self.recent_fills(since - timedelta(minutes=5), [bar.symbol])
            except VenueError as exc:
                log.warning("ccxt_fill_poll_failed", symbol=bar.symbol, error=str(exc)[:200])
                return []
            self._schedule.polled(bar.symbol, (started, self._monotonic()))
            new = [_credited(f) for f in fills if f.fill.fill_id not in self._seen
                   and self._ids.is_ours(f.fill.client_order_id)]
            self._seen.update(f.fill.fill_id for f in new)
            if new:
                self._account_changed()
            self._last_poll[bar.symbol] = started
            return new

    # ------------------------------------------------------------------ protection

    def protect(self, entry: Order) -> list[Leg]:
        """Place the stop-loss and take-profit of a filled ``entry`` at the exchange, each
        reduce-only for the filled volume under its deterministic id; a leg's status says
        how it went (``would_trigger``: close the position now)."""
        intent = entry.intent
        if entry.filled_volume <= 0:
            return []
        side = OrderSide.SELL if intent.side is OrderSide.BUY else OrderSide.BUY
        legs = []
        with self._lock:
            for kind, trigger in ((Kind.STOP_LOSS, intent.stop_loss),
                                  (Kind.TAKE_PROFIT, intent.take_profit)):
                if trigger is not None:
                    legs.append(self.protection.place(
                        intent.symbol, kind, side, entry.filled_volume, trigger,
                        protective_id(intent.client_order_id, kind)))
        return legs

    def cancel_protection(self, entry_client_id: str, symbol: str) -> list[str]:
        """Cancel both legs of an entry (its position closed another way); the ids the
        exchange still held."""
        with self._lock:
            return [cid for kind in Kind
                    if self.protection.cancel(cid := protective_id(entry_client_id, kind),
                                              symbol)]

    # ------------------------------------------------------------------ account

    def equity(self) -> float:
        """Margin balance (wallet + unrealised PnL) in ``equity_currency()``."""
        return self._equity.get()

    def _read_equity(self) -> float:
        with self._lock:
            return self._balances.totals().get(self.equity_currency(), 0.0)

    def equity_currency(self) -> str:
        """The settlement currency of the traded markets (USDT for USD-M)."""
        with self._lock:
            self._reader.ensure_markets()
            codes = {str(self.exchange.market(s)["settle"]) for s in self._ids.symbols()}
            if len(codes) != 1:
                raise PermanentVenueError(f"{self.name}: markets settle in {sorted(codes)}")
            return codes.pop()

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        with self._lock:
            return self._rules.volume_rules(symbol)

    def point(self, symbol: str) -> float | None:
        with self._lock:
            return self._rules.point(symbol)

    # ------------------------------------------------------------------ positions

    def position(self, symbol: str) -> Position:
        return self.positions().get(symbol) or Position(symbol)

    def positions(self) -> dict[str, Position]:
        """The exchange's positions (``fetch_positions``), read afresh."""
        with self._lock:
            return self.account.positions()

    def liquidation_price(self, symbol: str) -> float | None:
        with self._lock:
            return self.account.liquidation_price(symbol)

    def margin_terms(self, symbol: str) -> MarginTerms:
        """What the new position's liquidation price is estimated from (the guardrails')."""
        with self._lock:
            return self.account.margin_terms(symbol)

    def funding(self, since: datetime) -> list[FundingPayment]:
        """Funding payments on the traded symbols since ``since`` (a holding cost)."""
        with self._lock:
            return self.account.funding(since)

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        """Only which orders are ours: positions come from the exchange, not the journal."""
        del fills, fill_kinds
        with self._lock:
            self._ids.adopt(orders)
            for o in orders:
                self._adopt_legs(o)

    def _adopt_legs(self, entry: Order) -> None:
        """The legs a journaled entry may have at the exchange, status unknown until
        looked up: so a stop that fired while the daemon was down is found, and its
        trades credited to the entry."""
        intent = entry.intent
        if entry.filled_volume <= 0 or intent.reduce_only:
            return
        side = OrderSide.SELL if intent.side is OrderSide.BUY else OrderSide.BUY
        for kind, trigger in ((Kind.STOP_LOSS, intent.stop_loss),
                              (Kind.TAKE_PROFIT, intent.take_profit)):
            if trigger is not None:
                cid = protective_id(intent.client_order_id, kind)
                self._ids.symbol_of[cid] = intent.symbol
                self.protection.legs.setdefault(cid, Leg(
                    cid, kind, intent.symbol, side, entry.filled_volume, trigger, "unknown"))


def _credited(f: BrokerFill) -> BrokerFill:
    """A trade of a protective leg as the exit of the entry it protects (``stop_loss`` /
    ``take_profit``, the kinds the engine books against the opening order)."""
    found = entry_of(f.fill.client_order_id)
    if found is None:
        return f
    entry, kind = found
    return replace(f, fill=replace(f.fill, client_order_id=entry), kind=kind.value)
