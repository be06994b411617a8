"""Everything a report reads from a journal, in one read-only pass.

Orders and fills come through the ``Journal`` API; bars, proposals, decisions, verdicts
and provider calls through SQL on ``journal.uow.engine``. A table an older schema lacks reads
as empty, so a report of an old journal degrades instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

from domain import Order
from executor.journal.models import (
    BarRow,
    DecisionRow,
    FillRow,
    ProposalRow,
    ProviderCallRow,
    RunRow,
    VerdictRow,
)
from executor.journal.store import Journal

__all__ = ["DecisionRecord", "ProposalRecord", "RunData", "load_run_data"]

_BARS = BarRow.__table__  # type: ignore[attr-defined]
_PROPOSALS = ProposalRow.__table__  # type: ignore[attr-defined]
_DECISIONS = DecisionRow.__table__  # type: ignore[attr-defined]
_VERDICTS = VerdictRow.__table__  # type: ignore[attr-defined]
_CALLS = ProviderCallRow.__table__  # type: ignore[attr-defined]
_RUNS = RunRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    id: int
    run_id: int | None
    strategy: str
    symbol: str
    timeframe: str
    bar_time: datetime
    direction: str


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    id: int
    proposal_id: int
    direction: str
    confidence: float
    agreement: int
    voters: int
    provider_mix: tuple[str, ...]
    signals: tuple[dict[str, Any], ...]
    approved: bool | None = None


@dataclass(frozen=True)
class RunData:
    orders: list[Order]
    fills: list[FillRow]
    bar_times: list[datetime]
    proposals: list[ProposalRecord]
    decisions: list[DecisionRecord]
    provider_calls: list[dict[str, Any]]
    runs: list[dict[str, Any]] = field(default_factory=list)

    def proposals_of_run(self, run_id: int | None) -> list[ProposalRecord]:
        return [p for p in self.proposals if run_id is None or p.run_id == run_id]


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def load_run_data(journal: Journal) -> RunData:
    """Read a journal for a report (after the run's last commit)."""
    journal.commit()
    orders = journal.orders.all()
    fills = journal.orders.fills()
    tables = set(inspect(journal.uow.engine).get_table_names())
    with journal.uow.engine.connect() as conn:
        bar_times = _bar_times(conn) if "bars" in tables else []
        proposals = _proposals(conn) if "proposals" in tables else []
        decisions = _decisions(conn, "verdicts" in tables) if "decisions" in tables else []
        calls = _calls(conn) if "provider_calls" in tables else []
        runs = _runs(conn) if "runs" in tables else []
    return RunData(orders, fills, bar_times, proposals, decisions, calls, runs)


def _bar_times(conn: Connection) -> list[datetime]:
    rows = conn.execute(select(_BARS.c.time).distinct().order_by(_BARS.c.time))
    return [_utc(r.time) for r in rows]


def _proposals(conn: Connection) -> list[ProposalRecord]:
    t = _PROPOSALS
    rows = conn.execute(select(t.c.id, t.c.run_id, t.c.strategy, t.c.symbol, t.c.timeframe,
                               t.c.bar_time, t.c.direction).order_by(t.c.id))
    return [ProposalRecord(r.id, r.run_id, r.strategy, r.symbol, r.timeframe, _utc(r.bar_time),
                           r.direction) for r in rows]


def _decisions(conn: Connection, with_verdicts: bool) -> list[DecisionRecord]:
    approved: dict[int, bool] = {}
    if with_verdicts:
        for r in conn.execute(select(_VERDICTS.c.decision_id, _VERDICTS.c.approved)):
            approved[int(r.decision_id)] = bool(r.approved)
    t = _DECISIONS
    rows = conn.execute(select(t.c.id, t.c.proposal_id, t.c.direction, t.c.confidence,
                               t.c.agreement, t.c.voters, t.c.provider_mix, t.c.signals)
                        .order_by(t.c.id))
    return [DecisionRecord(r.id, r.proposal_id, r.direction, float(r.confidence),
                           int(r.agreement), int(r.voters), tuple(r.provider_mix or ()),
                           tuple(r.signals or ()), approved.get(int(r.id)))
            for r in rows]


def _calls(conn: Connection) -> list[dict[str, Any]]:
    t = _CALLS
    rows = conn.execute(select(t.c.id, t.c.at, t.c.decision_id, t.c.stage, t.c.provider,
                               t.c.provider_class, t.c.model, t.c.latency_ms, t.c.tokens_in,
                               t.c.tokens_out, t.c.cost, t.c.outcome, t.c.abstained,
                               t.c.error_class).order_by(t.c.id))
    return [dict(r._mapping) for r in rows]


def _runs(conn: Connection) -> list[dict[str, Any]]:
    t = _RUNS
    rows = conn.execute(select(t.c.id, t.c.started_at, t.c.ended_at, t.c.mode, t.c.status,
                               t.c.params_hash, t.c.summary).order_by(t.c.id))
    return [dict(r._mapping) for r in rows]
