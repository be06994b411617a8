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
  at the exchange (``place_protection``, ``cancel_protection``, ``protective_orders``,
  ``lookup`` of a leg by its id); a leg that fired is found and its trades credited to the
  entry as a ``stop_loss`` / ``take_profit`` exit, also after a restart (``restore``
  follows the journaled legs still working).
- funding payments read per symbol (``funding``) with their exchange ids, which the live
  daemon journals as costs (``executor/engine/funding.py``).
- margin terms (``margin_terms``: leverage, margin mode, maintenance brackets), which the
  stop-to-liquidation guardrail estimates a new position's liquidation price from.
Equity is the settlement currency's total from ``fetch_balance`` (Binance
``marginBalance``: wallet balance plus unrealised PnL).

The legs are placed, cancelled and reconciled by the engine (``executor/engine/
protection.py``), each journaled before it is sent; here they are only the venue's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from domain import Bar, Fill, Order, OrderIntent, OrderState, Position
from domain.errors import PermanentVenueError, VenueError
from domain.margin import MarginTerms
from domain.orders import PROTECTIVE_TYPE, protected_entry
from executor.brokers.base import BrokerFill, BrokerOrder, VolumeRules
from executor.brokers.ccxt_equity import Balances
from executor.brokers.ccxt_exchange import ExchangeReader, make_exchange
from executor.brokers.ccxt_fills import PollSchedule, TradeHistory
from executor.brokers.ccxt_ids import OUR_ID_PREFIX, OrderIds
from executor.brokers.ccxt_markets import MarketRules
from executor.brokers.ccxt_seam import CcxtOrderSeam
from executor.brokers.ccxt_swap_account import FundingPayment, SwapAccount
from executor.brokers.ccxt_swap_orders import SwapOrders
from executor.brokers.ccxt_swap_protect import Kind, Leg, SwapProtection
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
    separate_protection = True  # the exchange holds stops and targets as orders

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
                                  last_close=self._closes.get)
        self._balances = Balances(reader, equity_ttl_seconds, monotonic)
        self._equity = EquityCache(self._read_equity, equity_ttl_seconds, monotonic=monotonic)
        self._positions_ttl = equity_ttl_seconds
        self._held: tuple[float, dict[str, Position]] | None = None  # (when, positions)
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
                fills = self.recent_fills(since - timedelta(minutes=5), [bar.symbol])
            except VenueError as exc:
                log.warning("ccxt_fill_poll_failed", symbol=bar.symbol, error=str(exc)[:200])
                return []
            self._schedule.polled(bar.symbol, (started, self._monotonic()))
            new = [f for f in fills if f.fill.fill_id not in self._seen
                   and self._ids.is_ours(f.fill.client_order_id)]
            self._seen.update(f.fill.fill_id for f in new)
            if new:
                self._account_changed()
            self._last_poll[bar.symbol] = started
            return new

    # ------------------------------------------------------------------ protection
    # (``ProtectingBroker``: the engine's ``ProtectiveOrders`` journals each leg first)

    def place_protection(self, legs: Sequence[Order]) -> list[Order]:
        """Each leg as a reduce-only conditional order under its own id; its outcome is
        the leg's next state (a trigger already passed: rejected)."""
        out = []
        with self._lock:
            for leg in legs:
                i = leg.intent
                self._ids.sent(i)
                placed = self.protection.place(i.symbol, Kind(leg.protective_kind or ''), i.side,
                                               i.volume, float(i.price or 0.0),
                                               i.client_order_id)
                out.append(leg_order(i, placed))
        return out

    def cancel_protection(self, legs: Sequence[Order]) -> list[Order]:
        """Cancel each leg; one the exchange no longer holds is looked up (it fired, or
        was cancelled already)."""
        out = []
        with self._lock:
            for leg in legs:
                i = leg.intent
                if self.protection.cancel(i.client_order_id, i.symbol):
                    out.append(Order(i, OrderState.CANCELLED, leg.filled_volume,
                                     broker_order_id=leg.broker_order_id,
                                     reason="cancelled: its position closed another way"))
                    continue
                found = self.protection.find(i.client_order_id, i.symbol)
                out.append(leg_order(i, found) if found is not None else leg)
        return out

    def within_bar(self, bar: Bar) -> list[BrokerFill]:
        """A live venue's fired legs come with its next poll (``ProtectingBroker``)."""
        del bar
        return []

    def protective_orders(self, symbol: str) -> list[BrokerOrder]:
        with self._lock:
            return [BrokerOrder(
                leg.client_id or None, leg.exchange_id or "", symbol, leg.side, leg.volume, 0.0,
                OrderState.ACCEPTED, ours=_ours_leg(self._ids, leg.client_id),
                price=leg.trigger) for leg in self.protection.open_legs(symbol)]

    def lookup(self, client_order_id: str) -> Order | None:
        """An order by our id: a protective leg on the algo endpoint, else as spot's."""
        if protected_entry(client_order_id) is None:
            return super().lookup(client_order_id)
        with self._lock:
            known = self._ids.symbol_of.get(client_order_id)
            for symbol in [known] if known else self._ids.symbols():
                found = self.protection.find(client_order_id, symbol)
                if found is not None:
                    intent = self._ids.intents.get(client_order_id)
                    return leg_order(intent, found) if intent else leg_order(
                        _leg_intent(found), found)
        return None

    def recent_fills(self, since: datetime, symbols: Sequence[str] | None = None
                     ) -> list[BrokerFill]:
        """As spot's, with a fired leg's trades credited to the entry it protected (its
        exchange order linked first: a stop that fired while the daemon was down)."""
        with self._lock:
            for symbol in symbols or self._ids.symbols():
                self.protection.link_triggered(symbol)
            return [_credited(f) for f in super().recent_fills(since, symbols)]

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
        """The exchange's positions (``fetch_positions``), read at most once per
        ``equity_ttl_seconds`` and afresh after an order or a fill, as equity is: the
        strategy's context, the protective orders and each decision ask within one bar.
        A send reads the position itself, uncached (``ccxt_swap_orders``)."""
        with self._lock:
            now = self._monotonic()
            if self._held is not None and now - self._held[0] < self._positions_ttl:
                return dict(self._held[1])
            held = self.account.positions()
            self._held = (now, held)
            return dict(held)

    def _account_changed(self) -> None:
        super()._account_changed()
        self._held = None

    def mark_journaled(self, fills: Sequence[Fill]) -> None:
        """Fills start-up reconciliation journaled: never reported by ``on_bar`` again
        (``startup.KnowsJournaledFills``)."""
        with self._lock:
            self._seen.update(f.fill_id for f in fills)

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
        """Which orders are ours, and the protective legs that may still be working (so a
        stop that fired while the daemon was down is found and credited to its entry);
        positions come from the exchange, not the journal."""
        exited = {(f.client_order_id, kind) for f, kind in zip(fills, fill_kinds, strict=True)}
        with self._lock:
            self._seen.update(f.fill_id for f in fills)  # journaled: never reported again
            self._ids.adopt(orders)
            for o in orders:
                kind = o.protective_kind
                if kind is None:
                    continue
                found = protected_entry(o.client_order_id)
                # Followed while working, and once fired until its trade is journaled as
                # the entry's exit (a fired leg seen by a cancel or a lookup before the
                # daemon died: its exchange order must still be linked to it).
                if o.state.terminal and not (o.state is OrderState.FILLED and found
                                             and (found[0], kind) not in exited):
                    continue
                i = o.intent
                self.protection.legs.setdefault(i.client_order_id, Leg(
                    i.client_order_id, Kind(kind), i.symbol, i.side, i.volume,
                    float(i.price or 0.0), "unknown", exchange_id=o.broker_order_id))


def _credited(f: BrokerFill) -> BrokerFill:
    """A trade of a protective leg as the exit of the entry it protects (``stop_loss`` /
    ``take_profit``, the kinds the engine books against the opening order)."""
    found = protected_entry(f.fill.client_order_id)
    if found is None:
        return f
    entry, kind, _generation = found
    return replace(f, fill=replace(f.fill, client_order_id=entry), kind=kind)


_LEG_STATE = {"open": OrderState.ACCEPTED, "filled": OrderState.FILLED,
              "cancelled": OrderState.CANCELLED, "expired": OrderState.CANCELLED,
              "would_trigger": OrderState.REJECTED, "failed": OrderState.REJECTED,
              "unknown": OrderState.UNKNOWN, "absent": OrderState.UNKNOWN}


def leg_order(intent: OrderIntent, leg: Leg) -> Order:
    """A leg as the exchange has it, as the leg order's state."""
    state = _LEG_STATE[leg.status]
    reason = leg.reason or ("expired: nothing left to reduce when it fired"
                            if leg.status == "expired" else "")
    if leg.status == "would_trigger":
        reason = f"would trigger immediately: {leg.reason}"
    return Order(intent, state, leg.volume if state is OrderState.FILLED else 0.0,
                 broker_order_id=leg.exchange_id, reason=reason)


def _leg_intent(leg: Leg) -> OrderIntent:
    return OrderIntent(leg.client_id, "", leg.symbol, leg.side, leg.volume,
                       PROTECTIVE_TYPE[leg.kind.value], datetime.now(UTC), price=leg.trigger,
                       reduce_only=True)


def _ours_leg(ids: OrderIds, client_id: str) -> bool:
    found = protected_entry(client_id)
    return found is not None and ids.is_ours(found[0])
