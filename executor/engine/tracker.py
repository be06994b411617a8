"""Orders in flight: which of ours are working, the fills booked against them, and what
the broker says about an order whose outcome we do not know.

Sending is the router's (``executor.engine.router``); everything after the send is here,
as hummingbot keeps its client order tracker apart from the connector that places orders.
The router tells the tracker every result it gets.

The tracker keeps the account's *working* orders in memory (``working``): every order
sent and not finished (``submitting``, ``accepted``, ``partially_filled``, ``unknown``;
``new`` too, since a re-run would send it), so the guardrails count them toward position
limits without a journal query per decision (``working_exposure``). The set follows every
send result and lookup, every fill ``book`` journals, every later state handed to
``observe``/``observe_fill``, and is rebuilt from the journal at start-up (``rebuild``).

An order in doubt is only ever looked up (``resolve``), never sent again: a second send
could double the position. The live resolver that retries lookups with backoff is
``executor.engine.resolver``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog

from domain import ORDER_TRANSITIONS, InvalidTransition, Order, OrderState
from domain.errors import VenueError
from domain.orders import UNRESOLVED_STATES
from executor.brokers.base import Broker, BrokerFill
from executor.journal.store import Journal
from guardrails.base import WorkingExposure
from guardrails.state import TradingState, set_state

if TYPE_CHECKING:
    from executor.engine.stats import RunStats

log = structlog.get_logger("dta.tracker")

_OPEN = tuple(s for s in OrderState if not s.terminal)
_EPS = 1e-9
_FINISHED_MAX = 4096  # finished ids remembered, so a late report cannot revive one
_NONE: Mapping[str, WorkingExposure] = MappingProxyType({})


def adopt(order: Order, seen: Order) -> Order:
    """``order``, left ``submitting`` or ``unknown``, in the state the broker reports for
    it. From ``submitting`` (the process died before the send's answer was journaled) the
    order passes through ``unknown`` when the broker's state is no direct step: a market
    order that filled in part and had the rest expired is ``cancelled`` at the broker."""
    current = order
    if (order.state is OrderState.SUBMITTING
            and seen.state not in ORDER_TRANSITIONS[OrderState.SUBMITTING]):
        current = order.transition(OrderState.UNKNOWN)
    return current.transition(seen.state, filled_volume=seen.filled_volume,
                              avg_fill_price=seen.avg_fill_price,
                              broker_order_id=seen.broker_order_id, reason=seen.reason)


class OrderTracker:
    def __init__(self, journal: Journal, broker: Broker) -> None:
        self.journal = journal
        self.broker = broker
        # Orders sent and not finished, by client order id, as last known.
        self.working: dict[str, Order] = {}
        # Entry fills seen per working order (fill id -> lots): a live broker reports
        # fills without the order, and a fill can arrive before the order's new state.
        self._fills: dict[str, dict[str, tuple[float, float]]] = {}  # -> (lots, price)
        self._finished: set[str] = set()
        self._finished_order: deque[str] = deque()
        self._exposure: Mapping[str, WorkingExposure] | None = _NONE
        self._refused_fills: set[str] = set()  # surplus fills never booked (rare)

    # ------------------------------------------------------------------ working orders

    def remaining(self, client_order_id: str) -> float:
        """Unfilled lots of a working order (0 when it is not working). The filled part is
        the larger of what the order says and what its fills add up to: both are lots the
        broker executed, so neither can overstate the fill."""
        order = self.working.get(client_order_id)
        if order is None:
            return 0.0
        filled = max(order.filled_volume, self._filled(client_order_id)[0])
        return max(0.0, order.intent.volume - filled)

    def working_exposure(self) -> Mapping[str, WorkingExposure]:
        """Unfilled working lots per symbol and side, for ``AccountState.working``. Cached
        between changes: the decision path reads it without touching the journal."""
        if self._exposure is None:
            sides: dict[str, list[float]] = {}
            for coid, order in self.working.items():
                lots = sides.setdefault(order.intent.symbol, [0.0, 0.0])
                lots[0 if order.intent.side.sign > 0 else 1] += self.remaining(coid)
            self._exposure = MappingProxyType(
                {s: WorkingExposure(b, v) for s, (b, v) in sides.items() if b > 0 or v > 0})
        return self._exposure

    def observe(self, order: Order) -> None:
        """Take a later state of an order: a finished one (filled, cancelled, rejected)
        leaves the working set, an open one enters or replaces it. An order already seen
        finished stays finished (a finished state has no way back)."""
        coid = order.client_order_id
        if coid in self._finished or order.protective_kind is not None:
            return  # a protective leg is its position's exit, followed by its keeper
        if order.state.terminal:
            self._finish(coid)
            return
        known = self.working.get(coid)
        if known is not None and known.filled_volume > order.filled_volume:
            order = replace(order, filled_volume=known.filled_volume)  # never un-fill
        self.working[coid] = order
        self._exposure = None
        if self.remaining(coid) <= _EPS:
            self._finish(coid)

    def _filled(self, coid: str) -> tuple[float, float | None]:
        """Lots filled by the entry fills seen for ``coid``, and their average price."""
        fills = self._fills.get(coid)
        if not fills:
            return 0.0, None
        lots = sum(v for v, _ in fills.values())
        return lots, (sum(v * p for v, p in fills.values()) / lots if lots > 0 else None)

    def observe_fill(self, bf: BrokerFill) -> Order | None:
        """A fill the broker reported. Only the order's own execution (``entry``) fills it;
        a protective exit attributed to the opening order does not. With the order
        attached (the paper broker), its state is taken too.

        A live broker (MT5, ccxt) reports fills without the order: then the order's new
        state (``filled``, or ``partially_filled`` with the lots and average price of the
        fills seen) is returned for the caller to journal, so the order's row does not stay
        ``accepted`` after it filled. ``None`` when nothing moved."""
        coid = bf.fill.client_order_id
        moved: Order | None = None
        known = self.working.get(coid)
        if bf.kind == "entry" and known is not None:
            self._fills.setdefault(coid, {})[bf.fill.fill_id] = (bf.fill.volume, bf.fill.price)
            self._exposure = None
            if bf.order is None:
                moved = self._filled_state(known)
            if self.remaining(coid) <= _EPS:
                self._finish(coid)
            elif moved is not None:
                self.working[coid] = moved
        if bf.order is not None:
            self.observe(bf.order)
        return moved

    def surplus(self, bf: BrokerFill) -> float:
        """Lots of a live entry fill beyond what its order asked for: the venue executed
        more under our client id than we ever sent (another daemon's send under the same
        id, an operator's manual order reusing it). Such a fill cannot be matched to
        exactly one of our sends, so it must never be adopted as ours. A fill seen again
        (same fill id) is no surplus; 0 for a fill the broker attached its order to
        (paper, which cannot over-fill)."""
        if bf.kind != "entry" or bf.order is not None:
            return 0.0
        coid, fill = bf.fill.client_order_id, bf.fill
        known = self.working.get(coid)
        if known is not None:
            volume = known.intent.volume
            seen = self._fills.get(coid, {})
            before = max(known.filled_volume if fill.fill_id not in seen else 0.0,
                         sum(v for fid, (v, _) in seen.items() if fid != fill.fill_id))
        else:
            order = self.journal.orders.get_order(coid)
            if order is None:
                return fill.volume  # a fill for an order we never journaled
            volume = order.intent.volume
            before = sum(f.volume for f in self.journal.orders.fills(coid)
                         if f.kind == "entry" and f.fill_id != fill.fill_id)
        extra = before + fill.volume - volume
        return extra if extra > _EPS + 1e-6 * volume else 0.0

    def _filled_state(self, order: Order) -> Order | None:
        lots, price = self._filled(order.client_order_id)
        lots = max(lots, order.filled_volume)
        if lots <= order.filled_volume + _EPS and order.state is not OrderState.UNKNOWN:
            return None  # nothing new (a fill seen again)
        state = (OrderState.FILLED if order.intent.volume - lots <= _EPS
                 else OrderState.PARTIALLY_FILLED)
        try:
            return order.transition(state, filled_volume=lots,
                                    avg_fill_price=price if price is not None
                                    else order.avg_fill_price)
        except InvalidTransition:  # e.g. a fill reported for an order never sent
            log.warning("fill_for_order_in_state", client_order_id=order.client_order_id,
                        state=order.state.value)
            return None

    def refresh(self) -> None:
        """Catch up with state changes other writers journaled (the order-in-doubt resolver,
        start-up reconciliation): one indexed read per working order, and none at all when
        nothing is working. Called once per bar, never per decision."""
        for coid, order in list(self.working.items()):
            state = self.journal.orders.order_state(coid)
            if state is None or state is order.state:
                continue
            seen = self.journal.orders.get_order(coid)
            if seen is not None:
                self.observe(seen)

    def rebuild(self, account: str) -> None:
        """Start-up: every journaled order of ``account`` that is not finished is working
        again, less the entry fills journaled for it (a live broker's fills do not move the
        order row)."""
        self.working.clear()
        self._fills.clear()
        self._finished.clear()
        self._finished_order.clear()
        self._exposure = None
        for order in self.journal.orders.all(account, list(_OPEN)):
            coid = order.client_order_id
            if order.protective_kind is not None:
                continue  # an exit the venue holds, not exposure (engine/protection.py)
            self.working[coid] = order
            self._fills[coid] = {f.fill_id: (f.volume, f.price)
                                 for f in self.journal.orders.fills(coid) if f.kind == "entry"}
            if self.remaining(coid) <= _EPS:
                self._finish(coid)
        if self.working:
            log.info("working_orders_rebuilt", count=len(self.working),
                     exposure={s: (w.buy, w.sell) for s, w in self.working_exposure().items()})

    def _finish(self, coid: str) -> None:
        self.working.pop(coid, None)
        self._fills.pop(coid, None)
        self._exposure = None
        if coid not in self._finished:
            self._finished.add(coid)
            self._finished_order.append(coid)
            if len(self._finished_order) > _FINISHED_MAX:
                self._finished.discard(self._finished_order.popleft())

    # ------------------------------------------------------------------ fills

    def book(self, fills: Iterable[BrokerFill], stats: RunStats) -> None:
        """Journal the fills a bar brought and move their orders: the paper broker attaches
        the order's new state; a live broker's fill moves the order's row here, from the
        fills seen (a filled order stops counting as working). Then catch up with what
        other writers journaled (``refresh``)."""
        for bf in fills:
            if self._surplus_fill(bf):
                continue
            self.journal.orders.record_fill(bf.fill, bf.kind, bf.realized_pnl)
            stats.fills += 1
            if bf.order is not None:
                before = self.journal.orders.order_state(bf.fill.client_order_id)
                if before is not None and before is not bf.order.state:
                    self.journal.orders.set_order_state(before, bf.order, detail=f"{bf.kind} fill",
                                                        commit=False)
            known = self.working.get(bf.fill.client_order_id)
            moved = self.observe_fill(bf)
            if moved is not None and known is not None:
                self.journal.orders.set_order_state(known.state, moved, detail=f"{bf.kind} fill",
                                                    commit=False)
        self.refresh()  # states the resolver journaled (no read when none working)

    def _surplus_fill(self, bf: BrokerFill) -> bool:
        """A fill beyond its order's volume is never booked as ours: it is an incident and
        trading halts until a person has looked (``surplus``)."""
        f = bf.fill
        if bf.kind == "fee" and f.fill_id.removesuffix(":fee") in self._refused_fills:
            return True  # the commission of a refused trade is not ours either
        extra = self.surplus(bf)
        if extra <= 0:
            return False
        self._refused_fills.add(f.fill_id)
        message = (f"fill {f.fill_id} of {f.volume:g} {f.symbol} under our client id "
                   f"{f.client_order_id} exceeds what we sent by {extra:g}: another "
                   "sender used the id (a second daemon or journal on this account?); not "
                   "booked, trading halted")
        log.critical("fill_surplus", client_order_id=f.client_order_id, fill_id=f.fill_id,
                     volume=f.volume, surplus=extra)
        self.journal.incidents.open_incident("critical", "fill_surplus", message, {
            "client_order_id": f.client_order_id, "fill_id": f.fill_id,
            "volume": f.volume, "surplus": extra, "side": f.side.value})
        set_state(self.journal.trading_state, TradingState.HALTED, operator="system",
                  reason=message, trigger="fill_surplus")
        return True

    # ------------------------------------------------------------------ orders in doubt

    def resolve(self, order: Order) -> Order:
        """Settle an order whose outcome we do not know by asking the broker for it."""
        result = self.lookup(order)
        self.observe(result)
        return result

    def lookup(self, order: Order) -> Order:
        """One lookup of an order left ``submitting`` or ``unknown``; what it shows is
        journaled. Anything else is returned as it is."""
        if order.state not in UNRESOLVED_STATES:
            return order
        try:
            seen = self.broker.lookup(order.client_order_id)
        except VenueError as exc:
            # The broker could not be asked: still unknown, never re-sent. The resolver in
            # executor/engine/resolver.py retries with backoff.
            log.warning("order_lookup_failed", client_order_id=order.client_order_id,
                        error=str(exc))
            if order.state is OrderState.SUBMITTING:
                unknown = order.transition(OrderState.UNKNOWN, reason=f"lookup failed: {exc}")
                self.journal.orders.update_order(order, unknown, detail=unknown.reason)
                return unknown
            return order
        if seen is None or seen.state in UNRESOLVED_STATES:
            if order.state is OrderState.SUBMITTING:
                unknown = order.transition(OrderState.UNKNOWN,
                                           reason="not found at broker after restart")
                self.journal.orders.update_order(order, unknown, detail=unknown.reason)
                return unknown
            return order
        resolved = adopt(order, seen)
        self.journal.orders.update_order(order, resolved, detail="resolved by broker lookup")
        return resolved

    def resolve_open(self, account: str) -> list[Order]:
        """Start-up pass over every order left submitting or unknown."""
        return [self.resolve(o) for o in self.journal.orders.all(account, list(UNRESOLVED_STATES))]
