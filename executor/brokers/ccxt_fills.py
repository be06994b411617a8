"""Fills from the exchange's trade history, and when a bar polls for them.

A trade names the exchange's order id, not ours: an order the broker did not send in this
process (a restart, a foreign order) is looked up in ``fetch_orders`` once to learn its
client id. A commission paid in the base asset took inventory: it is reported as a second
fill of kind ``fee`` (a sale of that much base asset at the trade price, no proceeds; the
entry fill carries the fee's quote value), so the journal's positions net it as the book
does.

The poll (``myTrades``) is rate-limited and heavy: it runs for a bar that closed after the
last poll (live: every new bar) or after an order we sent since; bars a catch-up replays
closed before it and share one poll per ``catchup_poll_seconds``, so a long catch-up does
not spend one request per bar and miss the bar closes behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from domain import Bar, Fill, OrderSide
from executor.brokers.base import BrokerFill
from executor.brokers.ccxt_exchange import ExchangeReader
from executor.brokers.ccxt_ids import OrderIds


class TradeHistory:
    def __init__(self, reader: ExchangeReader, ids: OrderIds) -> None:
        self._reader = reader
        self.exchange = reader.exchange
        self._ids = ids

    def recent_fills(self, since: datetime, symbols: Sequence[str] | None = None
                     ) -> list[BrokerFill]:
        """Every trade since ``since`` on the scanned symbols, attributed to the client id of
        its order (foreign orders included: reconciliation tells them apart)."""
        reader, coid_of = self._reader, self._ids.coid_of
        reader.ensure_markets()
        since_ms = int(since.timestamp() * 1000)
        out: list[BrokerFill] = []
        for sym in symbols or self._ids.symbols():
            trades = reader.paged("fetch_my_trades", self.exchange.fetch_my_trades, sym,
                                  since_ms)
            unknown = {str(t["order"]) for t in trades if str(t["order"]) not in coid_of}
            if unknown:
                for o in reader.paged("fetch_orders", self.exchange.fetch_orders, sym,
                                      since_ms):
                    if o.get("id") is not None:  # a link already made stays (a fired
                        # swap leg's order carries the exchange's id, not the leg's)
                        coid_of.setdefault(str(o["id"]), str(o.get("clientOrderId") or ""))
            market = self.exchange.market(sym)
            for t in trades:
                out.extend(self._trade_fills(sym, market, t))
        out.sort(key=lambda f: (f.fill.time, f.fill.fill_id))
        return out

    def order_fills(self, order: Mapping[str, Any]) -> list[BrokerFill]:
        """The fills an order's own answer carries (ccxt's ``trades`` of Binance's FULL
        ``fills[]``: each names neither the order, its side nor a time), with the ids the
        trade history gives the same trades."""
        sym = str(order.get("symbol") or "")
        if not order.get("trades") or not sym:
            return []
        market = self.exchange.market(sym)
        out: list[BrokerFill] = []
        for t in order["trades"]:
            t = {**t, "order": order["id"], "side": t.get("side") or order["side"],
                 "timestamp": t.get("timestamp") or order.get("timestamp")}
            if t["id"] is not None and t["timestamp"] is not None:
                out.extend(self._trade_fills(sym, market, t))
        return out

    def _trade_fills(self, sym: str, market: Mapping[str, Any],
                     t: Mapping[str, Any]) -> list[BrokerFill]:
        """One trade: the entry fill, and a ``fee`` fill when the commission was paid in
        the base asset (the inventory it took). The entry's ``fee`` is the commission's
        value in the quote currency; one paid in a third asset (BNB) is not valued (no
        market for it is loaded) and moves no position."""
        coid = self._ids.coid_of.get(str(t["order"])) or f"exchange:{t['order']}"
        fee = t.get("fee") or {}
        fee_cost = float(fee.get("cost") or 0.0)
        price = float(t["price"])
        fill_id = f"{self.exchange.id}:{sym}:{t['id']}"
        when = datetime.fromtimestamp(int(t["timestamp"]) / 1000, UTC)
        currency = fee.get("currency")
        quote_fee = (fee_cost if currency == market.get("quote")
                     else fee_cost * price if currency == market.get("base") else 0.0)
        # A futures trade states the PnL it realised (Binance USD-M userTrades
        # ``realizedPnl``); a spot trade realises none the exchange reports.
        realized = float((t.get("info") or {}).get("realizedPnl") or 0.0)
        out = [BrokerFill(Fill(coid, fill_id, sym, OrderSide(str(t["side"])), when, price,
                               float(t["amount"]), quote_fee), "entry", realized, None)]
        if currency == market.get("base") and fee_cost > 0:
            out.append(BrokerFill(Fill(coid, f"{fill_id}:fee", sym, OrderSide.SELL, when,
                                       price, fee_cost, 0.0), "fee", 0.0, None))
        return out


class PollSchedule:
    """Which bars poll the trade history (see the module docstring)."""

    def __init__(self, catchup_poll_seconds: float, monotonic: Callable[[], float]) -> None:
        self._every = catchup_poll_seconds
        self._monotonic = monotonic
        # symbol -> (wall clock, monotonic) of the last fill poll; symbols ordered since.
        self._polled_at: dict[str, tuple[datetime, float]] = {}
        self._sent_since_poll: set[str] = set()

    def order_sent(self, symbol: str) -> None:
        """Its fills must show at the next bar."""
        self._sent_since_poll.add(symbol)

    def due(self, bar: Bar) -> bool:
        last = self._polled_at.get(bar.symbol)
        if last is None or bar.symbol in self._sent_since_poll:
            return True
        at, mono = last
        return bar.close_time > at or self._monotonic() - mono >= self._every

    def polled(self, symbol: str, started: tuple[datetime, float]) -> None:
        self._sent_since_poll.discard(symbol)
        self._polled_at[symbol] = started
