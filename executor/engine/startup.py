"""Start-up: compare the journal (what we believe) with the broker (what is true) before a
live daemon trades.

- orders the journal has open (``submitting``/``unknown``/``accepted``/``partially_filled``)
  are looked up by client id; the broker's state is adopted when it moved on;
- fills the broker made while we were down are journaled (``record_fill``), once each, by
  their stable fill id;
- working orders the journal does not know are reported as external (an EA's, a human's);
  one that carries *our* mark but is not journaled is a problem;
- net positions per symbol are compared; a difference beyond ``tolerance`` (or any other
  problem) makes the report say **refuse to trade**.

Orders in doubt are looked up by the resolver (``executor.engine.resolver``), never sent
again. ``start_live`` is what `dta run` does with a live daemon once it has started:
reconcile, rebuild the working set, halt on a mismatch, and resolve orders in doubt before
every cycle (and, on a perpetual-swap account, journal its funding payments).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog

from domain import ORDER_TRANSITIONS, Fill, Order, OrderState
from domain.errors import VenueError
from executor.brokers.base import BrokerOrder, ReconcilableBroker
from executor.brokers.config import ResolverSettings
from executor.engine.resolver import UNRESOLVED, WORKING, OrderResolver
from executor.journal.store import Journal

if TYPE_CHECKING:
    from executor.settings import Settings
    from executor.wiring import Daemon

log = structlog.get_logger("dta.reconcile")


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


def journal_net_positions(journal: Journal, account: str) -> dict[str, float]:
    """Net volume per symbol from the journaled fills of ``account``'s orders."""
    out: dict[str, float] = {}
    for f in journal.orders.fills(account=account):
        out[f.symbol] = out.get(f.symbol, 0.0) + (f.volume if f.side == "buy" else -f.volume)
    return {s: round(v, 10) for s, v in out.items()}


@dataclass
class _Findings:
    """What the passes of one reconciliation found, in the order they found it."""

    orders: dict[str, Order]
    adopted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def reconcile(journal: Journal, broker: ReconcilableBroker, account: str, *,
              since: datetime | None = None, settings: ResolverSettings | None = None,
              resolver: OrderResolver | None = None,
              clock: Callable[[], datetime] | None = None) -> ReconcileReport:
    """Compare the journal with the broker once, at start-up, before any trading."""
    settings = settings or ResolverSettings()
    now = (clock or (lambda: datetime.now(UTC)))()
    since = since or now - timedelta(days=7)
    resolver = resolver or OrderResolver(journal, broker, settings, clock=clock)
    found = _Findings({o.client_order_id: o for o in journal.orders.all(account)})
    _settle_open_orders(journal, broker, resolver, found)  # 1. orders left open or in doubt
    recorded, external_fills = _record_missed_fills(journal, broker, found, since)  # 2.
    external = _external_orders(broker, found)  # 3. working orders at the broker
    mismatches = _position_mismatches(journal, broker, account,  # 4. positions
                                      settings.position_tolerance)
    journal.commit()
    report = ReconcileReport(account, tuple(found.adopted), tuple(recorded), tuple(external),
                             tuple(external_fills), tuple(found.unresolved), tuple(found.lost),
                             tuple(mismatches), tuple(found.problems))
    (log.error if report.refuse_to_trade else log.info)("reconciled", **report.summary())
    return report


def _settle_open_orders(journal: Journal, broker: ReconcilableBroker, resolver: OrderResolver,
                        found: _Findings) -> None:
    for coid, order in list(found.orders.items()):
        if order.state in UNRESOLVED:
            after = resolver.resolve(order)
            found.orders[coid] = after
            if after.state in UNRESOLVED:
                found.unresolved.append(coid)
            elif after.state is OrderState.REJECTED and after.reason.startswith("lost:"):
                found.lost.append(coid)
            else:
                found.adopted.append(coid)
        elif order.state in WORKING:
            _settle_working(journal, broker, order, found)


def _settle_working(journal: Journal, broker: ReconcilableBroker, order: Order,
                    found: _Findings) -> None:
    coid = order.client_order_id
    try:
        seen = broker.lookup(coid)
    except VenueError as exc:
        found.problems.append(f"order {coid}: cannot look it up ({exc})")
        return
    if seen is None:
        found.problems.append(f"order {coid}: journal says {order.state.value}, "
                              "the broker does not know it")
        return
    if seen.state is order.state and abs(seen.filled_volume -
                                          order.filled_volume) < 1e-12:
        return
    if seen.state not in ORDER_TRANSITIONS[order.state]:
        found.problems.append(f"order {coid}: journal {order.state.value}, broker "
                              f"{seen.state.value} (not a valid transition)")
        return
    updated = order.transition(seen.state, filled_volume=seen.filled_volume,
                               avg_fill_price=seen.avg_fill_price,
                               broker_order_id=seen.broker_order_id or
                               order.broker_order_id, reason=seen.reason)
    journal.orders.update_order(order, updated, detail="reconciled with the broker",
                                commit=False)
    found.orders[coid] = updated
    found.adopted.append(coid)


def _record_missed_fills(journal: Journal, broker: ReconcilableBroker, found: _Findings,
                         since: datetime) -> tuple[list[str], list[str]]:
    """The fills made while we were down: ids journaled now, and ids not of our orders."""
    recorded: list[str] = []
    external_fills: list[str] = []
    journaled: list[Fill] = []
    for bf in broker.recent_fills(since):
        fill = bf.fill
        if fill.client_order_id not in found.orders:
            external_fills.append(fill.fill_id)
            continue
        journaled.append(fill)
        if journal.orders.record_fill(fill, bf.kind, bf.realized_pnl):
            recorded.append(fill.fill_id)
    if isinstance(broker, KnowsJournaledFills):
        # The adapter's next poll would report these again (defect 5 of issue 15).
        broker.mark_journaled(journaled)
    return recorded, external_fills


def _external_orders(broker: ReconcilableBroker, found: _Findings) -> list[BrokerOrder]:
    external: list[BrokerOrder] = []
    for bo in broker.open_orders():
        known = found.orders.get(bo.client_order_id or "")
        if known is None:
            external.append(bo)
            if bo.ours:
                found.problems.append(f"broker order {bo.broker_order_id} "
                                      f"({bo.client_order_id}) carries our mark but is not "
                                      "in the journal")
        elif known.state.terminal:
            found.problems.append(f"order {bo.client_order_id}: journal says "
                                  f"{known.state.value}, the broker has it working")
    return external


def _position_mismatches(journal: Journal, broker: ReconcilableBroker, account: str,
                         tolerance: float) -> list[PositionMismatch]:
    mine = journal_net_positions(journal, account)
    theirs = {s: p.volume for s, p in broker.positions().items()}
    return [PositionMismatch(s, mine.get(s, 0.0), theirs.get(s, 0.0))
            for s in sorted(set(mine) | set(theirs))
            if abs(mine.get(s, 0.0) - theirs.get(s, 0.0)) > tolerance]


# --------------------------------------------------------------------------- live start


def _to_stderr(message: str) -> None:
    sys.stderr.write(f"dta: {message}\n")


def start_live(settings: Settings, daemon: Daemon, journal: Journal, *,
               warn: Callable[[str], Any] = _to_stderr) -> ReconcileReport:
    """Start-up reconciliation before READY; a mismatch halts trading with an incident
    (the daemon keeps journaling bars so an operator can look). Then orders in doubt are
    looked up before every cycle."""
    from executor.engine.funding import watch_funding
    from guardrails.monitors import reconciliation_trigger

    executor = daemon.executor
    report = reconcile(journal, daemon.live.broker, settings.account,
                       settings=settings.broker.resolver)
    journal.commit()
    executor.tracker.rebuild(settings.account)  # the working set as reconciled
    if executor.protection is not None:  # one stop, at most one target, per position
        executor.protection.reconcile()
    trigger = reconciliation_trigger(not report.refuse_to_trade, "; ".join(report.reasons))
    if trigger is not None:
        executor.triggers.fire(trigger)
        warn("reconciliation mismatch, trading HALTED: " + "; ".join(report.reasons))
    resolver = OrderResolver(journal, daemon.live.broker, settings.broker.resolver)
    executor.before_cycle.append(lambda _now: resolver.resolve_pending(settings.account))
    watch_funding(settings, daemon, journal)  # a swap account's funding, as costs
    return report
