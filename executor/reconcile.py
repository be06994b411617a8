"""Start-up reconciliation and the resolver for orders in doubt.

Before a live daemon trades, the journal (what we believe) is compared with the broker
(what is true):
- orders the journal has open (``submitting``/``unknown``/``accepted``/``partially_filled``)
  are looked up by client id; the broker's state is adopted when it moved on;
- fills the broker made while we were down are journaled (``record_fill``), once each, by
  their stable fill id;
- working orders the journal does not know are reported as external (an EA's, a human's);
  one that carries *our* mark but is not journaled is a problem;
- net positions per symbol are compared; a difference beyond ``tolerance`` (or any other
  problem) makes the report say **refuse to trade**.

An order whose outcome is unknown is only ever *looked up*, never sent again (a second send
could double the position). ``OrderResolver`` retries the lookup with backoff; only after
``grace_lookups`` misses *and* ``grace_seconds`` since the order was sent is it declared
lost: journaled ``rejected`` with the reason. Each miss is an order event ("lookup miss
n/N"), so the count survives restarts and the audit trail shows every attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import structlog

from domain import ORDER_TRANSITIONS, Fill, Order, OrderState, OrderType
from domain.errors import VenueError
from executor.brokers.base import Broker, BrokerOrder, ReconcilableBroker
from executor.brokers.config import ResolverSettings
from executor.journal.store import Journal
from executor.router import adopt

log = structlog.get_logger("dta.reconcile")

UNRESOLVED = (OrderState.SUBMITTING, OrderState.UNKNOWN)
WORKING = (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)
_MISS = "lookup miss"


@runtime_checkable
class KnowsJournaledFills(Protocol):
    """A broker whose ``on_bar`` reports each fill once by remembering what it reported.
    Reconciliation journals fills behind its back, so it hands them over here: otherwise
    the first poll after start-up reports them again."""

    def mark_journaled(self, fills: Sequence[Fill]) -> None: ...


@dataclass(frozen=True, slots=True)
class PositionMismatch:
    symbol: str
    journal: float
    broker: float

    @property
    def difference(self) -> float:
        return self.broker - self.journal


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    account: str
    adopted: tuple[str, ...] = ()
    fills_recorded: tuple[str, ...] = ()
    external_orders: tuple[BrokerOrder, ...] = ()
    external_fills: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    position_mismatches: tuple[PositionMismatch, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def refuse_to_trade(self) -> bool:
        return bool(self.position_mismatches or self.problems)

    @property
    def reasons(self) -> tuple[str, ...]:
        out = [f"position {m.symbol}: journal {m.journal:+.8g}, broker {m.broker:+.8g}"
               for m in self.position_mismatches]
        out.extend(self.problems)
        return tuple(out)

    def summary(self) -> dict[str, object]:
        """JSON-able, for the journal, logs and ``dta status``."""
        return {
            "account": self.account, "refuse_to_trade": self.refuse_to_trade,
            "reasons": list(self.reasons), "adopted": list(self.adopted),
            "fills_recorded": list(self.fills_recorded),
            "external_orders": [{"client_order_id": o.client_order_id,
                                 "broker_order_id": o.broker_order_id, "symbol": o.symbol,
                                 "side": o.side.value, "volume": o.volume, "ours": o.ours}
                                for o in self.external_orders],
            "external_fills": list(self.external_fills), "unresolved": list(self.unresolved),
            "lost": list(self.lost),
        }


# --------------------------------------------------------------------------- resolver


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
            self.journal.orders.update_order(order, lost,
                                             detail=f"{_MISS} {misses}/{grace}: declared lost")
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


# --------------------------------------------------------------------------- reconcile


def journal_net_positions(journal: Journal, account: str) -> dict[str, float]:
    """Net volume per symbol from the journaled fills of ``account``'s orders."""
    out: dict[str, float] = {}
    for f in journal.orders.fills(account=account):
        out[f.symbol] = out.get(f.symbol, 0.0) + (f.volume if f.side == "buy" else -f.volume)
    return {s: round(v, 10) for s, v in out.items()}


def reconcile(journal: Journal, broker: ReconcilableBroker, account: str, *,
              since: datetime | None = None, settings: ResolverSettings | None = None,
              resolver: OrderResolver | None = None,
              clock: Callable[[], datetime] | None = None) -> ReconcileReport:
    """Compare the journal with the broker once, at start-up, before any trading."""
    settings = settings or ResolverSettings()
    now = (clock or (lambda: datetime.now(UTC)))()
    since = since or now - timedelta(days=7)
    resolver = resolver or OrderResolver(journal, broker, settings, clock=clock)
    adopted: list[str] = []
    problems: list[str] = []
    unresolved: list[str] = []
    lost: list[str] = []

    # 1. orders we left open or in doubt
    orders = {o.client_order_id: o for o in journal.orders.all(account)}
    for coid, order in list(orders.items()):
        if order.state in UNRESOLVED:
            after = resolver.resolve(order)
            orders[coid] = after
            if after.state in UNRESOLVED:
                unresolved.append(coid)
            elif after.state is OrderState.REJECTED and after.reason.startswith("lost:"):
                lost.append(coid)
            else:
                adopted.append(coid)
        elif order.state in WORKING:
            try:
                seen = broker.lookup(coid)
            except VenueError as exc:
                problems.append(f"order {coid}: cannot look it up ({exc})")
                continue
            if seen is None:
                problems.append(f"order {coid}: journal says {order.state.value}, "
                                "the broker does not know it")
                continue
            if seen.state is order.state and abs(seen.filled_volume -
                                                  order.filled_volume) < 1e-12:
                continue
            if seen.state not in ORDER_TRANSITIONS[order.state]:
                problems.append(f"order {coid}: journal {order.state.value}, broker "
                                f"{seen.state.value} (not a valid transition)")
                continue
            updated = order.transition(seen.state, filled_volume=seen.filled_volume,
                                       avg_fill_price=seen.avg_fill_price,
                                       broker_order_id=seen.broker_order_id or
                                       order.broker_order_id, reason=seen.reason)
            journal.orders.update_order(order, updated, detail="reconciled with the broker",
                                        commit=False)
            orders[coid] = updated
            adopted.append(coid)

    # 2. fills made while we were down
    recorded: list[str] = []
    external_fills: list[str] = []
    journaled: list[Fill] = []
    for bf in broker.recent_fills(since):
        fill = bf.fill
        if fill.client_order_id not in orders:
            external_fills.append(fill.fill_id)
            continue
        journaled.append(fill)
        if journal.orders.record_fill(fill, bf.kind, bf.realized_pnl):
            recorded.append(fill.fill_id)
    if isinstance(broker, KnowsJournaledFills):
        # The adapter's next poll would report these again (defect 5 of issue 15).
        broker.mark_journaled(journaled)

    # 3. working orders at the broker
    external: list[BrokerOrder] = []
    for bo in broker.open_orders():
        known = orders.get(bo.client_order_id or "")
        if known is None:
            external.append(bo)
            if bo.ours:
                problems.append(f"broker order {bo.broker_order_id} ({bo.client_order_id}) "
                                "carries our mark but is not in the journal")
        elif known.state.terminal:
            problems.append(f"order {bo.client_order_id}: journal says {known.state.value}, "
                            "the broker has it working")

    # 4. positions
    mine = journal_net_positions(journal, account)
    theirs = {s: p.volume for s, p in broker.positions().items()}
    mismatches = [PositionMismatch(s, mine.get(s, 0.0), theirs.get(s, 0.0))
                  for s in sorted(set(mine) | set(theirs))
                  if abs(mine.get(s, 0.0) - theirs.get(s, 0.0)) > settings.position_tolerance]
    journal.commit()
    report = ReconcileReport(account, tuple(adopted), tuple(recorded), tuple(external),
                             tuple(external_fills), tuple(unresolved), tuple(lost),
                             tuple(mismatches), tuple(problems))
    (log.error if report.refuse_to_trade else log.info)("reconciled", **report.summary())
    return report

