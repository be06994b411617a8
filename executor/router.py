"""Where an order leaves the process. Journal first, then broker; never twice.

``submit`` is idempotent on the client order id: a re-run of the same cycle (after a crash
or a restart) finds the journaled row and resolves it by asking the broker, instead of
sending again.
"""

from __future__ import annotations

import structlog

from executor.brokers.base import Broker
from executor.errors import BrokerError
from executor.journal.store import Journal
from strategies.domain import Order, OrderIntent, OrderState

log = structlog.get_logger("dta.router")

_UNRESOLVED = frozenset({OrderState.SUBMITTING, OrderState.UNKNOWN})


class OrderRouter:
    def __init__(self, journal: Journal, broker: Broker) -> None:
        self.journal = journal
        self.broker = broker

    def submit(self, intent: OrderIntent) -> Order:
        # A re-run cycle finds its order journaled; a new one costs one indexed read.
        existing = (self.journal.get_order(intent.client_order_id)
                    if self.journal.order_state(intent.client_order_id) is not None else None)
        if existing is not None:
            log.warning("order_already_journaled", client_order_id=intent.client_order_id,
                        state=existing.state.value)
            if existing.state is OrderState.NEW:
                return self._send(existing)  # committed but provably never sent
            return self.resolve(existing)
        order = Order(intent)
        self.journal.insert_order(order, detail="created", commit=False)
        return self._send(order)

    def _send(self, order: Order) -> Order:
        submitting = order.transition(OrderState.SUBMITTING)
        # Durable before the broker call: after this commit a crash leaves a row that
        # start-up resolves by lookup, never by a second send. A simulated broker lives and
        # dies with this process (its state is rebuilt from the journal), so there the row
        # commits with the cycle's batch, order and simulated fill together or not at all.
        self.journal.update_order(order, submitting, detail=f"sending to {self.broker.name}",
                                  commit=not self.broker.simulated)
        try:
            result = self.broker.submit(submitting)
        except BrokerError as exc:
            result = submitting.transition(OrderState.UNKNOWN, reason=str(exc))
        except Exception as exc:  # an unexpected error is still ambiguous
            result = submitting.transition(
                OrderState.UNKNOWN, reason=f"{exc.__class__.__name__}: {exc}")
        # Not forced to disk here: if this update is lost in a crash, the row still says
        # ``submitting`` and start-up resolves it by lookup. It commits with the cycle.
        self.journal.update_order(submitting, result, detail=result.reason or "broker answered",
                                  commit=False)
        log.info("order_submitted", client_order_id=result.client_order_id,
                 state=result.state.value, symbol=result.intent.symbol,
                 side=result.intent.side.value, volume=result.intent.volume)
        return result

    def resolve(self, order: Order) -> Order:
        """Settle an order whose outcome we do not know by asking the broker for it."""
        if order.state not in _UNRESOLVED:
            return order
        try:
            seen = self.broker.lookup(order.client_order_id)
        except BrokerError as exc:
            # The broker could not be asked: still unknown, never re-sent. The resolver in
            # executor/reconcile.py retries with backoff.
            log.warning("order_lookup_failed", client_order_id=order.client_order_id,
                        error=str(exc))
            if order.state is OrderState.SUBMITTING:
                unknown = order.transition(OrderState.UNKNOWN, reason=f"lookup failed: {exc}")
                self.journal.update_order(order, unknown, detail=unknown.reason)
                return unknown
            return order
        if seen is None or seen.state in _UNRESOLVED:
            if order.state is OrderState.SUBMITTING:
                unknown = order.transition(OrderState.UNKNOWN,
                                           reason="not found at broker after restart")
                self.journal.update_order(order, unknown, detail=unknown.reason)
                return unknown
            return order
        resolved = order.transition(seen.state, filled_volume=seen.filled_volume,
                                    avg_fill_price=seen.avg_fill_price,
                                    broker_order_id=seen.broker_order_id, reason=seen.reason)
        self.journal.update_order(order, resolved, detail="resolved by broker lookup")
        return resolved

    def resolve_open(self, account: str) -> list[Order]:
        """Start-up pass over every order left submitting or unknown."""
        return [self.resolve(o) for o in self.journal.orders(account, list(_UNRESOLVED))]
