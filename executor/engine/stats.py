"""What one run did, counted as it goes, and the summary `dta run` prints at its end."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from domain import OrderState
from executor.brokers.base import Broker
from executor.brokers.paper import PaperBroker
from executor.components import Components
from executor.journal.store import Journal

# Orders sent and not finished, for the summary's ``open_orders``.
_OPEN = (OrderState.SUBMITTING, OrderState.ACCEPTED, OrderState.UNKNOWN,
         OrderState.PARTIALLY_FILLED)


@dataclass
class RunStats:
    """Counters of this process's run, for the summary and benchmarks."""

    bars_processed: int = 0
    bars_rejected: Counter[str] = field(default_factory=Counter)
    # Rows of the replayed file that never became a bar: (line, exact reason).
    unparseable_rows: tuple[tuple[int, str], ...] = ()
    gaps_flagged: int = 0
    proposals: int = 0
    decisions: int = 0
    approved: int = 0
    vetoes: Counter[str] = field(default_factory=Counter)
    orders: Counter[str] = field(default_factory=Counter)
    fills: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # Reads the broker could not answer (equity): not the algorithm's errors, so they do
    # not count toward the error-spike rollback trigger that ``errors`` feeds.
    broker_read_errors: Counter[str] = field(default_factory=Counter)
    queued_for_approval: int = 0
    approvals_expired: int = 0
    approvals_executed: int = 0
    rollbacks: int = 0
    ea_deals: int = 0
    cycles: int = 0
    # The most recent per-bar latencies (a bounded window: a daemon runs for months).
    latencies_us: deque[float] = field(default_factory=lambda: deque(maxlen=50_000))
    started: float = field(default_factory=time.perf_counter)

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies_us:
            return {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0}
        data = sorted(self.latencies_us)
        return {"p50_us": _pct(data, 50), "p99_us": _pct(data, 99), "max_us": data[-1]}


def _pct(data: Sequence[float], q: float) -> float:
    k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
    return data[k]


def run_summary(s: RunStats, *, mode: str, account: str, c: Components, journal: Journal,
                broker: Broker) -> dict[str, Any]:
    """The run's figures, with the journal's view of its orders and the trading state."""
    elapsed = time.perf_counter() - s.started
    out: dict[str, Any] = {
        "mode": mode,
        "account": account,
        "params_hash": c.params.content_hash,
        "params_version": c.version,
        "bars_processed": s.bars_processed,
        "bars_rejected": dict(s.bars_rejected),
        "unparseable_rows": {"count": len(s.unparseable_rows), "first": [
            {"line": line, "reason": reason} for line, reason in s.unparseable_rows[:10]]},
        "gaps_flagged": s.gaps_flagged,
        "proposals": s.proposals,
        "decisions": s.decisions,
        "approved": s.approved,
        "vetoes": dict(s.vetoes),
        "orders": dict(s.orders),
        "fills": s.fills,
        "errors": dict(s.errors),
        "broker_read_errors": dict(s.broker_read_errors),
        "approvals": {"queued": s.queued_for_approval, "expired": s.approvals_expired,
                      "executed": s.approvals_executed},
        "rollbacks": s.rollbacks,
        "ea_deals": s.ea_deals,
        "trading_state": journal.trading_state.trading_state().state,
        "elapsed_s": round(elapsed, 3),
        "bars_per_s": round(s.bars_processed / elapsed, 1) if elapsed > 0 else 0.0,
        "latency": {k: round(v, 1) for k, v in s.latency_percentiles().items()},
        "positions": {sym: {"volume": p.volume, "avg_price": p.avg_price}
                      for sym, p in broker.positions().items()},
    }
    if isinstance(broker, PaperBroker):
        out["pnl"] = {
            "realized": round(broker.realized_pnl, 2),
            "unrealized": round(broker.unrealized_pnl(), 2),
            "equity": round(broker.equity(), 2),
            "initial_balance": broker.initial_balance,
        }
    out["journal_orders_by_state"] = journal.queries.order_counts()
    out["open_orders"] = len(journal.orders.all(account, list(_OPEN)))
    return out
