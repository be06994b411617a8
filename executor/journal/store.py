"""The journal: the daemon's memory and the operator's evidence.

Write discipline (see CONVENTIONS "Performance reference points"):
- per-bar rows (processed and rejected bars) are buffered and written in batches;
- an order row is committed *durably* (SQLite ``synchronous=FULL`` for that commit) before
  the broker is called, together with everything buffered before it;
- trading-state events commit durably at once.
(A paper daemon relaxes SQLite to synchronous=NORMAL: ``Journal.paper_durability``.)
A crash therefore loses at most the un-committed tail of per-bar rows, which a restart
re-processes, and never an order that may have reached a broker.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

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
from executor.journal import jsontext, migrate
from executor.journal.models import (
    ApprovalRow,
    BarRow,
    BrokerErrorRow,
    ClearanceRow,
    DayBaselineRow,
    DecisionRow,
    EaDealRow,
    FillRow,
    IncidentRow,
    OrderEventRow,
    OrderRow,
    ParameterSetRow,
    ParamEventRow,
    ParamVersionRow,
    ProposalRow,
    ProviderCallRow,
    ProviderEventRow,
    RejectedBarRow,
    RunRow,
    TradingStateEventRow,
    VerdictRow,
)
from executor.journal.prepared import Prepared
from executor.journal.types import UTCDateTime
from guardrails.params import ParamEvent, ParamVersion

_BARS = BarRow.__table__  # type: ignore[attr-defined]
_BAR_KEYS = ("run_id", "symbol", "timeframe", "time", "open", "high", "low", "close",
             "volume", "spread", "gap_bars")
_REJECTS = RejectedBarRow.__table__  # type: ignore[attr-defined]
_PROPOSALS = ProposalRow.__table__  # type: ignore[attr-defined]
_DECISIONS = DecisionRow.__table__  # type: ignore[attr-defined]
_VERDICTS = VerdictRow.__table__  # type: ignore[attr-defined]
_ORDERS = OrderRow.__table__  # type: ignore[attr-defined]
_ORDER_EVENTS = OrderEventRow.__table__  # type: ignore[attr-defined]
_FILLS = FillRow.__table__  # type: ignore[attr-defined]
_STATE_EVENTS = TradingStateEventRow.__table__  # type: ignore[attr-defined]
_PARAM_VERSIONS = ParamVersionRow.__table__  # type: ignore[attr-defined]
_PARAM_EVENTS = ParamEventRow.__table__  # type: ignore[attr-defined]
_APPROVALS = ApprovalRow.__table__  # type: ignore[attr-defined]
_INCIDENTS = IncidentRow.__table__  # type: ignore[attr-defined]
_PROVIDER_CALLS = ProviderCallRow.__table__  # type: ignore[attr-defined]
_PROVIDER_EVENTS = ProviderEventRow.__table__  # type: ignore[attr-defined]
_OPERATOR_ACTIONS = ("disable", "enable")  # other provider events: breaker transitions
_EA_DEALS = EaDealRow.__table__  # type: ignore[attr-defined]
_CLEARANCES = ClearanceRow.__table__  # type: ignore[attr-defined]
_RUNS = RunRow.__table__  # type: ignore[attr-defined]
_DAY_BASELINES = DayBaselineRow.__table__  # type: ignore[attr-defined]
_BROKER_ERRORS = BrokerErrorRow.__table__  # type: ignore[attr-defined]

# Statements built once: parameters travel separately, so SQLAlchemy's compiled cache hits
# and a journal write costs one driver call, not a statement construction.
_UPDATE_ORDER = (
    update(_ORDERS).where(_ORDERS.c.client_order_id == bindparam("coid"))
    .values(state=bindparam("state"), filled_volume=bindparam("filled_volume"),
            avg_fill_price=bindparam("avg_fill_price"),
            broker_order_id=bindparam("broker_order_id"), reason=bindparam("reason"),
            updated_at=bindparam("updated_at")))
_SELECT_ORDER = select(_ORDERS).where(_ORDERS.c.client_order_id == bindparam("coid"))

log = structlog.get_logger("dta.journal")


_STATE_COLUMNS = (_STATE_EVENTS.c.state, _STATE_EVENTS.c.operator, _STATE_EVENTS.c.reason,
                  _STATE_EVENTS.c.at, _STATE_EVENTS.c.trigger)
# How long a running daemon may act on a cached trading state read from another process.
STATE_TTL_S = 0.25


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TradingStateRecord:
    """The newest trading-state event: ``state`` is ACTIVE, REDUCING or HALTED (ACTIVE
    when no event was ever written), with who set it, why, since when and by what."""

    state: str = "ACTIVE"
    operator: str | None = None
    reason: str | None = None
    since: datetime | None = None
    trigger: str | None = None


def make_engine(url: str, *, create: bool = True) -> Engine:
    """Engine with the pragmas the daemon relies on: WAL, FULL sync, a busy timeout (the
    CLI and the daemon share one SQLite file) and enforced foreign keys. ``create=False``
    opens an existing SQLite file only (URI ``mode=rw``): never a directory or a file."""
    if url.startswith("sqlite"):
        target: Any = _ensure_sqlite_dir(url) if create else _existing_sqlite(url)
        engine = create_engine(target, connect_args={"timeout": 30,
                                                     "check_same_thread": False},
                               json_serializer=jsontext.dumps)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: every commit fsyncs the WAL. Commits are few (per-bar rows are batched),
            # and the ones that matter (orders, trading state) must survive power loss.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=jsontext.dumps)


def _ensure_sqlite_dir(url: str) -> str:
    from pathlib import Path

    from sqlalchemy.engine import make_url

    db = make_url(url).database
    if db and db != ":memory:":
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    return url


def _existing_sqlite(url: str) -> Any:
    """The URL as a SQLite URI with ``mode=rw``: opening fails instead of creating."""
    from pathlib import Path
    from urllib.parse import quote

    parsed = make_url(url)
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return parsed
    shown = parsed.render_as_string(hide_password=True)
    if not Path(db).is_file():
        raise JournalError(f"journal {shown} does not exist: `dta db upgrade` creates it")
    if Path(db).stat().st_size == 0:  # connecting would write a header (WAL mode) into it
        raise JournalError(f"journal {shown} has no schema: `dta db upgrade` creates it")
    return parsed.set(database="file:" + quote(str(Path(db).resolve())),
                      query={**parsed.query, "mode": "rw", "uri": "true"})


class Journal:
    """Owner of every persisted fact. Not thread-safe by design: the executor runs one cycle
    at a time (a single-worker scheduler); the lock guards against misuse, not contention."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = Session(engine, expire_on_commit=False)
        self._pending_bars: list[tuple[Any, ...]] = []  # in _BAR_KEYS order
        self._bind_time = UTCDateTime().fast_bind_processor(engine.dialect)
        self._pending_rejects: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self.run_id: int | None = None
        self._state_cache: dict[str, tuple[float, TradingStateRecord]] = {}
        self._prepared: dict[Any, Prepared] = {}
        self._dbapi_conn: Any = None
        event.listen(self._session, "after_transaction_end", self._forget_dbapi)
        self._reader: Any = None  # a DBAPI connection of its own for the trading state
        self._in_memory = engine.dialect.name == "sqlite" and engine.url.database in (
            None, "", ":memory:")
        # SQLite WAL checkpoints: by SQLite on whichever commit crosses 1,000 WAL pages,
        # unless the owner takes them over (``manual_checkpoints``) to keep them off the
        # commit that precedes a broker call.
        self._manual_checkpoints = False
        self._commits_since_checkpoint = 0
        self._file_sqlite = engine.dialect.name == "sqlite" and not self._in_memory
        self._pragmas: dict[str, Any] = {}  # per-journal settings over make_engine's
        if self._file_sqlite:
            event.listen(engine, "checkout", self._on_checkout)
        # Called after an incident is committed: (id, severity, kind, message).
        self.incident_listeners: list[Callable[[int, str, str, str], None]] = []

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, create: bool = True) -> Journal:
        """``create=False`` (every `dta` command but ``db upgrade`` and a paper run): only a
        journal that already has a schema; never a new file, directory or schema, so a
        mistyped URL cannot yield an empty journal with trading ACTIVE."""
        engine = None
        try:
            engine = make_engine(url, create=create)
            shown = make_url(url).render_as_string(hide_password=True)
            if not create and migrate.current_revision(engine) is None:
                raise JournalError(f"journal {shown} has no schema: `dta db upgrade` creates "
                                   "it (only it, and a paper run, start a fresh journal)")
            if migrate_schema:
                migrate.upgrade(engine)
            elif migrate.current_revision(engine) != migrate.head_revision(engine):
                raise JournalError(
                    f"journal {shown} is not migrated to the current schema: run "
                    "`dta db upgrade`"
                )
        except SQLAlchemyError as exc:
            if engine is not None:
                engine.dispose()
            raise JournalError(f"cannot open journal: {exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0]}") from None
        except JournalError:
            if engine is not None:
                engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        with self._lock:
            try:
                self.commit()
            finally:
                self._close_reader()
                self._session.close()
                self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def commit(self, *, durable: bool = False) -> None:
        """Flush buffered per-bar rows and commit. Every commit is durable (SQLite WAL with
        synchronous=FULL, PostgreSQL's default fsync; a paper daemon's SQLite journal is
        NORMAL, see ``paper_durability``); ``durable`` marks the call sites that rely on it
        (orders, trading state, runs) so a later tuning cannot silently drop it, and a commit
        that is not durable (a cycle's or housekeeping's) readies the next transaction's
        connection (``_ready_for_next``)."""
        with self._lock:
            try:
                self._flush_buffers()
                self._session.commit()
                self._commits_since_checkpoint += 1
                # Detach everything: the journal is the source of truth, not cached rows,
                # and the identity map must not grow with every proposal of a long replay.
                self._session.expunge_all()
                if not durable:
                    self._ready_for_next()
            except SQLAlchemyError as exc:
                self._session.rollback()
                raise JournalError(
                    f"journal commit failed: {exc.__class__.__name__}: {exc}") from None
            except JournalError:
                self._session.rollback()
                raise

    def _on_checkout(self, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        for pragma, want in self._pragmas.items():
            if record.info.get(pragma) != want:
                dbapi_conn.execute(f"PRAGMA {pragma}={want}")
                record.info[pragma] = want

    def _set_pragma(self, pragma: str, value: Any) -> None:
        """For every connection of this journal, the session's current one at once (between
        transactions) and each later checkout."""
        with self._lock:
            self.commit()
            self._pragmas[pragma] = value
            self._dbapi().execute(f"PRAGMA {pragma}={value}")
            self.commit()

    def paper_durability(self) -> None:
        """``synchronous=NORMAL`` instead of FULL, for a paper daemon's journal only. In WAL
        mode NORMAL loses nothing when the process dies (SIGKILL, OOM): committed pages
        are in the OS's hands. Only an OS crash or power cut can drop the last commits, and
        then the paper run resumes from its last journaled bar and re-creates the same
        orders under the same ids: its broker is a simulator rebuilt from the journal, no
        order left the machine. What it saves is an fsync per order (0.3-10 ms on a VPS
        disk), the largest cost of a paper replay with many trades. Live and shadow keep
        FULL: there the order row must be on disk before a real broker sees the order."""
        if self._file_sqlite:
            self._set_pragma("synchronous", "NORMAL")

    def manual_checkpoints(self) -> None:
        """From now on SQLite does not checkpoint the WAL inside a commit: the owner calls
        ``checkpoint`` between cycles (the daemon's housekeeping) and ``checkpoint_due``
        bounds the WAL if it does not. A checkpoint writes and fsyncs the database file; on
        the durable commit before a broker call it was the order latency's worst tail."""
        if not self._file_sqlite:
            return
        self._manual_checkpoints = True
        self._set_pragma("wal_autocheckpoint", 0)

    def checkpoint_due(self, commits: int = 64) -> bool:
        return self._manual_checkpoints and self._commits_since_checkpoint >= commits

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database file (PASSIVE: never waits for, nor
        blocks, another connection). Call between transactions."""
        if not self._file_sqlite or self._commits_since_checkpoint == 0:
            return
        with self._lock:
            self.commit()
            cur = self._dbapi().cursor()
            try:
                cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cur.fetchall()
            except self.engine.dialect.loaded_dbapi.Error as exc:
                raise JournalError(f"journal checkpoint failed: {exc}") from None
            finally:
                cur.close()
            self._session.commit()
            self._commits_since_checkpoint = 0
            self._ready_for_next()

    def rollback(self) -> None:
        with self._lock:
            self._pending_bars.clear()
            self._pending_rejects.clear()
            self._session.rollback()

    def _conn(self) -> Connection:
        """The session's connection: hot-path writes go through SQLAlchemy Core on it (no
        ORM unit of work), inside the same transaction the session commits."""
        return self._session.connection()

    def _dbapi(self) -> Any:
        """The session's DBAPI connection: statements on it belong to the session's
        transaction. Looked up once per transaction (``Session.connection()`` costs ~25 us,
        and a decision writes a dozen rows); the session's transaction-end event forgets it."""
        conn = self._dbapi_conn
        if conn is None:
            conn = self._dbapi_conn = self._conn().connection.dbapi_connection
        return conn

    def _ready_for_next(self) -> None:
        """Take the connection for the next transaction now, between bar closes (after a
        cycle's closing commit or housekeeping's): the next decision's first row then goes
        straight to SQLite instead of through a pool checkout. Holding it locks nothing:
        pysqlite begins a transaction only at the first write. Not after a durable commit
        (it precedes a broker call, which must not wait), and not on PostgreSQL, where a
        connection taken per transaction is pinged first, so a server restart between bars
        costs no trading."""
        if self._file_sqlite:
            self._dbapi()

    def _forget_dbapi(self, *_args: Any) -> None:
        self._dbapi_conn = None

    def _prep(self, key: Any, build: Callable[[], Any], keys: Sequence[str] | None = None,
              *, returns_id: bool = False) -> Prepared:
        p = self._prepared.get(key)
        if p is None:
            p = self._prepared[key] = Prepared(build(), self.engine.dialect, keys,
                                               returns_id=returns_id)
        return p

    def _insert(self, table: Any, values: dict[str, Any]) -> int:
        """Insert one row; its primary key."""
        keys = tuple(values)

        def build() -> Any:
            stmt = insert(table)
            if self.dialect != "sqlite":
                stmt = stmt.returning(*table.primary_key.columns)
            return stmt

        p = self._prep(("insert", table.name, keys), build, keys, returns_id=True)
        return p.insert(self._dbapi(), values)

    def _writer(self, table: Any, keys: tuple[str, ...]) -> Prepared:
        """The INSERT of ``keys`` into ``table``, for rows whose key the caller already
        knows (or does not need)."""
        return self._prep(("write", table.name, keys), partial(insert, table), keys)

    def _write(self, table: Any, values: dict[str, Any]) -> None:
        self._writer(table, tuple(values)).write(self._dbapi(), values)

    def _flush_buffers(self) -> None:
        if self._pending_bars:
            self._writer(_BARS, _BAR_KEYS).write_tuples(self._dbapi(), _BAR_KEYS,
                                                        self._pending_bars)
        if self._pending_rejects:
            rows = self._pending_rejects
            self._writer(_REJECTS, tuple(rows[0])).write_many(self._dbapi(), rows)
        self._pending_bars = []
        self._pending_rejects = []

    @property
    def pending_rows(self) -> int:
        return len(self._pending_bars) + len(self._pending_rejects)

    # ------------------------------------------------------------------ runs

    def start_run(self, mode: str, account: str, settings_hash: str, params: ParameterSet,
                  *, sole_daemon: bool = False) -> int:
        """A new run row. ``sole_daemon``: the caller holds the account's lease, so a run of
        the account still marked ``running`` belongs to a process that died without
        ending it (SIGKILL, power loss): it is marked ``died``, so `dta status` does not
        show a daemon that is not there."""
        with self._lock:
            if sole_daemon:
                result: Any = self._session.execute(
                    update(RunRow).where(RunRow.account == account,  # type: ignore[arg-type]
                                         RunRow.status == "running")  # type: ignore[arg-type]
                    .values(status="died"))
                orphans = int(result.rowcount)
                if orphans:
                    log.warning("runs_marked_died", account=account, runs=orphans)
            self.save_parameter_set(params)
            row = RunRow(started_at=utcnow(), mode=mode, account=account,
                         settings_hash=settings_hash, params_hash=params.content_hash)
            self._session.add(row)
            self._session.flush()
            assert row.id is not None
            self.run_id = row.id
            self.commit(durable=True)
            return row.id

    def end_run(self, status: str, summary: dict[str, Any]) -> None:
        with self._lock:
            if self.run_id is None:
                return
            self._session.execute(
                update(RunRow).where(RunRow.id == self.run_id)  # type: ignore[arg-type]
                .values(ended_at=utcnow(), status=status, summary=summary)
            )
            self.commit(durable=True)

    def runs(self, limit: int = 10) -> list[RunRow]:
        stmt = select(RunRow).order_by(RunRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        return list(self._session.scalars(stmt))

    def save_parameter_set(self, params: ParameterSet) -> None:
        if self._session.get(ParameterSetRow, params.content_hash) is None:
            self._session.add(ParameterSetRow(hash=params.content_hash, created_at=utcnow(),
                                              content=params.values))
            self._session.flush()

    # ------------------------------------------------------------------ bars

    def record_bar(self, bar: Bar, gap_bars: int = 0) -> None:
        """Buffer a processed bar's row (written with the next commit). Kept as a tuple in
        ``_BAR_KEYS`` order with its time already bound: a replay buffers one per bar.
        Prices go as they are: the validator passed only floats and plain ints, and the
        FLOAT columns store both as REAL."""
        try:
            at = self._bind_time(bar.time)
        except (ValueError, TypeError, OverflowError) as exc:  # as a refused statement
            raise JournalError(f"journal statement failed: {exc.__class__.__name__}: "
                               f"{exc}") from None
        self._pending_bars.append((
            self.run_id, bar.symbol, bar.timeframe, at, bar.open, bar.high, bar.low,
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
        self._pending_rejects.append({
            "run_id": self.run_id, "symbol": symbol, "timeframe": timeframe,
            "time": t, "reason": reason, "detail": _text(detail),
        })

    def last_bar_time(self, symbol: str, timeframe: str) -> datetime | None:
        """The resume point: the newest bar journaled as processed for this stream."""
        self._flush_buffers()
        stmt = select(func.max(_BARS.c.time)).where(
            _BARS.c.symbol == symbol, _BARS.c.timeframe == timeframe)
        value: datetime | None = self._session.scalar(stmt)
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def iter_bars(self, symbol: str, timeframe: str, limit: int | None = None) -> Iterator[Bar]:
        """Processed bars in time order (the last ``limit`` when given), to warm a snapshot
        builder after a restart without re-running the strategy on them."""
        self._flush_buffers()
        stmt = select(BarRow).where(_BARS.c.symbol == symbol, _BARS.c.timeframe == timeframe)
        if limit is not None:
            stmt = stmt.order_by(BarRow.time.desc()).limit(limit)  # type: ignore[attr-defined]
            rows = list(self._session.scalars(stmt))[::-1]
        else:
            rows = list(self._session.scalars(stmt.order_by(BarRow.time)))  # type: ignore[arg-type]
        for r in rows:
            yield Bar(r.symbol, r.timeframe, r.time, r.open, r.high, r.low, r.close,
                      r.volume, r.spread)

    def bar_counts(self) -> dict[str, Any]:
        self._flush_buffers()
        processed = self._session.execute(
            select(_BARS.c.symbol, _BARS.c.timeframe, func.count(), func.max(_BARS.c.time))
            .group_by(_BARS.c.symbol, _BARS.c.timeframe)).all()
        rejected = self._session.execute(
            select(_REJECTS.c.reason, func.count()).group_by(_REJECTS.c.reason)).all()
        return {
            "processed": {f"{s}/{tf}": {"count": n, "last": _iso_utc(t)}
                          for s, tf, n, t in processed},
            "rejected": {reason: n for reason, n in rejected},
        }

    def count_duplicate_bars(self) -> int:
        stmt = select(func.count()).select_from(
            select(_BARS.c.symbol, _BARS.c.timeframe, _BARS.c.time)
            .group_by(_BARS.c.symbol, _BARS.c.timeframe, _BARS.c.time)
            .having(func.count() > 1).subquery())
        return int(self._session.scalar(stmt) or 0)

    # ------------------------------------------------------------------ decisions

    def record_proposal(self, proposal: Proposal, snapshot: MarketSnapshot) -> int:
        return self._insert(_PROPOSALS, dict(
            run_id=self.run_id, strategy=proposal.strategy, symbol=proposal.symbol,
            timeframe=proposal.timeframe, bar_time=proposal.bar_time,
            direction=proposal.direction.value, entry=proposal.entry, stop=proposal.stop,
            target=proposal.target, reason=proposal.reason, tags=list(proposal.tags),
            snapshot=snapshot.summary()))

    def record_decision(self, decision: Decision, proposal_id: int) -> int:
        return self._insert(_DECISIONS, dict(
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
        p, d = _PROPOSALS, _DECISIONS
        stmt = (select(func.max(d.c.id)).select_from(d.join(p, d.c.proposal_id == p.c.id))
                .where(p.c.symbol == symbol, p.c.bar_time == bar_time,
                       p.c.strategy == strategy, p.c.timeframe == timeframe))
        found = self._conn().execute(stmt).scalar()
        return None if found is None else int(found)

    def record_verdict(self, verdict: Verdict, decision_id: int) -> int:
        return self._insert(_VERDICTS, dict(
            decision_id=decision_id, approved=verdict.approved,
            checks=[{"name": c.name, "passed": c.passed, "reason": c.reason}
                    for c in verdict.checks],
            reasons="; ".join(verdict.reasons)))

    def veto_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        rows = self._session.scalars(select(VerdictRow).where(_VERDICTS.c.approved.is_(False)))
        for row in rows:
            for check in row.checks or []:
                if not check["passed"]:
                    out[check["name"]] = out.get(check["name"], 0) + 1
        return out

    # ------------------------------------------------------------------ orders

    def insert_order(self, order: Order, detail: str = "", *, commit: bool = True) -> None:
        """Write the order row; committed (durably) before the broker sees the order, here
        or by the router's next ``update_order``."""
        with self._lock:
            now = utcnow()
            self._write(_ORDERS, _order_row(order, self.run_id, now))
            self._write(_ORDER_EVENTS, dict(
                client_order_id=order.client_order_id, at=now, from_state=None,
                to_state=order.state.value, detail=detail))
            if commit:
                self.commit(durable=True)

    def insert_sending(self, new: Order, sending: Order, detail: str, *,
                       commit: bool = True) -> None:
        """A new order's row already in ``sending``'s state, with both its events (created,
        then ``detail``): the rows ``insert_order(new)`` and ``set_order_state`` to
        ``sending`` leave, in one step. Nobody can see the row in between, as both are in
        one transaction. ``commit``: durably, now (before a real broker's call)."""
        with self._lock:
            now = utcnow()
            self._write(_ORDERS, _order_row(sending, self.run_id, now))
            coid = sending.client_order_id
            self._writer(_ORDER_EVENTS, _EVENT_KEYS).write_many(self._dbapi(), (
                dict(client_order_id=coid, at=now, from_state=None,
                     to_state=new.state.value, detail="created"),
                dict(client_order_id=coid, at=now, from_state=new.state.value,
                     to_state=sending.state.value, detail=detail)))
            if commit:
                self.commit(durable=True)

    def update_order(self, before: Order, after: Order, detail: str = "",
                     commit: bool = True) -> None:
        self.set_order_state(before.state, after, detail, commit=commit)

    def set_order_state(self, before: OrderState, after: Order, detail: str = "",
                        commit: bool = True) -> None:
        """Move a journaled order from state ``before`` to ``after`` (the row and an event)."""
        with self._lock:
            now = utcnow()
            p = self._prep("update_order", lambda: _UPDATE_ORDER)
            p.write(self._dbapi(), dict(
                coid=after.client_order_id, state=after.state.value,
                filled_volume=after.filled_volume, avg_fill_price=after.avg_fill_price,
                broker_order_id=after.broker_order_id, reason=after.reason, updated_at=now))
            self._write(_ORDER_EVENTS, dict(
                client_order_id=after.client_order_id, at=now, from_state=before.value,
                to_state=after.state.value, detail=detail))
            if commit:
                self.commit(durable=True)

    def get_order(self, client_order_id: str) -> Order | None:
        row = self._conn().execute(_SELECT_ORDER, {"coid": client_order_id}).first()
        return None if row is None else _order_from_row(row)

    def order_state(self, client_order_id: str) -> OrderState | None:
        """The journaled state of one order (one indexed column read: the fill path asks
        this for every fill)."""
        p = self._prep("order_state", lambda: select(_ORDERS.c.state).where(
            _ORDERS.c.client_order_id == bindparam("coid")))
        value = p.scalar(self._dbapi(), {"coid": client_order_id})
        return None if value is None else OrderState(value)

    def orders(self, account: str | None = None, states: Sequence[OrderState] | None = None,
               ) -> list[Order]:
        stmt = select(_ORDERS).order_by(_ORDERS.c.created_at, _ORDERS.c.client_order_id)
        if account is not None:
            stmt = stmt.where(_ORDERS.c.account == account)
        if states is not None:
            stmt = stmt.where(_ORDERS.c.state.in_([s.value for s in states]))
        return [_order_from_row(r) for r in self._conn().execute(stmt)]

    def order_counts(self) -> dict[str, int]:
        rows = self._session.execute(
            select(_ORDERS.c.state, func.count()).group_by(_ORDERS.c.state)).all()
        return {state: n for state, n in rows}

    # ------------------------------------------------------------------ fills

    def record_fill(self, fill: Fill, kind: str, realized_pnl: float) -> bool:
        """Journal ``fill`` once; True when it was new. A fill id already journaled is a
        no-op, not an error: start-up reconciliation and the first poll after it can both
        see a deal made while the daemon was down (issue 15, defect 5)."""
        known = self._prep("fill_exists", lambda: select(_FILLS.c.fill_id).where(
            _FILLS.c.fill_id == bindparam("fill_id")))
        if known.rows(self._dbapi(), {"fill_id": fill.fill_id}):
            return False
        self._write(_FILLS, dict(
            fill_id=fill.fill_id, client_order_id=fill.client_order_id, symbol=fill.symbol,
            side=fill.side.value, time=fill.time, price=fill.price, volume=fill.volume,
            fee=fill.fee, kind=kind, realized_pnl=realized_pnl))
        return True

    def fills(self, client_order_id: str | None = None, *,
              account: str | None = None) -> list[FillRow]:
        """Fills in time order: of one order, of one account's orders, or all."""
        stmt = select(FillRow).order_by(FillRow.time, FillRow.fill_id)  # type: ignore[arg-type]
        if client_order_id is not None:
            stmt = stmt.where(_FILLS.c.client_order_id == client_order_id)
        if account is not None:
            stmt = stmt.where(_FILLS.c.client_order_id.in_(
                select(_ORDERS.c.client_order_id).where(_ORDERS.c.account == account)))
        return list(self._session.scalars(stmt))

    def net_positions(self) -> dict[str, float]:
        """Net lots per symbol from the journaled fills (an exit fill has the opposite side)."""
        out: dict[str, float] = {}
        for f in self.fills():
            out[f.symbol] = out.get(f.symbol, 0.0) + (f.volume if f.side == "buy" else -f.volume)
        return {s: round(v, 8) for s, v in out.items() if abs(v) > 1e-9}

    def fill_id_exists(self, fill_id: str) -> bool:
        return self._session.get(FillRow, fill_id) is not None

    # ------------------------------------------------------------------ trading state

    def record_trading_state(self, state: str, operator: str, reason: str,
                             trigger: str = "manual", scope: str = "global") -> None:
        with self._lock:
            self._session.add(TradingStateEventRow(at=utcnow(), state=state, scope=scope,
                                                   operator=operator, reason=reason,
                                                   trigger=trigger))
            self.commit(durable=True)
            self._state_cache.clear()

    def trading_state(self, scope: str = "global", *,
                      fresh: bool = False) -> TradingStateRecord:
        """Read from the database, so an operator's `dta trading-state` in another process
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

    def _read_state(self, scope: str) -> TradingStateRecord:
        t = _STATE_EVENTS
        p = self._prep("trading_state", lambda: select(*_STATE_COLUMNS).where(
            t.c.scope == bindparam("scope")).order_by(t.c.id.desc()).limit(1))
        with self._lock:
            if self._in_memory:  # one shared connection, and no other process can write
                rows = p.rows(self._dbapi(), {"scope": scope})
            else:
                rows = self._read_committed(p, {"scope": scope})
        if not rows:
            return TradingStateRecord()
        r = rows[0]
        return TradingStateRecord(r["state"], r["operator"], r["reason"], r["at"], r["trigger"])

    def _read_committed(self, p: Prepared, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows as committed now, by any process, whatever snapshot the session's open
        transaction holds: a DBAPI connection of the journal's own whose read transaction
        ends after every read. Reconnects once if the database dropped it."""
        for attempt in (1, 2):
            if self._reader is None:
                self._reader = self.engine.raw_connection()
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

    def trading_state_events(self, limit: int = 20) -> list[TradingStateEventRow]:
        stmt = select(TradingStateEventRow).order_by(
            TradingStateEventRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        return list(self._session.scalars(stmt))

    # ------------------------------------------------------------------ parameter sets

    def param_versions(self) -> list[ParamVersion]:
        rows = self._conn().execute(select(_PARAM_VERSIONS).order_by(_PARAM_VERSIONS.c.version))
        return [ParamVersion(r.version, r.hash, r.content or {}, r.parent, r.author, r.reason,
                             r.created_at, bool(r.bad)) for r in rows]

    def param_events(self) -> list[ParamEvent]:
        rows = self._conn().execute(select(_PARAM_EVENTS).order_by(_PARAM_EVENTS.c.id))
        return [ParamEvent(r.id, r.at, r.version, r.action, r.operator, r.reason, r.trigger)
                for r in rows]

    def add_param_version(self, content: dict[str, Any], parent: int | None, author: str,
                          reason: str, evidence: dict[str, Any] | None = None) -> ParamVersion:
        with self._lock:
            params = ParameterSet(content)
            self.save_parameter_set(params)
            now = utcnow()
            version = self._insert(_PARAM_VERSIONS, dict(
                hash=params.content_hash, content=content, parent=parent, author=author,
                reason=reason, created_at=now, bad=False, evidence=evidence))
            self.commit(durable=True)
            return ParamVersion(version, params.content_hash, content, parent, author, reason,
                                now)

    def attach_evidence(self, version: int, evidence: dict[str, Any]) -> None:
        with self._lock:
            self._conn().execute(update(_PARAM_VERSIONS).where(
                _PARAM_VERSIONS.c.version == version).values(evidence=evidence))
            self.commit(durable=True)

    def param_evidence(self, version: int) -> dict[str, Any] | None:
        row = self._conn().execute(select(_PARAM_VERSIONS.c.evidence).where(
            _PARAM_VERSIONS.c.version == version)).first()
        return dict(row.evidence) if row is not None and row.evidence else None

    def add_param_event(self, version: int, action: str, operator: str, reason: str,
                        trigger: str | None = None) -> None:
        with self._lock:
            self._insert(_PARAM_EVENTS, dict(at=utcnow(), version=version, action=action,
                                             operator=operator, reason=reason, trigger=trigger))
            self.commit(durable=True)

    def mark_param_bad(self, version: int) -> None:
        with self._lock:
            self._conn().execute(update(_PARAM_VERSIONS).where(
                _PARAM_VERSIONS.c.version == version).values(bad=True))
            self.commit(durable=True)

    def latest_param_event_id(self) -> int:
        """Cheap change detection for a running daemon: a new event means re-read."""
        p = self._prep("max_param_event", lambda: select(func.max(_PARAM_EVENTS.c.id)))
        return int(p.scalar(self._dbapi()) or 0)

    # ------------------------------------------------------------------ approvals

    def create_approval(self, *, decision_id: int, account: str, symbol: str, direction: str,
                        intent: dict[str, Any], why: str, created_at: datetime,
                        expires_at: datetime) -> int:
        return self._insert(_APPROVALS, dict(
            decision_id=decision_id, account=account, symbol=symbol, direction=direction,
            intent=intent, why=why, created_at=created_at, expires_at=expires_at,
            status="pending"))

    def approvals(self, status: str | None = None) -> list[ApprovalRow]:
        if status is None:
            stmt = select(_APPROVALS).order_by(_APPROVALS.c.id)
            return [ApprovalRow(**r._mapping) for r in self._conn().execute(stmt)]
        # Polled by the running daemon every second: prepared.
        p = self._prep("approvals_by_status", lambda: select(_APPROVALS).where(
            _APPROVALS.c.status == bindparam("status")).order_by(_APPROVALS.c.id))
        return [ApprovalRow(**r) for r in p.rows(self._dbapi(), {"status": status})]

    def get_approval(self, approval_id: int) -> ApprovalRow | None:
        row = self._conn().execute(select(_APPROVALS).where(_APPROVALS.c.id == approval_id)).first()
        return ApprovalRow(**row._mapping) if row else None

    def set_approval_status(self, approval_id: int, status: str, *, expected: str,
                            operator: str | None = None, note: str | None = None,
                            decided_at: datetime | None = None,
                            client_order_id: str | None = None, commit: bool = True) -> bool:
        """Compare-and-set on the status, so an approval and its expiry cannot both win.
        ``commit=False``: the change commits with the caller's next (durable) commit, as
        the ``executed`` mark does with its order's row."""
        with self._lock:
            values: dict[str, Any] = {"status": status}
            if operator is not None:
                values["operator"] = operator
            if note is not None:
                values["note"] = note
            if decided_at is not None:
                values["decided_at"] = decided_at
            if client_order_id is not None:
                values["client_order_id"] = client_order_id
            result = self._conn().execute(update(_APPROVALS).where(
                _APPROVALS.c.id == approval_id, _APPROVALS.c.status == expected).values(**values))
            if commit:
                self.commit(durable=True)
            return bool(result.rowcount)

    def decision_signals(self, decision_id: int) -> list[dict[str, Any]]:
        row = self._conn().execute(select(_DECISIONS.c.signals).where(
            _DECISIONS.c.id == decision_id)).first()
        return list(row.signals or []) if row else []

    # ------------------------------------------------------------------ incidents

    def open_incident(self, severity: str, kind: str, message: str,
                      details: dict[str, Any] | None = None) -> int:
        with self._lock:
            incident = self._insert(_INCIDENTS, dict(at=utcnow(), severity=severity, kind=kind,
                                                     message=message, status="open",
                                                     details=details))
            self.commit(durable=True)
        for listener in self.incident_listeners:
            with contextlib.suppress(Exception):  # escalation must never break the journal
                listener(incident, severity, kind, message)
        return incident

    def set_incident_status(self, incident_id: int, status: str, operator: str,
                            note: str) -> bool:
        """acknowledged | resolved, with who and why appended to the incident's details."""
        with self._lock:
            row = self._conn().execute(select(_INCIDENTS).where(
                _INCIDENTS.c.id == incident_id)).first()
            if row is None:
                return False
            details = dict(row.details or {})
            history = list(details.get("history", []))
            history.append({"at": utcnow().isoformat(), "status": status,
                            "operator": operator, "note": note})
            details["history"] = history
            self._conn().execute(update(_INCIDENTS).where(_INCIDENTS.c.id == incident_id)
                                 .values(status=status, details=details))
            self.commit(durable=True)
            return True

    def incidents(self, status: str | None = None) -> list[IncidentRow]:
        stmt = select(_INCIDENTS).order_by(_INCIDENTS.c.id)
        if status is not None:
            stmt = stmt.where(_INCIDENTS.c.status == status)
        return [IncidentRow(**r._mapping) for r in self._conn().execute(stmt)]

    # ------------------------------------------------------------------ provider telemetry

    def record_provider_call(self, values: dict[str, Any]) -> None:
        self._write(_PROVIDER_CALLS, {"at": utcnow(), **{
            k: _text(v) if isinstance(v, str) else v for k, v in values.items()}})

    def provider_calls(self, provider: str | None = None,
                       limit: int = 200) -> list[ProviderCallRow]:
        t = _PROVIDER_CALLS
        stmt = select(t).order_by(t.c.id.desc()).limit(limit)
        if provider is not None:
            stmt = stmt.where(t.c.provider == provider)
        return [ProviderCallRow(**r._mapping) for r in self._conn().execute(stmt)][::-1]

    def record_provider_event(self, provider: str, action: str, operator: str,
                              reason: str) -> None:
        with self._lock:
            self._insert(_PROVIDER_EVENTS, dict(at=utcnow(), provider=provider, action=action,
                                                operator=operator, reason=reason))
            self.commit(durable=True)

    def disabled_providers(self) -> dict[str, ProviderEventRow]:
        """Providers whose newest operator event is ``disable``, with that event."""
        t = _PROVIDER_EVENTS
        latest: dict[str, ProviderEventRow] = {}
        for r in self._conn().execute(select(t).where(t.c.action.in_(_OPERATOR_ACTIONS))
                                      .order_by(t.c.id)):
            latest[r.provider] = ProviderEventRow(**r._mapping)
        return {p: e for p, e in latest.items() if e.action == "disable"}

    def breaker_events(self) -> dict[str, ProviderEventRow]:
        """Each provider's newest breaker transition (action ``breaker_<state>``, journaled
        by the daemon: ``ensemble.late``)."""
        t = _PROVIDER_EVENTS
        newest = (select(func.max(t.c.id))
                  .where(t.c.action.startswith("breaker_", autoescape=True))
                  .group_by(t.c.provider))
        return {r.provider: ProviderEventRow(**r._mapping)
                for r in self._conn().execute(select(t).where(t.c.id.in_(newest)))}

    def latest_provider_event_id(self) -> int:
        """The newest operator (dis|en)able event: a breaker transition is no reason for
        the daemon to rebuild its ensemble (which would reset every breaker)."""
        t = _PROVIDER_EVENTS
        p = self._prep("max_provider_event", lambda: select(func.max(t.c.id)).where(
            (t.c.action == _OPERATOR_ACTIONS[0]) | (t.c.action == _OPERATOR_ACTIONS[1])))
        return int(p.scalar(self._dbapi()) or 0)

    # ------------------------------------------------------------------ governance

    def record_clearance(self, *, account: str, strategy: str, action: str, mode: str,
                         person: str, note: str, role: str | None = None,
                         evidence: dict[str, Any] | None = None) -> int:
        with self._lock:
            row = self._insert(_CLEARANCES, dict(
                at=utcnow(), account=account, strategy=strategy, action=action, mode=mode,
                role=role, person=person, note=note, evidence=evidence))
            self.commit(durable=True)
            return row

    def clearances(self, account: str | None = None,
                   strategy: str | None = None) -> list[ClearanceRow]:
        stmt = select(_CLEARANCES).order_by(_CLEARANCES.c.id)
        if account is not None:
            stmt = stmt.where(_CLEARANCES.c.account == account)
        if strategy is not None:
            stmt = stmt.where(_CLEARANCES.c.strategy == strategy)
        return [ClearanceRow(**r._mapping) for r in self._conn().execute(stmt)]

    def run_ids(self, mode: str, account: str) -> list[int]:
        return [r.id for r in self._conn().execute(
            select(_RUNS.c.id).where(_RUNS.c.mode == mode, _RUNS.c.account == account))]

    def bar_dates(self, run_ids: Sequence[int]) -> set[str]:
        if not run_ids:
            return set()
        rows = self._conn().execute(select(_BARS.c.time).where(_BARS.c.run_id.in_(run_ids)))
        return {r.time.date().isoformat() for r in rows}

    def decision_count(self, run_ids: Sequence[int]) -> int:
        if not run_ids:
            return 0
        stmt = (select(func.count()).select_from(_DECISIONS)
                .join(_PROPOSALS, _PROPOSALS.c.id == _DECISIONS.c.proposal_id)
                .where(_PROPOSALS.c.run_id.in_(run_ids)))
        return int(self._conn().execute(stmt).scalar() or 0)

    def orders_in_runs(self, run_ids: Sequence[int]) -> list[Order]:
        if not run_ids:
            return []
        stmt = select(_ORDERS).where(_ORDERS.c.run_id.in_(run_ids)).order_by(
            _ORDERS.c.created_at)
        return [_order_from_row(r) for r in self._conn().execute(stmt)]

    def provider_outcomes(self) -> dict[str, int]:
        rows = self._conn().execute(select(_PROVIDER_CALLS.c.outcome, func.count())
                                    .group_by(_PROVIDER_CALLS.c.outcome))
        return {outcome: n for outcome, n in rows}

    # ------------------------------------------------------------------ daily limits

    def record_day_start(self, account: str, day: datetime, equity: float) -> None:
        """The day's baseline, written once: the first reading of the day stands, whatever
        restarts or parameter versions follow (commits with the cycle). Prepared, as an
        INSERT that leaves an existing row alone: it runs at every day's first bar."""
        def build() -> Any:
            from sqlalchemy.dialects import postgresql, sqlite

            dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
            return dialect_insert(_DAY_BASELINES).on_conflict_do_nothing(
                index_elements=["account", "day"])

        with self._lock:
            p = self._prep("day_start", build, ("account", "day", "start_equity", "at"))
            p.write(self._dbapi(), dict(account=account, day=day, start_equity=equity,
                                        at=utcnow()))

    def day_start(self, account: str) -> tuple[datetime, float] | None:
        """The newest day baseline of ``account``: (midnight UTC, start equity)."""
        row = self._conn().execute(
            select(_DAY_BASELINES.c.day, _DAY_BASELINES.c.start_equity)
            .where(_DAY_BASELINES.c.account == account)
            .order_by(_DAY_BASELINES.c.day.desc()).limit(1)).first()
        return None if row is None else (row.day, row.start_equity)

    def record_broker_error(self, account: str, at: datetime, kind: str,
                            detail: str = "") -> None:
        with self._lock:
            self._conn().execute(insert(_BROKER_ERRORS).values(
                account=account, at=at, kind=kind, detail=detail[:500]))

    def broker_error_times(self, account: str, limit: int) -> list[datetime]:
        """The times of ``account``'s newest ``limit`` broker errors, oldest first."""
        rows = self._conn().execute(
            select(_BROKER_ERRORS.c.at).where(_BROKER_ERRORS.c.account == account)
            .order_by(_BROKER_ERRORS.c.at.desc(), _BROKER_ERRORS.c.id.desc())
            .limit(limit)).all()
        return [r.at for r in reversed(rows)]

    # ------------------------------------------------------------------ shadow mode

    def record_ea_deals(self, deals: Sequence[Any]) -> int:
        """Journal EA deals once each (by ticket); returns how many were new."""
        if not deals:
            return 0
        tickets = [d.ticket for d in deals]
        known = {r.ticket for r in self._conn().execute(
            select(_EA_DEALS.c.ticket).where(_EA_DEALS.c.ticket.in_(tickets)))}
        new = [{"ticket": d.ticket, "symbol": d.symbol, "time": d.time, "side": d.side,
                "price": d.price, "volume": d.volume, "entry": d.entry, "sl": d.sl,
                "tp": d.tp, "magic": d.magic, "comment": d.comment, "run_id": self.run_id}
               for d in deals if d.ticket not in known]
        if new:
            self._conn().execute(insert(_EA_DEALS), new)
        return len(new)

    def ea_deals(self, since: datetime | None = None) -> list[EaDealRow]:
        stmt = select(_EA_DEALS).order_by(_EA_DEALS.c.time, _EA_DEALS.c.ticket)
        if since is not None:
            stmt = stmt.where(_EA_DEALS.c.time >= since)
        return [EaDealRow(**r._mapping) for r in self._conn().execute(stmt)]

    def last_ea_deal_time(self) -> datetime | None:
        value: datetime | None = self._conn().execute(select(func.max(_EA_DEALS.c.time))).scalar()
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def entry_orders_with_proposals(self, account: str,
                                    since: datetime | None = None) -> list[dict[str, Any]]:
        """Our entry orders with the proposal behind each (tags, entry price, timeframe)."""
        o, d, p = _ORDERS, _DECISIONS, _PROPOSALS
        stmt = (select(o.c.client_order_id, o.c.symbol, o.c.side, o.c.bar_time,
                       o.c.stop_loss, o.c.take_profit, p.c.entry, p.c.tags, p.c.timeframe)
                .join(d, d.c.id == o.c.decision_id).join(p, p.c.id == d.c.proposal_id)
                .where(o.c.account == account).order_by(o.c.bar_time))
        if since is not None:
            stmt = stmt.where(o.c.bar_time >= since)
        return [dict(r._mapping) for r in self._conn().execute(stmt)]

    # ------------------------------------------------------------------ trace

    def trace(self, client_order_id: str) -> dict[str, Any] | None:
        """Everything behind one order: bar, snapshot, proposal, decision, verdict, order,
        its state history and fills."""
        order = self._session.get(OrderRow, client_order_id)
        if order is None:
            return None
        out: dict[str, Any] = {"order": order.model_dump(mode="json")}
        out["order_events"] = [
            e.model_dump(mode="json") for e in self._session.scalars(
                select(OrderEventRow).where(_ORDER_EVENTS.c.client_order_id == client_order_id)
                .order_by(OrderEventRow.id))]  # type: ignore[arg-type]
        bar = self._session.scalars(select(BarRow).where(
            _BARS.c.symbol == order.symbol, _BARS.c.time == order.bar_time)).first()
        out["bar"] = bar.model_dump(mode="json", exclude={"id"}) if bar else None
        decision = self._session.get(DecisionRow, order.decision_id) if order.decision_id else None
        out["decision"] = decision.model_dump(mode="json") if decision else None
        proposal = self._session.get(ProposalRow, decision.proposal_id) if decision else None
        if proposal is not None:
            dumped = proposal.model_dump(mode="json")
            out["snapshot"] = dumped.pop("snapshot")
            out["proposal"] = dumped
        else:
            out["snapshot"] = out["proposal"] = None
        verdict = self._session.scalars(select(VerdictRow).where(
            _VERDICTS.c.decision_id == order.decision_id)).first() if decision else None
        out["verdict"] = verdict.model_dump(mode="json") if verdict else None
        params = self._session.get(ParameterSetRow, order.params_hash)
        versions = [v.version for v in self.param_versions() if v.hash == order.params_hash]
        out["parameter_set"] = {"hash": order.params_hash, "versions": versions,
                                "content": params.content if params else None}
        out["fills"] = [f.model_dump(mode="json") for f in self.fills(client_order_id)]
        out["provider_calls"] = [
            c.model_dump(mode="json", exclude={"raw_text", "input_json", "output_json"})
            for c in self._session.scalars(select(ProviderCallRow).where(
                _PROVIDER_CALLS.c.decision_id == order.decision_id)
                .order_by(ProviderCallRow.id))] if order.decision_id else []  # type: ignore[arg-type]
        return out


def _text(value: str) -> str:
    """``value`` as text every driver can encode: a lone surrogate (half an emoji from a
    model's JSON-escaped answer) becomes its backslash escape instead of failing the
    commit."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _iso_utc(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).isoformat()


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
