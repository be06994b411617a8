"""The journal: the daemon's memory and the operator's evidence.

``Journal`` composes the unit of work (``unit_of_work.py``: session, durable commit,
per-bar buffers, checkpoints) and one repository per aggregate; its write discipline is
the unit of work's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Engine

from domain import (
    Bar,
    Decision,
    Fill,
    MarketSnapshot,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    ParameterSet,
    Proposal,
    Verdict,
)
from domain.errors import JournalError
from executor import lazy_log as structlog  # structlog itself on the first log call
from executor.journal import database
from executor.journal.database import make_engine, open_engine
from executor.journal.models import (
    ApprovalRow,
    BarRow,
    ClearanceRow,
    DecisionRow,
    EaDealRow,
    FillRow,
    IncidentRow,
    KillSwitchEventRow,
    OrderEventRow,
    OrderRow,
    ParameterSetRow,
    ProposalRow,
    ProviderCallRow,
    ProviderEventRow,
    RunRow,
    VerdictRow,
)
from executor.journal.prepared import Prepared
from executor.journal.tables import (
    APPROVALS,
    BARS,
    BROKER_ERRORS,
    CLEARANCES,
    DAY_BASELINES,
    DECISIONS,
    EA_DEALS,
    FILLS,
    INCIDENTS,
    KILL_EVENTS,
    ORDER_EVENTS,
    ORDERS,
    PARAM_EVENTS,
    PARAM_VERSIONS,
    PROPOSALS,
    PROVIDER_CALLS,
    PROVIDER_EVENTS,
    REJECTS,
    RUNS,
    VERDICTS,
)
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import iso_utc, storable_text, utcnow
from guardrails.params import ParamEvent, ParamVersion

_OPERATOR_ACTIONS = ("disable", "enable")  # other provider events: breaker transitions

# Statements built once: parameters travel separately, so SQLAlchemy's compiled cache hits
# and a journal write costs one driver call, not a statement construction.
_UPDATE_ORDER = (
    update(ORDERS).where(ORDERS.c.client_order_id == bindparam("coid"))
    .values(state=bindparam("state"), filled_volume=bindparam("filled_volume"),
            avg_fill_price=bindparam("avg_fill_price"),
            broker_order_id=bindparam("broker_order_id"), reason=bindparam("reason"),
            updated_at=bindparam("updated_at")))
_SELECT_ORDER = select(ORDERS).where(ORDERS.c.client_order_id == bindparam("coid"))

log = structlog.get_logger("dta.journal")

__all__ = ["STATE_TTL_S", "Journal", "KillSwitchState", "make_engine"]


_STATE_COLUMNS = (KILL_EVENTS.c.action, KILL_EVENTS.c.operator, KILL_EVENTS.c.reason,
                  KILL_EVENTS.c.at, KILL_EVENTS.c.trigger)
# How long a running daemon may act on a cached trading state read from another process.
STATE_TTL_S = 0.25


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    """The newest trading-state event: ``engage`` (HALTED), ``reduce`` (REDUCING) or
    ``release`` (ACTIVE). ``engaged`` is true for anything but ACTIVE."""

    engaged: bool
    operator: str | None = None
    reason: str | None = None
    since: datetime | None = None
    trigger: str | None = None
    action: str = "release"


class Journal:
    """Owner of every persisted fact: the unit of work (``uow``) and the repositories that
    write and read through it."""

    def __init__(self, engine: Engine) -> None:
        self.uow = UnitOfWork(engine)
        self._state_cache: dict[str, tuple[float, KillSwitchState]] = {}
        self._reader: Any = None  # a DBAPI connection of its own for the trading state
        # Called after an incident is committed: (id, severity, kind, message).
        self.incident_listeners: list[Callable[[int, str, str, str], None]] = []

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, create: bool = True) -> Journal:
        """``create=False`` (every `dta` command but ``db upgrade`` and a paper run): only a
        journal that already has a schema; never a new file, directory or schema, so a
        mistyped URL cannot yield an empty journal with the kill switch released."""
        return cls(open_engine(url, migrate_schema=migrate_schema, create=create))

    def close(self) -> None:
        with self.uow.lock:
            try:
                self.uow.commit()
            finally:
                self._close_reader()
                self.uow.close()

    @property
    def dialect(self) -> str:
        return self.uow.dialect

    @property
    def run_id(self) -> int | None:
        return self.uow.run_id

    @property
    def pending_rows(self) -> int:
        return self.uow.pending_rows

    def commit(self, *, durable: bool = False) -> None:
        self.uow.commit(durable=durable)

    def rollback(self) -> None:
        self.uow.rollback()

    def paper_durability(self) -> None:
        self.uow.paper_durability()

    def manual_checkpoints(self) -> None:
        self.uow.manual_checkpoints()

    def checkpoint_due(self, commits: int = 64) -> bool:
        return self.uow.checkpoint_due(commits)

    def checkpoint(self) -> None:
        self.uow.checkpoint()

    # ------------------------------------------------------------------ maintenance

    @property
    def url(self) -> str:
        """The database URL, password masked as SQLAlchemy shows it."""
        return str(self.uow.engine.url)

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """(this journal's schema revision, the code's head revision)."""
        return database.schema_revisions(self.uow.engine)

    def has_version_table(self) -> bool:
        return database.has_version_table(self.uow.engine)

    def probe_write(self) -> None:
        """One committed write outside the session (``dta doctor``); raises what failed."""
        database.probe_write(self.uow.engine)

    # ------------------------------------------------------------------ runs

    def start_run(self, mode: str, account: str, settings_hash: str, params: ParameterSet,
                  *, sole_daemon: bool = False) -> int:
        """A new run row. ``sole_daemon``: the caller holds the account's lease, so a run of
        the account still marked ``running`` belongs to a process that died without
        ending it (SIGKILL, power loss): it is marked ``died``, so `dta status` does not
        show a daemon that is not there."""
        with self.uow.lock:
            if sole_daemon:
                result: Any = self.uow.session.execute(
                    update(RunRow).where(RunRow.account == account,  # type: ignore[arg-type]
                                         RunRow.status == "running")  # type: ignore[arg-type]
                    .values(status="died"))
                orphans = int(result.rowcount)
                if orphans:
                    log.warning("runs_marked_died", account=account, runs=orphans)
            self.save_parameter_set(params)
            row = RunRow(started_at=utcnow(), mode=mode, account=account,
                         settings_hash=settings_hash, params_hash=params.content_hash)
            self.uow.session.add(row)
            self.uow.session.flush()
            assert row.id is not None
            self.uow.run_id = row.id
            self.uow.commit(durable=True)
            return row.id

    def end_run(self, status: str, summary: dict[str, Any]) -> None:
        with self.uow.lock:
            if self.uow.run_id is None:
                return
            self.uow.session.execute(
                update(RunRow).where(RunRow.id == self.uow.run_id)  # type: ignore[arg-type]
                .values(ended_at=utcnow(), status=status, summary=summary)
            )
            self.uow.commit(durable=True)

    def runs(self, limit: int = 10) -> list[RunRow]:
        stmt = select(RunRow).order_by(RunRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        return list(self.uow.session.scalars(stmt))

    def save_parameter_set(self, params: ParameterSet) -> None:
        if self.uow.session.get(ParameterSetRow, params.content_hash) is None:
            self.uow.session.add(ParameterSetRow(hash=params.content_hash, created_at=utcnow(),
                                              content=params.values))
            self.uow.session.flush()

    # ------------------------------------------------------------------ bars

    def record_bar(self, bar: Bar, gap_bars: int = 0) -> None:
        """Buffer a processed bar's row (written with the next commit). Kept as a tuple in
        ``BAR_KEYS`` order with its time already bound: a replay buffers one per bar.
        Prices go as they are: the validator passed only floats and plain ints, and the
        FLOAT columns store both as REAL."""
        try:
            at = self.uow.bind_time(bar.time)
        except (ValueError, TypeError, OverflowError) as exc:  # as a refused statement
            raise JournalError(f"journal statement failed: {exc.__class__.__name__}: "
                               f"{exc}") from None
        self.uow.pending_bars.append((
            self.uow.run_id, bar.symbol, bar.timeframe, at, bar.open, bar.high, bar.low,
            bar.close, bar.volume, bar.spread, gap_bars))

    def record_rejection(self, bar: Bar | None, symbol: str, timeframe: str, reason: str,
                         detail: str) -> None:
        """A rejected bar's row. Its time is kept only when it is an aware datetime (the
        column's type): a bar rejected for its time carries it in ``detail`` instead, so
        bad input can never make the journal's commit fail."""
        t = bar.time if bar is not None else None
        try:
            t = t.astimezone(UTC) if isinstance(t, datetime) and t.utcoffset() is not None \
                else None
        except (OverflowError, ValueError):  # at the edge of datetime's range
            t = None
        self.uow.pending_rejects.append({
            "run_id": self.uow.run_id, "symbol": symbol, "timeframe": timeframe,
            "time": t, "reason": reason, "detail": storable_text(detail),
        })

    def last_bar_time(self, symbol: str, timeframe: str) -> datetime | None:
        """The resume point: the newest bar journaled as processed for this stream."""
        self.uow.flush()
        stmt = select(func.max(BARS.c.time)).where(
            BARS.c.symbol == symbol, BARS.c.timeframe == timeframe)
        value: datetime | None = self.uow.session.scalar(stmt)
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def iter_bars(self, symbol: str, timeframe: str, limit: int | None = None) -> Iterator[Bar]:
        """Processed bars in time order (the last ``limit`` when given), to warm a snapshot
        builder after a restart without re-running the strategy on them."""
        self.uow.flush()
        stmt = select(BarRow).where(BARS.c.symbol == symbol, BARS.c.timeframe == timeframe)
        if limit is not None:
            stmt = stmt.order_by(BarRow.time.desc()).limit(limit)  # type: ignore[attr-defined]
            rows = list(self.uow.session.scalars(stmt))[::-1]
        else:
            rows = list(self.uow.session.scalars(stmt.order_by(BarRow.time)))  # type: ignore[arg-type]
        for r in rows:
            yield Bar(r.symbol, r.timeframe, r.time, r.open, r.high, r.low, r.close,
                      r.volume, r.spread)

    def bar_counts(self) -> dict[str, Any]:
        self.uow.flush()
        processed = self.uow.session.execute(
            select(BARS.c.symbol, BARS.c.timeframe, func.count(), func.max(BARS.c.time))
            .group_by(BARS.c.symbol, BARS.c.timeframe)).all()
        rejected = self.uow.session.execute(
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
        return int(self.uow.session.scalar(stmt) or 0)

    # ------------------------------------------------------------------ decisions

    def record_proposal(self, proposal: Proposal, snapshot: MarketSnapshot) -> int:
        return self.uow.insert(PROPOSALS, dict(
            run_id=self.uow.run_id, strategy=proposal.strategy, symbol=proposal.symbol,
            timeframe=proposal.timeframe, bar_time=proposal.bar_time,
            direction=proposal.direction.value, entry=proposal.entry, stop=proposal.stop,
            target=proposal.target, reason=proposal.reason, tags=list(proposal.tags),
            snapshot=snapshot.summary()))

    def record_decision(self, decision: Decision, proposal_id: int) -> int:
        return self.uow.insert(DECISIONS, dict(
            proposal_id=proposal_id, direction=decision.direction.value,
            confidence=decision.confidence, agreement=decision.agreement,
            voters=decision.voters, provider_mix=list(decision.provider_mix),
            signals=[{"provider": s.provider, "direction": s.direction.value,
                      "confidence": s.confidence, "rationale": s.rationale,
                      "tags": list(s.tags), "abstain_reason": s.abstain_reason,
                      "latency_ms": round(s.latency_ms, 3)} for s in decision.signals],
            contributions=dict(decision.contributions), params_hash=decision.params_hash,
            size_factor=decision.size_factor))

    def latest_decision_id(self, strategy: str, symbol: str, timeframe: str,
                           bar_time: datetime) -> int | None:
        """The newest decision on the proposal of ``strategy`` for that bar (a late
        provider answer names its decision this way; should one strategy propose twice on
        one bar, the newer decision is taken)."""
        p, d = PROPOSALS, DECISIONS
        stmt = (select(func.max(d.c.id)).select_from(d.join(p, d.c.proposal_id == p.c.id))
                .where(p.c.symbol == symbol, p.c.bar_time == bar_time,
                       p.c.strategy == strategy, p.c.timeframe == timeframe))
        found = self.uow.conn().execute(stmt).scalar()
        return None if found is None else int(found)

    def record_verdict(self, verdict: Verdict, decision_id: int) -> int:
        return self.uow.insert(VERDICTS, dict(
            decision_id=decision_id, approved=verdict.approved,
            checks=[{"name": c.name, "passed": c.passed, "reason": c.reason}
                    for c in verdict.checks],
            reasons="; ".join(verdict.reasons)))

    def veto_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        rows = self.uow.session.scalars(select(VerdictRow).where(VERDICTS.c.approved.is_(False)))
        for row in rows:
            for check in row.checks or []:
                if not check["passed"]:
                    out[check["name"]] = out.get(check["name"], 0) + 1
        return out

    # ------------------------------------------------------------------ orders

    def insert_order(self, order: Order, detail: str = "", *, commit: bool = True) -> None:
        """Write the order row; committed (durably) before the broker sees the order, here
        or by the router's next ``update_order``."""
        with self.uow.lock:
            now = utcnow()
            self.uow.write(ORDERS, _order_row(order, self.uow.run_id, now))
            self.uow.write(ORDER_EVENTS, dict(
                client_order_id=order.client_order_id, at=now, from_state=None,
                to_state=order.state.value, detail=detail))
            if commit:
                self.uow.commit(durable=True)

    def insert_sending(self, new: Order, sending: Order, detail: str, *,
                       commit: bool = True) -> None:
        """A new order's row already in ``sending``'s state, with both its events (created,
        then ``detail``): the rows ``insert_order(new)`` and ``set_order_state`` to
        ``sending`` leave, in one step. Nobody can see the row in between, as both are in
        one transaction. ``commit``: durably, now (before a real broker's call)."""
        with self.uow.lock:
            now = utcnow()
            self.uow.write(ORDERS, _order_row(sending, self.uow.run_id, now))
            coid = sending.client_order_id
            self.uow.writer(ORDER_EVENTS, _EVENT_KEYS).write_many(self.uow.dbapi(), (
                dict(client_order_id=coid, at=now, from_state=None,
                     to_state=new.state.value, detail="created"),
                dict(client_order_id=coid, at=now, from_state=new.state.value,
                     to_state=sending.state.value, detail=detail)))
            if commit:
                self.uow.commit(durable=True)

    def update_order(self, before: Order, after: Order, detail: str = "",
                     commit: bool = True) -> None:
        self.set_order_state(before.state, after, detail, commit=commit)

    def set_order_state(self, before: OrderState, after: Order, detail: str = "",
                        commit: bool = True) -> None:
        """Move a journaled order from state ``before`` to ``after`` (the row and an event)."""
        with self.uow.lock:
            now = utcnow()
            p = self.uow.prep("update_order", lambda: _UPDATE_ORDER)
            p.write(self.uow.dbapi(), dict(
                coid=after.client_order_id, state=after.state.value,
                filled_volume=after.filled_volume, avg_fill_price=after.avg_fill_price,
                broker_order_id=after.broker_order_id, reason=after.reason, updated_at=now))
            self.uow.write(ORDER_EVENTS, dict(
                client_order_id=after.client_order_id, at=now, from_state=before.value,
                to_state=after.state.value, detail=detail))
            if commit:
                self.uow.commit(durable=True)

    def get_order(self, client_order_id: str) -> Order | None:
        row = self.uow.conn().execute(_SELECT_ORDER, {"coid": client_order_id}).first()
        return None if row is None else _order_from_row(row)

    def order_state(self, client_order_id: str) -> OrderState | None:
        """The journaled state of one order (one indexed column read: the fill path asks
        this for every fill)."""
        p = self.uow.prep("order_state", lambda: select(ORDERS.c.state).where(
            ORDERS.c.client_order_id == bindparam("coid")))
        value = p.scalar(self.uow.dbapi(), {"coid": client_order_id})
        return None if value is None else OrderState(value)

    def orders(self, account: str | None = None, states: Sequence[OrderState] | None = None,
               ) -> list[Order]:
        stmt = select(ORDERS).order_by(ORDERS.c.created_at, ORDERS.c.client_order_id)
        if account is not None:
            stmt = stmt.where(ORDERS.c.account == account)
        if states is not None:
            stmt = stmt.where(ORDERS.c.state.in_([s.value for s in states]))
        return [_order_from_row(r) for r in self.uow.conn().execute(stmt)]

    def order_counts(self) -> dict[str, int]:
        rows = self.uow.session.execute(
            select(ORDERS.c.state, func.count()).group_by(ORDERS.c.state)).all()
        return {state: n for state, n in rows}

    # ------------------------------------------------------------------ fills

    def record_fill(self, fill: Fill, kind: str, realized_pnl: float) -> bool:
        """Journal ``fill`` once; True when it was new. A fill id already journaled is a
        no-op, not an error: start-up reconciliation and the first poll after it can both
        see a deal made while the daemon was down (issue 15, defect 5)."""
        known = self.uow.prep("fill_exists", lambda: select(FILLS.c.fill_id).where(
            FILLS.c.fill_id == bindparam("fill_id")))
        if known.rows(self.uow.dbapi(), {"fill_id": fill.fill_id}):
            return False
        self.uow.write(FILLS, dict(
            fill_id=fill.fill_id, client_order_id=fill.client_order_id, symbol=fill.symbol,
            side=fill.side.value, time=fill.time, price=fill.price, volume=fill.volume,
            fee=fill.fee, kind=kind, realized_pnl=realized_pnl))
        return True

    def fills(self, client_order_id: str | None = None, *,
              account: str | None = None) -> list[FillRow]:
        """Fills in time order: of one order, of one account's orders, or all."""
        stmt = select(FillRow).order_by(FillRow.time, FillRow.fill_id)  # type: ignore[arg-type]
        if client_order_id is not None:
            stmt = stmt.where(FILLS.c.client_order_id == client_order_id)
        if account is not None:
            stmt = stmt.where(FILLS.c.client_order_id.in_(
                select(ORDERS.c.client_order_id).where(ORDERS.c.account == account)))
        return list(self.uow.session.scalars(stmt))

    def net_positions(self) -> dict[str, float]:
        """Net lots per symbol from the journaled fills (an exit fill has the opposite side)."""
        out: dict[str, float] = {}
        for f in self.fills():
            out[f.symbol] = out.get(f.symbol, 0.0) + (f.volume if f.side == "buy" else -f.volume)
        return {s: round(v, 8) for s, v in out.items() if abs(v) > 1e-9}

    def fill_id_exists(self, fill_id: str) -> bool:
        return self.uow.session.get(FillRow, fill_id) is not None

    # ------------------------------------------------------------------ kill switch

    def record_kill_switch(self, action: str, operator: str, reason: str,
                           trigger: str = "manual", scope: str = "global") -> None:
        with self.uow.lock:
            self.uow.session.add(KillSwitchEventRow(at=utcnow(), action=action, scope=scope,
                                                 operator=operator, reason=reason,
                                                 trigger=trigger))
            self.uow.commit(durable=True)
            self._state_cache.clear()

    def kill_switch_state(self, scope: str = "global", *,
                          fresh: bool = False) -> KillSwitchState:
        """Read from the database, so an operator's `dta kill-switch` in another process
        reaches a running daemon; cached for at most ``STATE_TTL_S`` of wall time (a replay
        decides thousands of times a second). This process's own changes clear the cache.
        ``fresh``: read through the cache (a state change decides on the current state)."""
        cached = self._state_cache.get(scope)
        now = time.monotonic()
        if not fresh and cached is not None and now - cached[0] < STATE_TTL_S:
            return cached[1]
        state = self._read_state(scope)
        self._state_cache[scope] = (now, state)
        return state

    def _read_state(self, scope: str) -> KillSwitchState:
        t = KILL_EVENTS
        p = self.uow.prep("trading_state", lambda: select(*_STATE_COLUMNS).where(
            t.c.scope == bindparam("scope")).order_by(t.c.id.desc()).limit(1))
        with self.uow.lock:
            if self.uow.in_memory:  # one shared connection, and no other process can write
                rows = p.rows(self.uow.dbapi(), {"scope": scope})
            else:
                rows = self._read_committed(p, {"scope": scope})
        if not rows:
            return KillSwitchState(engaged=False)
        r = rows[0]
        return KillSwitchState(r["action"] != "release", r["operator"], r["reason"], r["at"],
                               r["trigger"], r["action"])

    def _read_committed(self, p: Prepared, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows as committed now, by any process, whatever snapshot the session's open
        transaction holds: a DBAPI connection of the journal's own whose read transaction
        ends after every read. Reconnects once if the database dropped it."""
        for attempt in (1, 2):
            if self._reader is None:
                self._reader = self.uow.engine.raw_connection()
            try:
                rows = p.rows(self._reader, values)
                self._reader.rollback()
                return rows
            except JournalError:
                self._close_reader(invalidate=True)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _close_reader(self, *, invalidate: bool = False) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.invalidate() if invalidate else reader.close()

    def kill_switch_events(self, limit: int = 20) -> list[KillSwitchEventRow]:
        stmt = select(KillSwitchEventRow).order_by(
            KillSwitchEventRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        return list(self.uow.session.scalars(stmt))

    # ------------------------------------------------------------------ parameter sets

    def param_versions(self) -> list[ParamVersion]:
        rows = self.uow.conn().execute(select(PARAM_VERSIONS).order_by(PARAM_VERSIONS.c.version))
        return [ParamVersion(r.version, r.hash, r.content or {}, r.parent, r.author, r.reason,
                             r.created_at, bool(r.bad)) for r in rows]

    def param_events(self) -> list[ParamEvent]:
        rows = self.uow.conn().execute(select(PARAM_EVENTS).order_by(PARAM_EVENTS.c.id))
        return [ParamEvent(r.id, r.at, r.version, r.action, r.operator, r.reason, r.trigger)
                for r in rows]

    def add_param_version(self, content: dict[str, Any], parent: int | None, author: str,
                          reason: str, evidence: dict[str, Any] | None = None) -> ParamVersion:
        with self.uow.lock:
            params = ParameterSet(content)
            self.save_parameter_set(params)
            now = utcnow()
            version = self.uow.insert(PARAM_VERSIONS, dict(
                hash=params.content_hash, content=content, parent=parent, author=author,
                reason=reason, created_at=now, bad=False, evidence=evidence))
            self.uow.commit(durable=True)
            return ParamVersion(version, params.content_hash, content, parent, author, reason,
                                now)

    def attach_evidence(self, version: int, evidence: dict[str, Any]) -> None:
        with self.uow.lock:
            self.uow.conn().execute(update(PARAM_VERSIONS).where(
                PARAM_VERSIONS.c.version == version).values(evidence=evidence))
            self.uow.commit(durable=True)

    def param_evidence(self, version: int) -> dict[str, Any] | None:
        row = self.uow.conn().execute(select(PARAM_VERSIONS.c.evidence).where(
            PARAM_VERSIONS.c.version == version)).first()
        return dict(row.evidence) if row is not None and row.evidence else None

    def add_param_event(self, version: int, action: str, operator: str, reason: str,
                        trigger: str | None = None) -> None:
        with self.uow.lock:
            self.uow.insert(PARAM_EVENTS, dict(at=utcnow(), version=version, action=action,
                                             operator=operator, reason=reason, trigger=trigger))
            self.uow.commit(durable=True)

    def mark_param_bad(self, version: int) -> None:
        with self.uow.lock:
            self.uow.conn().execute(update(PARAM_VERSIONS).where(
                PARAM_VERSIONS.c.version == version).values(bad=True))
            self.uow.commit(durable=True)

    def latest_param_event_id(self) -> int:
        """Cheap change detection for a running daemon: a new event means re-read."""
        p = self.uow.prep("max_param_event", lambda: select(func.max(PARAM_EVENTS.c.id)))
        return int(p.scalar(self.uow.dbapi()) or 0)

    # ------------------------------------------------------------------ approvals

    def create_approval(self, *, decision_id: int, account: str, symbol: str, direction: str,
                        intent: dict[str, Any], why: str, created_at: datetime,
                        expires_at: datetime) -> int:
        return self.uow.insert(APPROVALS, dict(
            decision_id=decision_id, account=account, symbol=symbol, direction=direction,
            intent=intent, why=why, created_at=created_at, expires_at=expires_at,
            status="pending"))

    def approvals(self, status: str | None = None) -> list[ApprovalRow]:
        if status is None:
            stmt = select(APPROVALS).order_by(APPROVALS.c.id)
            return [ApprovalRow(**r._mapping) for r in self.uow.conn().execute(stmt)]
        # Polled by the running daemon every second: prepared.
        p = self.uow.prep("approvals_by_status", lambda: select(APPROVALS).where(
            APPROVALS.c.status == bindparam("status")).order_by(APPROVALS.c.id))
        return [ApprovalRow(**r) for r in p.rows(self.uow.dbapi(), {"status": status})]

    def get_approval(self, approval_id: int) -> ApprovalRow | None:
        row = self.uow.conn().execute(
            select(APPROVALS).where(APPROVALS.c.id == approval_id)).first()
        return ApprovalRow(**row._mapping) if row else None

    def set_approval_status(self, approval_id: int, status: str, *, expected: str,
                            operator: str | None = None, note: str | None = None,
                            decided_at: datetime | None = None,
                            client_order_id: str | None = None, commit: bool = True) -> bool:
        """Compare-and-set on the status, so an approval and its expiry cannot both win.
        ``commit=False``: the change commits with the caller's next (durable) commit, as
        the ``executed`` mark does with its order's row."""
        with self.uow.lock:
            values: dict[str, Any] = {"status": status}
            if operator is not None:
                values["operator"] = operator
            if note is not None:
                values["note"] = note
            if decided_at is not None:
                values["decided_at"] = decided_at
            if client_order_id is not None:
                values["client_order_id"] = client_order_id
            result = self.uow.conn().execute(update(APPROVALS).where(
                APPROVALS.c.id == approval_id, APPROVALS.c.status == expected).values(**values))
            if commit:
                self.uow.commit(durable=True)
            return bool(result.rowcount)

    def decision_signals(self, decision_id: int) -> list[dict[str, Any]]:
        row = self.uow.conn().execute(select(DECISIONS.c.signals).where(
            DECISIONS.c.id == decision_id)).first()
        return list(row.signals or []) if row else []

    # ------------------------------------------------------------------ incidents

    def open_incident(self, severity: str, kind: str, message: str,
                      details: dict[str, Any] | None = None) -> int:
        with self.uow.lock:
            incident = self.uow.insert(INCIDENTS, dict(at=utcnow(), severity=severity, kind=kind,
                                                     message=message, status="open",
                                                     details=details))
            self.uow.commit(durable=True)
        for listener in self.incident_listeners:
            with contextlib.suppress(Exception):  # escalation must never break the journal
                listener(incident, severity, kind, message)
        return incident

    def set_incident_status(self, incident_id: int, status: str, operator: str,
                            note: str) -> bool:
        """acknowledged | resolved, with who and why appended to the incident's details."""
        with self.uow.lock:
            row = self.uow.conn().execute(select(INCIDENTS).where(
                INCIDENTS.c.id == incident_id)).first()
            if row is None:
                return False
            details = dict(row.details or {})
            history = list(details.get("history", []))
            history.append({"at": utcnow().isoformat(), "status": status,
                            "operator": operator, "note": note})
            details["history"] = history
            self.uow.conn().execute(update(INCIDENTS).where(INCIDENTS.c.id == incident_id)
                                 .values(status=status, details=details))
            self.uow.commit(durable=True)
            return True

    def incidents(self, status: str | None = None) -> list[IncidentRow]:
        stmt = select(INCIDENTS).order_by(INCIDENTS.c.id)
        if status is not None:
            stmt = stmt.where(INCIDENTS.c.status == status)
        return [IncidentRow(**r._mapping) for r in self.uow.conn().execute(stmt)]

    # ------------------------------------------------------------------ provider telemetry

    def record_provider_call(self, values: dict[str, Any]) -> None:
        self.uow.write(PROVIDER_CALLS, {"at": utcnow(), **{
            k: storable_text(v) if isinstance(v, str) else v for k, v in values.items()}})

    def provider_calls(self, provider: str | None = None,
                       limit: int = 200) -> list[ProviderCallRow]:
        t = PROVIDER_CALLS
        stmt = select(t).order_by(t.c.id.desc()).limit(limit)
        if provider is not None:
            stmt = stmt.where(t.c.provider == provider)
        return [ProviderCallRow(**r._mapping) for r in self.uow.conn().execute(stmt)][::-1]

    def record_provider_event(self, provider: str, action: str, operator: str,
                              reason: str) -> None:
        with self.uow.lock:
            self.uow.insert(PROVIDER_EVENTS, dict(at=utcnow(), provider=provider, action=action,
                                                operator=operator, reason=reason))
            self.uow.commit(durable=True)

    def disabled_providers(self) -> dict[str, ProviderEventRow]:
        """Providers whose newest operator event is ``disable``, with that event."""
        t = PROVIDER_EVENTS
        latest: dict[str, ProviderEventRow] = {}
        for r in self.uow.conn().execute(select(t).where(t.c.action.in_(_OPERATOR_ACTIONS))
                                      .order_by(t.c.id)):
            latest[r.provider] = ProviderEventRow(**r._mapping)
        return {p: e for p, e in latest.items() if e.action == "disable"}

    def breaker_events(self) -> dict[str, ProviderEventRow]:
        """Each provider's newest breaker transition (action ``breaker_<state>``, journaled
        by the daemon: ``ensemble.late``)."""
        t = PROVIDER_EVENTS
        newest = (select(func.max(t.c.id))
                  .where(t.c.action.startswith("breaker_", autoescape=True))
                  .group_by(t.c.provider))
        return {r.provider: ProviderEventRow(**r._mapping)
                for r in self.uow.conn().execute(select(t).where(t.c.id.in_(newest)))}

    def latest_provider_event_id(self) -> int:
        """The newest operator (dis|en)able event: a breaker transition is no reason for
        the daemon to rebuild its ensemble (which would reset every breaker)."""
        t = PROVIDER_EVENTS
        p = self.uow.prep("max_provider_event", lambda: select(func.max(t.c.id)).where(
            (t.c.action == _OPERATOR_ACTIONS[0]) | (t.c.action == _OPERATOR_ACTIONS[1])))
        return int(p.scalar(self.uow.dbapi()) or 0)

    # ------------------------------------------------------------------ governance

    def record_clearance(self, *, account: str, strategy: str, action: str, mode: str,
                         person: str, note: str, role: str | None = None,
                         evidence: dict[str, Any] | None = None) -> int:
        with self.uow.lock:
            row = self.uow.insert(CLEARANCES, dict(
                at=utcnow(), account=account, strategy=strategy, action=action, mode=mode,
                role=role, person=person, note=note, evidence=evidence))
            self.uow.commit(durable=True)
            return row

    def clearances(self, account: str | None = None,
                   strategy: str | None = None) -> list[ClearanceRow]:
        stmt = select(CLEARANCES).order_by(CLEARANCES.c.id)
        if account is not None:
            stmt = stmt.where(CLEARANCES.c.account == account)
        if strategy is not None:
            stmt = stmt.where(CLEARANCES.c.strategy == strategy)
        return [ClearanceRow(**r._mapping) for r in self.uow.conn().execute(stmt)]

    def run_ids(self, mode: str, account: str) -> list[int]:
        return [r.id for r in self.uow.conn().execute(
            select(RUNS.c.id).where(RUNS.c.mode == mode, RUNS.c.account == account))]

    def bar_dates(self, run_ids: Sequence[int]) -> set[str]:
        if not run_ids:
            return set()
        rows = self.uow.conn().execute(select(BARS.c.time).where(BARS.c.run_id.in_(run_ids)))
        return {r.time.date().isoformat() for r in rows}

    def decision_count(self, run_ids: Sequence[int]) -> int:
        if not run_ids:
            return 0
        stmt = (select(func.count()).select_from(DECISIONS)
                .join(PROPOSALS, PROPOSALS.c.id == DECISIONS.c.proposal_id)
                .where(PROPOSALS.c.run_id.in_(run_ids)))
        return int(self.uow.conn().execute(stmt).scalar() or 0)

    def orders_in_runs(self, run_ids: Sequence[int]) -> list[Order]:
        if not run_ids:
            return []
        stmt = select(ORDERS).where(ORDERS.c.run_id.in_(run_ids)).order_by(
            ORDERS.c.created_at)
        return [_order_from_row(r) for r in self.uow.conn().execute(stmt)]

    def provider_outcomes(self) -> dict[str, int]:
        rows = self.uow.conn().execute(select(PROVIDER_CALLS.c.outcome, func.count())
                                    .group_by(PROVIDER_CALLS.c.outcome))
        return {outcome: n for outcome, n in rows}

    # ------------------------------------------------------------------ daily limits

    def record_day_start(self, account: str, day: datetime, equity: float) -> None:
        """The day's baseline, written once: the first reading of the day stands, whatever
        restarts or parameter versions follow (commits with the cycle). Prepared, as an
        INSERT that leaves an existing row alone: it runs at every day's first bar."""
        def build() -> Any:
            from sqlalchemy.dialects import postgresql, sqlite

            dialect_insert = sqlite.insert if self.uow.dialect == "sqlite" else postgresql.insert
            return dialect_insert(DAY_BASELINES).on_conflict_do_nothing(
                index_elements=["account", "day"])

        with self.uow.lock:
            p = self.uow.prep("day_start", build, ("account", "day", "start_equity", "at"))
            p.write(self.uow.dbapi(), dict(account=account, day=day, start_equity=equity,
                                        at=utcnow()))

    def day_start(self, account: str) -> tuple[datetime, float] | None:
        """The newest day baseline of ``account``: (midnight UTC, start equity)."""
        row = self.uow.conn().execute(
            select(DAY_BASELINES.c.day, DAY_BASELINES.c.start_equity)
            .where(DAY_BASELINES.c.account == account)
            .order_by(DAY_BASELINES.c.day.desc()).limit(1)).first()
        return None if row is None else (row.day, row.start_equity)

    def record_broker_error(self, account: str, at: datetime, kind: str,
                            detail: str = "") -> None:
        with self.uow.lock:
            self.uow.conn().execute(insert(BROKER_ERRORS).values(
                account=account, at=at, kind=kind, detail=detail[:500]))

    def broker_error_times(self, account: str, limit: int) -> list[datetime]:
        """The times of ``account``'s newest ``limit`` broker errors, oldest first."""
        rows = self.uow.conn().execute(
            select(BROKER_ERRORS.c.at).where(BROKER_ERRORS.c.account == account)
            .order_by(BROKER_ERRORS.c.at.desc(), BROKER_ERRORS.c.id.desc())
            .limit(limit)).all()
        return [r.at for r in reversed(rows)]

    # ------------------------------------------------------------------ shadow mode

    def record_ea_deals(self, deals: Sequence[Any]) -> int:
        """Journal EA deals once each (by ticket); returns how many were new."""
        if not deals:
            return 0
        tickets = [d.ticket for d in deals]
        known = {r.ticket for r in self.uow.conn().execute(
            select(EA_DEALS.c.ticket).where(EA_DEALS.c.ticket.in_(tickets)))}
        new = [{"ticket": d.ticket, "symbol": d.symbol, "time": d.time, "side": d.side,
                "price": d.price, "volume": d.volume, "entry": d.entry, "sl": d.sl,
                "tp": d.tp, "magic": d.magic, "comment": d.comment, "run_id": self.uow.run_id}
               for d in deals if d.ticket not in known]
        if new:
            self.uow.conn().execute(insert(EA_DEALS), new)
        return len(new)

    def ea_deals(self, since: datetime | None = None) -> list[EaDealRow]:
        stmt = select(EA_DEALS).order_by(EA_DEALS.c.time, EA_DEALS.c.ticket)
        if since is not None:
            stmt = stmt.where(EA_DEALS.c.time >= since)
        return [EaDealRow(**r._mapping) for r in self.uow.conn().execute(stmt)]

    def last_ea_deal_time(self) -> datetime | None:
        value: datetime | None = self.uow.conn().execute(
            select(func.max(EA_DEALS.c.time))).scalar()
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

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
        return [dict(r._mapping) for r in self.uow.conn().execute(stmt)]

    # ------------------------------------------------------------------ trace

    def trace(self, client_order_id: str) -> dict[str, Any] | None:
        """Everything behind one order: bar, snapshot, proposal, decision, verdict, order,
        its state history and fills."""
        order = self.uow.session.get(OrderRow, client_order_id)
        if order is None:
            return None
        out: dict[str, Any] = {"order": order.model_dump(mode="json")}
        out["order_events"] = [
            e.model_dump(mode="json") for e in self.uow.session.scalars(
                select(OrderEventRow).where(ORDER_EVENTS.c.client_order_id == client_order_id)
                .order_by(OrderEventRow.id))]  # type: ignore[arg-type]
        bar = self.uow.session.scalars(select(BarRow).where(
            BARS.c.symbol == order.symbol, BARS.c.time == order.bar_time)).first()
        out["bar"] = bar.model_dump(mode="json", exclude={"id"}) if bar else None
        decision = (self.uow.session.get(DecisionRow, order.decision_id)
                    if order.decision_id else None)
        out["decision"] = decision.model_dump(mode="json") if decision else None
        proposal = self.uow.session.get(ProposalRow, decision.proposal_id) if decision else None
        if proposal is not None:
            dumped = proposal.model_dump(mode="json")
            out["snapshot"] = dumped.pop("snapshot")
            out["proposal"] = dumped
        else:
            out["snapshot"] = out["proposal"] = None
        verdict = self.uow.session.scalars(select(VerdictRow).where(
            VERDICTS.c.decision_id == order.decision_id)).first() if decision else None
        out["verdict"] = verdict.model_dump(mode="json") if verdict else None
        params = self.uow.session.get(ParameterSetRow, order.params_hash)
        versions = [v.version for v in self.param_versions() if v.hash == order.params_hash]
        out["parameter_set"] = {"hash": order.params_hash, "versions": versions,
                                "content": params.content if params else None}
        out["fills"] = [f.model_dump(mode="json") for f in self.fills(client_order_id)]
        out["provider_calls"] = [
            c.model_dump(mode="json", exclude={"raw_text", "input_json", "output_json"})
            for c in self.uow.session.scalars(select(ProviderCallRow).where(
                PROVIDER_CALLS.c.decision_id == order.decision_id)
                .order_by(ProviderCallRow.id))] if order.decision_id else []  # type: ignore[arg-type]
        return out


_EVENT_KEYS = ("client_order_id", "at", "from_state", "to_state", "detail")


def _order_row(order: Order, run_id: int | None, now: datetime) -> dict[str, Any]:
    i = order.intent
    return dict(
        client_order_id=i.client_order_id, run_id=run_id, account=i.account,
        symbol=i.symbol, side=i.side.value, volume=i.volume,
        order_type=i.order_type.value, price=i.price, stop_loss=i.stop_loss,
        take_profit=i.take_profit, reduce_only=i.reduce_only, bar_time=i.bar_time,
        state=order.state.value, filled_volume=order.filled_volume,
        avg_fill_price=order.avg_fill_price, broker_order_id=order.broker_order_id,
        decision_id=i.decision_id, params_hash=i.params_hash,
        created_at=now, updated_at=now, reason=order.reason)


def _order_from_row(row: Any) -> Order:
    intent = OrderIntent(
        client_order_id=row.client_order_id, account=row.account, symbol=row.symbol,
        side=OrderSide(row.side), volume=row.volume, order_type=OrderType(row.order_type),
        bar_time=row.bar_time, price=row.price, stop_loss=row.stop_loss,
        take_profit=row.take_profit, reduce_only=row.reduce_only, params_hash=row.params_hash,
        decision_id=row.decision_id)
    return Order(intent=intent, state=OrderState(row.state), filled_volume=row.filled_volume,
                 avg_fill_price=row.avg_fill_price, broker_order_id=row.broker_order_id,
                 reason=row.reason)
