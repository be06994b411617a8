"""Where an order leaves the process. Journal first, then broker; never twice.

``submit`` is idempotent on the client order id: a re-run of the same cycle (after a crash
or a restart) finds the journaled row and resolves it by asking the broker, instead of
sending again.

It also keeps the account's *working* orders in memory (``working``): every order sent and
not finished (``submitting``, ``accepted``, ``partially_filled``, ``unknown``; ``new`` too,
since a re-run would send it), so the guardrails count them toward position limits without
a journal query per decision (``working_exposure``). The set follows every submit result
and lookup here, every fill or later state the daemon hands to ``observe``/``observe_fill``,
and is rebuilt from the journal at start-up (``rebuild``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

import structlog

from domain import (
    ORDER_TRANSITIONS,
    InvalidTransition,
    Order,
    OrderIntent,
    OrderState,
)
from domain.errors import VenueError
from executor.brokers.base import Broker, BrokerFill
from executor.journal.store import Journal
from guardrails.base import WorkingExposure

log = structlog.get_logger("dta.router")

_UNRESOLVED = frozenset({OrderState.SUBMITTING, OrderState.UNKNOWN})
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


class OrderRouter:
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
        if coid in self._finished:
            return
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

    # ------------------------------------------------------------------ sending

    def submit(self, intent: OrderIntent) -> Order:
        result = self._submit(intent)
        self.observe(result)
        return result

    def _submit(self, intent: OrderIntent) -> Order:
        # A re-run cycle finds its order journaled; a new one costs one indexed read.
        orders = self.journal.orders
        existing = (orders.get_order(intent.client_order_id)
                    if orders.order_state(intent.client_order_id) is not None else None)
        if existing is not None:
            log.warning("order_already_journaled", client_order_id=intent.client_order_id,
                        state=existing.state.value)
            if existing.state is OrderState.NEW:
                return self._send(existing)  # committed but provably never sent
            return self._resolve(existing)
        return self._send(Order(intent), new=True)

    def _send(self, order: Order, *, new: bool = False) -> Order:
        """Journal ``order`` as submitting, then hand it to the broker. ``new``: the order
        has no row yet (written here with its created and sending events)."""
        submitting = order.transition(OrderState.SUBMITTING)
        # Durable before the broker call: after this commit a crash leaves a row that
        # start-up resolves by lookup, never by a second send. A simulated broker lives and
        # dies with this process (its state is rebuilt from the journal), so there the row
        # commits with the cycle's batch, order and simulated fill together or not at all.
        detail, durable = f"sending to {self.broker.name}", not self.broker.simulated
        if new:
            self.journal.orders.insert_sending(order, submitting, detail, commit=durable)
        else:
            self.journal.orders.update_order(order, submitting, detail=detail, commit=durable)
        try:
            result = self.broker.submit(submitting)
        except VenueError as exc:
            result = submitting.transition(OrderState.UNKNOWN, reason=str(exc))
        except Exception as exc:  # an unexpected error is still ambiguous
            result = submitting.transition(
                OrderState.UNKNOWN, reason=f"{exc.__class__.__name__}: {exc}")
        # Not forced to disk here: if this update is lost in a crash, the row still says
        # ``submitting`` and start-up resolves it by lookup. It commits with the cycle.
        self.journal.orders.update_order(submitting, result,
                                         detail=result.reason or "broker answered", commit=False)
        log.info("order_submitted", client_order_id=result.client_order_id,
                 state=result.state.value, symbol=result.intent.symbol,
                 side=result.intent.side.value, volume=result.intent.volume)
        return result

    def resolve(self, order: Order) -> Order:
        """Settle an order whose outcome we do not know by asking the broker for it."""
        result = self._resolve(order)
        self.observe(result)
        return result

    def _resolve(self, order: Order) -> Order:
        if order.state not in _UNRESOLVED:
            return order
        try:
            seen = self.broker.lookup(order.client_order_id)
        except VenueError as exc:
            # The broker could not be asked: still unknown, never re-sent. The resolver in
            # executor/reconcile.py retries with backoff.
            log.warning("order_lookup_failed", client_order_id=order.client_order_id,
                        error=str(exc))
            if order.state is OrderState.SUBMITTING:
                unknown = order.transition(OrderState.UNKNOWN, reason=f"lookup failed: {exc}")
                self.journal.orders.update_order(order, unknown, detail=unknown.reason)
                return unknown
            return order
        if seen is None or seen.state in _UNRESOLVED:
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
        return [self.resolve(o) for o in self.journal.orders.all(account, list(_UNRESOLVED))]
