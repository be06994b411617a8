"""The live resolver for orders in doubt: lookups with backoff, and a grace before an
order is declared lost.

An order whose outcome is unknown is only ever *looked up*, never sent again (a second send
could double the position). ``OrderResolver`` retries the lookup with backoff; only after
``grace_lookups`` misses *and* ``grace_seconds`` since the order was sent is it declared
lost: journaled ``rejected`` with the reason. Each miss is an order event ("lookup miss
n/N"), so the count survives restarts and the audit trail shows every attempt.

It runs at start-up (``executor.engine.startup``) and, live, before every cycle; what it
journals reaches the working set at the next bar (``OrderTracker.refresh``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from domain import ORDER_TRANSITIONS, Order, OrderState, OrderType
from domain.errors import VenueError
from domain.orders import UNRESOLVED_STATES
from executor.brokers.base import Broker
from executor.brokers.config import ResolverSettings
from executor.engine.tracker import adopt
from executor.journal.models import OrderEventRow
from executor.journal.store import Journal

log = structlog.get_logger("dta.reconcile")

UNRESOLVED = UNRESOLVED_STATES  # the name the start-up pass and the crash child use
WORKING = (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)
_MISS = "lookup miss"
_EVENTS = OrderEventRow.__table__  # type: ignore[attr-defined]


class OrderResolver:
    """Settles ``submitting``/``unknown`` orders by lookup, with backoff and a grace count."""

    def __init__(self, journal: Journal, broker: Broker,
                 settings: ResolverSettings | None = None, *,
                 clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.journal = journal
        self.broker = broker
        self.settings = settings or ResolverSettings()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep

    def resolve(self, order: Order) -> Order:
        """One lookup. Returns the order as journaled afterwards."""
        if order.state not in UNRESOLVED:
            return order
        try:
            seen = self.broker.lookup(order.client_order_id)
        except VenueError as exc:
            log.warning("resolver_lookup_failed", client_order_id=order.client_order_id,
                        error=str(exc))
            return order  # not a miss: the broker could not be asked
        if seen is not None and seen.state not in UNRESOLVED:
            resolved = adopt(order, seen)
            self.journal.orders.update_order(order, resolved, detail="resolved by broker lookup")
            log.info("order_resolved", client_order_id=order.client_order_id,
                     state=resolved.state.value)
            return resolved
        misses = 1 + self.journal.orders.count_events(order.client_order_id,
                                                       detail_prefix=_MISS)
        grace = self.settings.grace_lookups
        sent = self.journal.orders.sent_at(order.client_order_id)
        age = (self._clock() - sent).total_seconds() if sent else float("inf")
        current = order
        if order.state is OrderState.SUBMITTING:
            current = order.transition(OrderState.UNKNOWN,
                                       reason="not found at the broker after a restart")
        if misses >= grace and age >= self.settings.grace_seconds:
            lost = current.transition(
                OrderState.REJECTED,
                reason=(f"lost: not found at {self.broker.name} after "
                        f"{misses} lookups over {age:.0f}s; never re-sent"))
            self.journal.orders.update_order(order, lost, detail=f"{_MISS} {misses}/{grace}: "
                                                          "declared lost")
            log.error("order_declared_lost", client_order_id=order.client_order_id,
                      lookups=misses, age_s=round(age, 1))
            return lost
        self.journal.orders.update_order(order, current, detail=f"{_MISS} {misses}/{grace}")
        return current

    def resolve_pending(self, account: str) -> list[Order]:
        """One pass over every unresolved order of ``account``, then over its working
        market orders (``settle_market``). Returns the unresolved ones as journaled after."""
        out = [self.resolve(o) for o in self.journal.orders.all(account, list(UNRESOLVED))]
        for order in self.journal.orders.all(account, list(WORKING)):
            if order.intent.order_type is OrderType.MARKET:
                self.settle_market(order)
        return out

    def settle_market(self, order: Order) -> Order:
        """A market order left ``accepted``/``partially_filled`` is usually finished at the
        broker: a FOK/IOC order that filled in part had its remainder cancelled in the same
        instant (MT5 DONE_PARTIAL: "In case the entire volume of an order cannot be filled,
        the available volume of it will be filled, and the remaining volume will be
        canceled", ORDER_FILLING_IOC). Left working, it would count against the limits and
        show in `dta status` for the rest of the run. One lookup adopts the broker's state
        when it moved on; a RETURN order still working at the broker stays as it is."""
        try:
            seen = self.broker.lookup(order.client_order_id)
        except VenueError as exc:
            log.warning("resolver_lookup_failed", client_order_id=order.client_order_id,
                        error=str(exc))
            return order
        if (seen is None or seen.state in UNRESOLVED
                or seen.state not in ORDER_TRANSITIONS[order.state]
                or (seen.state is order.state
                    and abs(seen.filled_volume - order.filled_volume) < 1e-12)):
            return order
        settled = order.transition(seen.state, filled_volume=seen.filled_volume,
                                   avg_fill_price=seen.avg_fill_price or order.avg_fill_price,
                                   broker_order_id=seen.broker_order_id or
                                   order.broker_order_id, reason=seen.reason)
        self.journal.orders.update_order(order, settled, detail="settled by broker lookup")
        log.info("order_settled", client_order_id=order.client_order_id,
                 state=settled.state.value, filled=settled.filled_volume)
        return settled

    def settle(self, account: str, *, max_seconds: float | None = None) -> list[Order]:
        """Passes with exponential backoff until nothing is unresolved (or ``max_seconds``,
        default: long enough for the grace period). Returns what is still unresolved."""
        s = self.settings
        budget = max_seconds if max_seconds is not None else s.grace_seconds + s.max_backoff_seconds
        deadline = time.monotonic() + budget
        delay = s.backoff_seconds
        while True:
            pending = [o for o in self.resolve_pending(account) if o.state in UNRESOLVED]
            if not pending or time.monotonic() >= deadline:
                return pending
            self._sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, s.max_backoff_seconds) if delay else s.backoff_seconds
