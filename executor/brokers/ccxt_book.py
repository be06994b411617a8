"""Spot positions, from our own fills: spot has no positions to ask the exchange for.

The book is the net of the fills of orders whose client id we sent, with a commission
paid in the base asset netted out (Binance charges the fee "in the asset you receive": a
buy of 0.001 BTC credits 0.000999; such a fee arrives as a fill of kind ``fee``). It is
capped by what the account's balance holds of each base asset: the balance is the venue's
truth, so a journal that believes in more than the account holds shows as a mismatch at
reconciliation instead of agreeing with itself.

After a restart the book is restored from the journal's fills (a position older than the
exchange's trade history survives), then brought up to date from the trade history on
first use; without a journal it is built from ``history_days`` of trades.

The fills an order's own answer carries (Binance's FULL response ``fills[]``) are applied
at once (``applied_now``) and reported at the next poll as usual: the engine sizes a new
long's protective OCO from the position right after the entry's answer, and a bar later
would leave the long a bar without its stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from domain import Fill, Position
from domain.errors import VenueError
from executor.brokers.base import BrokerFill
from executor.brokers.ccxt_exchange import ExchangeReader, ccxt_module
from executor.brokers.ccxt_ids import OrderIds

log = structlog.get_logger("dta.ccxt")

FillSource = Callable[..., list[BrokerFill]]  # (since, symbols=None): the trade history


class SpotBook:
    def __init__(self, reader: ExchangeReader, ids: OrderIds, history: FillSource, *,
                 clock: Callable[[], datetime], history_days: int) -> None:
        self._reader = reader
        self._ids = ids
        self._history = history
        self._clock = clock
        self._history_days = history_days
        self._book: dict[str, Position] | None = None
        self._pending = False  # restored from the journal, not yet brought up to date
        self.seen: set[str] = set()  # fill ids applied or reported
        self.applied: set[str] = set()  # fill ids applied from an order's answer, not seen
        self.last_poll: dict[str, datetime] = {}  # newest fill time seen: polls start here

    def current(self) -> dict[str, Position]:
        """The book, built on first use: from the exchange's trades of ``history_days``
        without a journal; after ``restore``, the journal's fills plus the trades since
        the newest of them (fills made while we were down; reconciliation journals them)."""
        if self._book is None:
            self._book = {}
            since = self._clock() - timedelta(days=self._history_days)
            # All of it, fills on_bar already reported included (they were not applied).
            self._take(self._history(since), fresh_only=False)
        elif self._pending:
            default = self._clock() - timedelta(days=self._history_days)
            for sym in self._ids.symbols():
                last = self.last_poll.get(sym)
                since = last - timedelta(minutes=5) if last is not None else default
                self._take(self._history(since, [sym]))
            self._pending = False
        return self._book

    def fresh(self, fills: Sequence[BrokerFill]) -> list[BrokerFill]:
        """Fills of ours not applied or reported yet."""
        return [f for f in fills if f.fill.fill_id not in self.seen
                and self._ids.is_ours(f.fill.client_order_id)]

    def record(self, fills: Sequence[BrokerFill]) -> None:
        """Apply ``fresh`` fills, each once."""
        for f in fills:
            self.seen.add(f.fill.fill_id)
            self._apply_once(f.fill)

    def applied_now(self, fills: Sequence[BrokerFill]) -> None:
        """Fills of an order's answer: in the book now, reported by the next poll. Before
        the book is built there is nothing to do (it is built from the trade history)."""
        if self._book is None:
            return
        for f in fills:
            fid = f.fill.fill_id
            if (self._ids.is_ours(f.fill.client_order_id) and fid not in self.seen
                    and fid not in self.applied):
                self.applied.add(fid)
                self._apply(f.fill)

    def _take(self, fills: Sequence[BrokerFill], *, fresh_only: bool = True) -> None:
        for f in fills:
            if self._ids.is_ours(f.fill.client_order_id) and (
                    not fresh_only or f.fill.fill_id not in self.seen):
                self.seen.add(f.fill.fill_id)
                self._apply_once(f.fill)

    def _apply_once(self, fill: Fill) -> None:
        if fill.fill_id in self.applied:
            self.applied.discard(fill.fill_id)  # applied from its order's answer already
            return
        self._apply(fill)

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

    def restore(self, fills: Sequence[Fill], ours: set[str]) -> None:
        """The book from the journal's fills of this account's orders (``ours``; all
        kinds: a ``fee`` fill took base asset)."""
        self._book = {}
        self.applied.clear()
        for f in fills:
            if f.client_order_id not in ours:
                continue  # another account's fill in the same journal
            self.seen.add(f.fill_id)
            self._apply(f)
            self.last_poll[f.symbol] = max(self.last_poll.get(f.symbol, f.time), f.time)
        self._pending = True

    def positions(self, totals: Callable[[], dict[str, float]]) -> dict[str, Position]:
        """The book capped by the account's balance of each base asset (``totals``). The
        cap is logged: the account holds less than our fills say (a withdrawal, a fee we
        did not see). Without a balance the book is returned uncapped (logged)."""
        book = self.current()
        if not any(not p.is_flat for p in book.values()):
            return {}
        try:
            total = totals()
        except VenueError as exc:
            log.warning("ccxt_balance_unavailable", error=str(exc)[:200])
            return {s: p for s, p in book.items() if not p.is_flat}
        c = ccxt_module()
        try:
            return self._capped(book, total)
        except c.BaseError as exc:
            raise VenueError(f"{self._reader.name} positions: {exc.__class__.__name__}: "
                             f"{str(exc)[:300]}",
                             retryable=isinstance(exc, c.NetworkError)) from None

    def _capped(self, book: dict[str, Position], total: dict[str, float]
                ) -> dict[str, Position]:
        out: dict[str, Position] = {}
        left: dict[str, float] = {}
        for sym, pos in book.items():
            if pos.is_flat:
                continue
            base = str(self._reader.exchange.market(sym)["base"])
            have = left.setdefault(base, total.get(base, 0.0))
            if pos.volume > have + 1e-12:
                log.error("ccxt_position_exceeds_balance", symbol=sym,
                          ours=pos.volume, balance=have, asset=base)
                pos = replace(pos, volume=round(max(have, 0.0), 12))
            if pos.volume > 0:
                left[base] = have - pos.volume
            if not pos.is_flat:
                out[sym] = pos
        return out
