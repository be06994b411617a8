"""Reads for the CLI, governance and reports: counts, traces, the rows a report needs.
Nothing on the daemon's hot path reads through here, and nothing here writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection

from domain import Order
from executor.journal.models import (
    BarRow,
    DecisionRow,
    OrderEventRow,
    OrderRow,
    ParameterSetRow,
    ProposalRow,
    ProviderCallRow,
    RunRow,
    VerdictRow,
)
from executor.journal.orders import OrderRepository, order_from_row
from executor.journal.parameters import ParamRepository
from executor.journal.tables import (
    BARS,
    DECISIONS,
    ORDER_EVENTS,
    ORDERS,
    PROPOSALS,
    PROVIDER_CALLS,
    REJECTS,
    RUNS,
    VERDICTS,
)
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import aware, iso_utc


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
class ReportRows:
    """What a report reads besides orders and fills; a table an older schema lacks reads
    as empty, so a report of an old journal degrades instead of failing."""

    bar_times: list[datetime] = field(default_factory=list)
    proposals: list[ProposalRecord] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    provider_calls: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


class JournalQueries:
    def __init__(self, uow: UnitOfWork, orders: OrderRepository,
                 params: ParamRepository) -> None:
        self._uow = uow
        self._orders = orders
        self._params = params

    # ------------------------------------------------------------------ status

    def runs(self, limit: int = 10) -> list[RunRow]:
        stmt = select(RunRow).order_by(RunRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        return list(self._uow.session.scalars(stmt))

    def bar_counts(self) -> dict[str, Any]:
        self._uow.flush()
        session = self._uow.session
        processed = session.execute(
            select(BARS.c.symbol, BARS.c.timeframe, func.count(), func.max(BARS.c.time))
            .group_by(BARS.c.symbol, BARS.c.timeframe)).all()
        rejected = session.execute(
            select(REJECTS.c.reason, func.count()).group_by(REJECTS.c.reason)).all()
        return {
            "processed": {f"{s}/{tf}": {"count": n, "last": iso_utc(t)}
                          for s, tf, n, t in processed},
            "rejected": {reason: n for reason, n in rejected},
        }

    def count_duplicate_bars(self) -> int:
        stmt = select(func.count()).select_from(
            select(BARS.c.symbol, BARS.c.timeframe, BARS.c.time)
            .group_by(BARS.c.symbol, BARS.c.timeframe, BARS.c.time)
            .having(func.count() > 1).subquery())
        return int(self._uow.session.scalar(stmt) or 0)

    def order_counts(self) -> dict[str, int]:
        rows = self._uow.session.execute(
            select(ORDERS.c.state, func.count()).group_by(ORDERS.c.state)).all()
        return {state: n for state, n in rows}

    # ------------------------------------------------------------------ governance

    def run_ids(self, mode: str, account: str) -> list[int]:
        return [r.id for r in self._uow.conn().execute(
            select(RUNS.c.id).where(RUNS.c.mode == mode, RUNS.c.account == account))]

    def bar_dates(self, run_ids: Sequence[int]) -> set[str]:
        if not run_ids:
            return set()
        rows = self._uow.conn().execute(select(BARS.c.time).where(BARS.c.run_id.in_(run_ids)))
        return {r.time.date().isoformat() for r in rows}

    def decision_count(self, run_ids: Sequence[int]) -> int:
        if not run_ids:
            return 0
        stmt = (select(func.count()).select_from(DECISIONS)
                .join(PROPOSALS, PROPOSALS.c.id == DECISIONS.c.proposal_id)
                .where(PROPOSALS.c.run_id.in_(run_ids)))
        return int(self._uow.conn().execute(stmt).scalar() or 0)

    def orders_in_runs(self, run_ids: Sequence[int]) -> list[Order]:
        if not run_ids:
            return []
        stmt = select(ORDERS).where(ORDERS.c.run_id.in_(run_ids)).order_by(
            ORDERS.c.created_at)
        return [order_from_row(r) for r in self._uow.conn().execute(stmt)]

    def provider_outcomes(self) -> dict[str, int]:
        rows = self._uow.conn().execute(select(PROVIDER_CALLS.c.outcome, func.count())
                                        .group_by(PROVIDER_CALLS.c.outcome))
        return {outcome: n for outcome, n in rows}

    def entry_orders_with_proposals(self, account: str,
                                    since: datetime | None = None) -> list[dict[str, Any]]:
        """Our entry orders with the proposal behind each (tags, entry price, timeframe)."""
        o, d, p = ORDERS, DECISIONS, PROPOSALS
        stmt = (select(o.c.client_order_id, o.c.symbol, o.c.side, o.c.bar_time,
                       o.c.stop_loss, o.c.take_profit, p.c.entry, p.c.tags, p.c.timeframe)
                .join(d, d.c.id == o.c.decision_id).join(p, p.c.id == d.c.proposal_id)
                .where(o.c.account == account).order_by(o.c.bar_time))
        if since is not None:
            stmt = stmt.where(o.c.bar_time >= since)
        return [dict(r._mapping) for r in self._uow.conn().execute(stmt)]

    # ------------------------------------------------------------------ trace

    def trace(self, client_order_id: str) -> dict[str, Any] | None:
        """Everything behind one order: bar, snapshot, proposal, decision, verdict, order,
        its state history and fills."""
        session = self._uow.session
        order = session.get(OrderRow, client_order_id)
        if order is None:
            return None
        out: dict[str, Any] = {"order": order.model_dump(mode="json")}
        out["order_events"] = [
            e.model_dump(mode="json") for e in session.scalars(
                select(OrderEventRow).where(ORDER_EVENTS.c.client_order_id == client_order_id)
                .order_by(OrderEventRow.id))]  # type: ignore[arg-type]
        bar = session.scalars(select(BarRow).where(
            BARS.c.symbol == order.symbol, BARS.c.time == order.bar_time)).first()
        out["bar"] = bar.model_dump(mode="json", exclude={"id"}) if bar else None
        out.update(self._decision_trace(order))
        params = session.get(ParameterSetRow, order.params_hash)
        versions = [v.version for v in self._params.param_versions()
                    if v.hash == order.params_hash]
        out["parameter_set"] = {"hash": order.params_hash, "versions": versions,
                                "content": params.content if params else None}
        out["fills"] = [f.model_dump(mode="json") for f in self._orders.fills(client_order_id)]
        out["provider_calls"] = [
            c.model_dump(mode="json", exclude={"raw_text", "input_json", "output_json"})
            for c in session.scalars(select(ProviderCallRow).where(
                PROVIDER_CALLS.c.decision_id == order.decision_id)
                .order_by(ProviderCallRow.id))] if order.decision_id else []  # type: ignore[arg-type]
        return out

    def _decision_trace(self, order: OrderRow) -> dict[str, Any]:
        """The trace's decision, snapshot, proposal and verdict (None where there is none)."""
        session = self._uow.session
        out: dict[str, Any] = {}
        decision = (session.get(DecisionRow, order.decision_id)
                    if order.decision_id else None)
        out["decision"] = decision.model_dump(mode="json") if decision else None
        proposal = session.get(ProposalRow, decision.proposal_id) if decision else None
        if proposal is not None:
            dumped = proposal.model_dump(mode="json")
            out["snapshot"] = dumped.pop("snapshot")
            out["proposal"] = dumped
        else:
            out["snapshot"] = out["proposal"] = None
        verdict = session.scalars(select(VerdictRow).where(
            VERDICTS.c.decision_id == order.decision_id)).first() if decision else None
        out["verdict"] = verdict.model_dump(mode="json") if verdict else None
        return out

    # ------------------------------------------------------------------ reports

    def report_rows(self) -> ReportRows:
        """Bars, proposals, decisions (with their verdicts), provider calls and runs, in
        one read on a connection of its own (after the run's last commit)."""
        engine = self._uow.engine
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return ReportRows(
                bar_times=_bar_times(conn) if "bars" in tables else [],
                proposals=_proposals(conn) if "proposals" in tables else [],
                decisions=(_decisions(conn, "verdicts" in tables)
                           if "decisions" in tables else []),
                provider_calls=_calls(conn) if "provider_calls" in tables else [],
                runs=_runs(conn) if "runs" in tables else [])

    def decision_rows(self) -> tuple[list[ProposalRecord], list[DecisionRecord],
                                     list[dict[str, Any]]]:
        """Proposals, decisions (with their verdicts) and provider calls, on a connection
        of its own: what ``report_rows`` reads but the bars (the provider matrix)."""
        with self._uow.engine.connect() as conn:
            return _proposals(conn), _decisions(conn, True), _calls(conn)

    def stored_closes(self, symbol: str, timeframe: str) -> list[tuple[Any, float]]:
        """One stream's (time, close) in time order, the time as the database returns it
        (no conversion: ~10x faster over a long stream); ``uow.bind_time`` turns a bar
        time into the same form."""
        stmt = text("SELECT time, close FROM bars WHERE symbol = :s AND timeframe = :tf "
                    "ORDER BY time")
        with self._uow.engine.connect() as conn:
            return [(t, float(c)) for t, c in conn.execute(stmt, {"s": symbol,
                                                                 "tf": timeframe})]

    def closes(self) -> dict[datetime, float]:
        """Each journaled bar's close by time (the tuning audit's outcomes)."""
        with self._uow.engine.connect() as conn:
            rows = conn.execute(select(BARS.c.time, BARS.c.close).order_by(BARS.c.time))
            return {_utc(t): c for t, c in rows}

    def decisions_by_mix(self) -> dict[str, int]:
        """How many decisions each combination of providers made (``a+b``, ``(none)``)."""
        counts: dict[str, int] = {}
        with self._uow.engine.connect() as conn:
            for (mix,) in conn.execute(select(DECISIONS.c.provider_mix)):
                key = "+".join(mix or []) or "(none)"
                counts[key] = counts.get(key, 0) + 1
        return counts


def _utc(t: datetime) -> datetime:
    moment = aware(t)
    assert moment is not None
    return moment


def _bar_times(conn: Connection) -> list[datetime]:
    rows = conn.execute(select(BARS.c.time).distinct().order_by(BARS.c.time))
    return [_utc(r.time) for r in rows]


def _proposals(conn: Connection) -> list[ProposalRecord]:
    t = PROPOSALS
    rows = conn.execute(select(t.c.id, t.c.run_id, t.c.strategy, t.c.symbol, t.c.timeframe,
                               t.c.bar_time, t.c.direction).order_by(t.c.id))
    return [ProposalRecord(r.id, r.run_id, r.strategy, r.symbol, r.timeframe, _utc(r.bar_time),
                           r.direction) for r in rows]


def _decisions(conn: Connection, with_verdicts: bool) -> list[DecisionRecord]:
    approved: dict[int, bool] = {}
    if with_verdicts:
        for r in conn.execute(select(VERDICTS.c.decision_id, VERDICTS.c.approved)):
            approved[int(r.decision_id)] = bool(r.approved)
    t = DECISIONS
    rows = conn.execute(select(t.c.id, t.c.proposal_id, t.c.direction, t.c.confidence,
                               t.c.agreement, t.c.voters, t.c.provider_mix, t.c.signals)
                        .order_by(t.c.id))
    return [DecisionRecord(r.id, r.proposal_id, r.direction, float(r.confidence),
                           int(r.agreement), int(r.voters), tuple(r.provider_mix or ()),
                           tuple(r.signals or ()), approved.get(int(r.id)))
            for r in rows]


def _calls(conn: Connection) -> list[dict[str, Any]]:
    t = PROVIDER_CALLS
    rows = conn.execute(select(t.c.id, t.c.at, t.c.decision_id, t.c.stage, t.c.provider,
                               t.c.provider_class, t.c.model, t.c.latency_ms, t.c.tokens_in,
                               t.c.tokens_out, t.c.cost, t.c.outcome, t.c.abstained,
                               t.c.error_class).order_by(t.c.id))
    return [dict(r._mapping) for r in rows]


def _runs(conn: Connection) -> list[dict[str, Any]]:
    t = RUNS
    rows = conn.execute(select(t.c.id, t.c.started_at, t.c.ended_at, t.c.mode, t.c.status,
                               t.c.params_hash, t.c.summary).order_by(t.c.id))
    return [dict(r._mapping) for r in rows]
