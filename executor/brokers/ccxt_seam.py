"""The order half of the Broker seam, the same for the spot and the swap ccxt brokers:
one lock around every call, the symbol's fills polled at its next bar, the id remembered
before the send, balances and equity read afresh after it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from domain import Order
from executor.brokers.base import BrokerFill, BrokerOrder
from executor.brokers.ccxt_equity import Balances
from executor.brokers.ccxt_exchange import ExchangeReader
from executor.brokers.ccxt_fills import PollSchedule, TradeHistory
from executor.brokers.ccxt_ids import OrderIds
from executor.brokers.ccxt_orders import CcxtOrders
from executor.brokers.equity_cache import EquityCache


class CcxtOrderSeam:
    _lock: threading.RLock
    _reader: ExchangeReader
    _ids: OrderIds
    _history: TradeHistory
    _schedule: PollSchedule
    _orders: CcxtOrders
    _balances: Balances
    _equity: EquityCache

    def ensure_markets(self) -> None:
        """Markets are loaded once per process (the endpoint is heavy and rate-limited)."""
        self._reader.ensure_markets()

    def _account_changed(self) -> None:
        """An order went out or a fill came in: balances and equity are read afresh."""
        self._balances.changed()
        self._equity.invalidate()

    def submit(self, order: Order) -> Order:
        with self._lock:
            try:
                self._schedule.order_sent(order.intent.symbol)  # its fills show next bar
                self._ids.sent(order.intent)
                return self._orders.submit(order)
            finally:
                self._account_changed()  # a fill moves balances (and pays a fee)

    def lookup(self, client_order_id: str) -> Order | None:
        with self._lock:
            return self._orders.lookup(client_order_id)

    def open_orders(self) -> list[BrokerOrder]:
        return self._orders.open_orders()

    def recent_fills(self, since: datetime, symbols: Sequence[str] | None = None
                     ) -> list[BrokerFill]:
        """Every trade since ``since`` on the scanned symbols, attributed to the client id of
        its order (foreign orders included: reconciliation tells them apart)."""
        return self._history.recent_fills(since, symbols)
