"""The journal's unit of work: one session, its transaction and what commits with it.

Write discipline (see CONVENTIONS "Performance reference points"):
- per-bar rows (processed and rejected bars) are buffered here and written in batches;
- an order row is committed *durably* (SQLite ``synchronous=FULL`` for that commit) before
  the broker is called, together with everything buffered before it;
- trading-state events commit durably at once.
(A paper daemon relaxes SQLite to synchronous=NORMAL: ``paper_durability``.)
A crash therefore loses at most the un-committed tail of per-bar rows, which a restart
re-processes, and never an order that may have reached a broker.

The repositories (one module per aggregate) share this object: their rows go into its
transaction, through prepared statements (``prepared.py``, the one seam for hot-path
writes) or SQLAlchemy Core on its connection, and commit when it commits. Nothing outside
``executor.journal`` touches its session or connection.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from domain.errors import JournalError
from executor.journal.prepared import Prepared
from executor.journal.tables import BAR_KEYS, BARS, REJECTS
from executor.journal.types import UTCDateTime


class UnitOfWork:
    """Owner of the session. Not thread-safe by design: the executor runs one cycle at a
    time (a single-worker scheduler); the lock guards against misuse, not contention."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = Session(engine, expire_on_commit=False)
        self.pending_bars: list[tuple[Any, ...]] = []  # in BAR_KEYS order
        self.bind_time = UTCDateTime().fast_bind_processor(engine.dialect)
        self.pending_rejects: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self.run_id: int | None = None  # the run the per-run rows belong to
        self._prepared: dict[Any, Prepared] = {}
        self._dbapi_conn: Any = None
        # Run once the transaction that queued them commits (listeners hear of committed
        # rows only); dropped with a rollback.
        self.after_commit: list[Callable[[], None]] = []
        event.listen(self.session, "after_transaction_end", self._forget_dbapi)
        self.in_memory = engine.dialect.name == "sqlite" and engine.url.database in (
            None, "", ":memory:")
        # SQLite WAL checkpoints: by SQLite on whichever commit crosses 1,000 WAL pages,
        # unless the owner takes them over (``manual_checkpoints``) to keep them off the
        # commit that precedes a broker call.
        self._manual_checkpoints = False
        self._commits_since_checkpoint = 0
        self.file_sqlite = engine.dialect.name == "sqlite" and not self.in_memory
        self._pragmas: dict[str, Any] = {}  # per-journal settings over make_engine's
        if self.file_sqlite:
            event.listen(engine, "checkout", self._on_checkout)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.session.close()
        self.engine.dispose()

    # ------------------------------------------------------------------ transaction

    def commit(self, *, durable: bool = False) -> None:
        """Flush buffered per-bar rows and commit. Every commit is durable (SQLite WAL with
        synchronous=FULL, PostgreSQL's default fsync; a paper daemon's SQLite journal is
        NORMAL, see ``paper_durability``); ``durable`` marks the call sites that rely on it
        (orders, trading state, runs) so a later tuning cannot silently drop it. The
        connection goes back to the pool with the transaction, and the next transaction
        checks one out again: the journal holds no connection between cycles."""
        with self.lock:
            try:
                self.flush()
                self.session.commit()
                self._commits_since_checkpoint += 1
                # Detach everything: the journal is the source of truth, not cached rows,
                # and the identity map must not grow with every proposal of a long replay.
                self.session.expunge_all()
            except SQLAlchemyError as exc:
                self.rollback()
                raise JournalError(
                    f"journal commit failed: {exc.__class__.__name__}: {exc}") from None
            except JournalError:
                self.rollback()
                raise
            committed, self.after_commit = self.after_commit, []
        for call in committed:
            with contextlib.suppress(Exception):  # a listener must never break the journal
                call()

    def rollback(self) -> None:
        with self.lock:
            self.pending_bars.clear()
            self.pending_rejects.clear()
            self.after_commit.clear()
            self.session.rollback()

    def flush(self) -> None:
        """Write the buffered per-bar rows into the open transaction."""
        if self.pending_bars:
            self.writer(BARS, BAR_KEYS).write_tuples(self.dbapi(), BAR_KEYS,
                                                     self.pending_bars)
        if self.pending_rejects:
            rows = self.pending_rejects
            self.writer(REJECTS, tuple(rows[0])).write_many(self.dbapi(), rows)
        self.pending_bars = []
        self.pending_rejects = []

    @property
    def pending_rows(self) -> int:
        return len(self.pending_bars) + len(self.pending_rejects)

    # ------------------------------------------------------------------ connection

    def conn(self) -> Connection:
        """The session's connection: writes go through SQLAlchemy Core on it (no ORM unit
        of work), inside the same transaction the session commits."""
        return self.session.connection()

    def dbapi(self) -> Any:
        """The session's DBAPI connection: statements on it belong to the session's
        transaction. Looked up once per transaction (``Session.connection()`` is not free, and
        a decision writes a dozen rows); the session's transaction-end event forgets it."""
        conn = self._dbapi_conn
        if conn is None:
            conn = self._dbapi_conn = self.conn().connection.dbapi_connection
        return conn

    def _forget_dbapi(self, *_args: Any) -> None:
        self._dbapi_conn = None

    # ------------------------------------------------------------------ statements

    def prep(self, key: Any, build: Callable[[], Any], keys: Sequence[str] | None = None,
             *, returns_id: bool = False) -> Prepared:
        """The prepared statement under ``key``, built (and compiled) on first use."""
        p = self._prepared.get(key)
        if p is None:
            p = self._prepared[key] = Prepared(build(), self.engine.dialect, keys,
                                               returns_id=returns_id)
        return p

    def insert(self, table: Any, values: dict[str, Any]) -> int:
        """Insert one row; its primary key."""
        keys = tuple(values)

        def build() -> Any:
            stmt = insert(table)
            if self.dialect != "sqlite":
                stmt = stmt.returning(*table.primary_key.columns)
            return stmt

        p = self.prep(("insert", table.name, keys), build, keys, returns_id=True)
        return p.insert(self.dbapi(), values)

    def writer(self, table: Any, keys: tuple[str, ...]) -> Prepared:
        """The INSERT of ``keys`` into ``table``, for rows whose key the caller already
        knows (or does not need)."""
        return self.prep(("write", table.name, keys), partial(insert, table), keys)

    def write(self, table: Any, values: dict[str, Any]) -> None:
        self.writer(table, tuple(values)).write(self.dbapi(), values)

    # ------------------------------------------------------------------ SQLite tuning

    def _on_checkout(self, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        for pragma, want in self._pragmas.items():
            if record.info.get(pragma) != want:
                dbapi_conn.execute(f"PRAGMA {pragma}={want}")
                record.info[pragma] = want

    def _set_pragma(self, pragma: str, value: Any) -> None:
        """For every connection of this journal, the session's current one at once (between
        transactions) and each later checkout."""
        with self.lock:
            self.commit()
            self._pragmas[pragma] = value
            self.dbapi().execute(f"PRAGMA {pragma}={value}")
            self.commit()

    def paper_durability(self) -> None:
        """``synchronous=NORMAL`` instead of FULL, for a paper daemon's journal only. In WAL
        mode NORMAL loses nothing when the process dies (SIGKILL, OOM): committed pages
        are in the OS's hands. Only an OS crash or power cut can drop the last commits, and
        then the paper run resumes from its last journaled bar and re-creates the same
        orders under the same ids: its broker is a simulator rebuilt from the journal, no
        order left the machine. What it saves is an fsync per order, the largest cost of
        a paper replay with many trades (benchmarks/README.md). Live and shadow keep FULL:
        there the order row must be on disk before a real broker sees the order."""
        if self.file_sqlite:
            self._set_pragma("synchronous", "NORMAL")

    def manual_checkpoints(self) -> None:
        """From now on SQLite does not checkpoint the WAL inside a commit: the owner calls
        ``checkpoint`` between cycles (the daemon's housekeeping) and ``checkpoint_due``
        bounds the WAL if it does not. A checkpoint writes and fsyncs the database file; on
        the durable commit before a broker call it was the order latency's worst tail."""
        if not self.file_sqlite:
            return
        self._manual_checkpoints = True
        self._set_pragma("wal_autocheckpoint", 0)

    def checkpoint_due(self, commits: int = 64) -> bool:
        return self._manual_checkpoints and self._commits_since_checkpoint >= commits

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database file (PASSIVE: never waits for, nor
        blocks, another connection). Call between transactions."""
        if not self.file_sqlite or self._commits_since_checkpoint == 0:
            return
        with self.lock:
            self.commit()
            cur = self.dbapi().cursor()
            try:
                cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cur.fetchall()
            except self.engine.dialect.loaded_dbapi.Error as exc:
                raise JournalError(f"journal checkpoint failed: {exc}") from None
            finally:
                cur.close()
            self.session.commit()
            self._commits_since_checkpoint = 0
