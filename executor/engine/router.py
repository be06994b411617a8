"""Where an order leaves the process. Journal first, then broker; never twice.

``submit`` is idempotent on the client order id: a re-run of the same cycle (after a crash
or a restart) finds the journaled row and resolves it by asking the broker, instead of
sending again.

Only the send is here. What becomes of an order once sent (working, filled, looked up) is
the tracker's (``executor.engine.tracker``): the router hands it every result.
"""

from __future__ import annotations

import structlog

from domain import Order, OrderIntent, OrderState
from domain.errors import VenueError
from executor.brokers.base import Broker
from executor.engine.tracker import OrderTracker
from executor.journal.store import Journal

log = structlog.get_logger("dta.router")


class OrderRouter:
    def __init__(self, journal: Journal, broker: Broker,
                 tracker: OrderTracker | None = None) -> None:
        self.journal = journal
        self.broker = broker
        self.tracker = tracker if tracker is not None else OrderTracker(journal, broker)

    def submit(self, intent: OrderIntent) -> Order:
        result = self._submit(intent)
        self.tracker.observe(result)
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
            return self.tracker.lookup(existing)
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
