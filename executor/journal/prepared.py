"""Hot-path journal statements, compiled once per dialect and run on the DBAPI cursor.

Why: SQLAlchemy Core's ``Connection.execute`` spends most of a journal write's time on
the statement cache key, parameter and result set-up and events, several times what the
driver call itself takes (the decision-path profile in benchmarks/README.md). A decision
writes a dozen rows before its order reaches the broker, so that overhead was most of the
pipeline's share of the order latency.

What stays SQLAlchemy's: the SQL text is compiled by the engine's own dialect from the
same Core statement, and values go through the column types' own bind and result
processors (UTC timestamps, JSON), so a row written here is byte-identical to one written
through ``Connection.execute`` (tests/integration/test_journal_prepared.py checks both dialects).
Statements run on the session's DBAPI connection, so they are part of the session's
transaction and commit (durably) with it. Driver errors (disk full, read-only database,
lost server) and values the column types refuse become ``JournalError``: the journal's
commit then rolls back, and the daemon halts. Text from outside (model answers, bar
details) is made storable before it gets here (``values.storable_text``), so it cannot halt it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from domain.errors import JournalError

_Proc = Callable[[Any], Any] | None


class Prepared:
    """One statement for one dialect: SQL text, parameter order and value processors."""

    __slots__ = (
        "_columns",
        "_defaults",
        "_errors",
        "_names",
        "_pairs",
        "_positional",
        "_procs",
        "_results",
        "returns_id",
        "sql",
    )

    def __init__(self, stmt: ClauseElement, dialect: Dialect,
                 keys: Sequence[str] | None = None, *, returns_id: bool = False) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self._positional else list(compiled.binds)
        self._names = tuple(names)
        # Binds the statement fixes itself (a LIMIT's value) need no caller value.
        # (An INSERT's binds are all ``required``: their value is a placeholder symbol.)
        self._defaults = {n: compiled.binds[n].value for n in names
                          if compiled.binds[n].value is not None
                          and not compiled.binds[n].required}
        self._procs: tuple[_Proc, ...] = tuple(_bind_processor(compiled.binds[n].type, dialect)
                                               for n in names)
        self._pairs = tuple(zip(self._names, self._procs, strict=True))
        # PostgreSQL hands a new id back through RETURNING, SQLite through lastrowid.
        self.returns_id = returns_id and " RETURNING " in self.sql
        columns = list(getattr(stmt, "selected_columns", ()))
        self._columns = tuple(c.key for c in columns)
        self._results: tuple[_Proc, ...] = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        # A driver error (disk full, read-only, lost server), or a value the column types
        # cannot store (a naive timestamp, text the driver cannot encode): either way the
        # statement did not happen, and the caller's commit must roll back, not carry on.
        self._errors: tuple[type[BaseException], ...] = (
            dialect.loaded_dbapi.Error, ValueError, TypeError, OverflowError)

    def params(self, values: Mapping[str, Any]) -> Any:
        if self._defaults:
            values = {**self._defaults, **values}
        if self._positional:  # a list comprehension: the cheapest loop on every write
            return [values[n] if p is None else p(values[n]) for n, p in self._pairs]
        return {n: (values[n] if p is None else p(values[n])) for n, p in self._pairs}

    def run(self, dbapi_conn: Any, values: Mapping[str, Any]) -> Any:
        """Execute once; the cursor (for ``lastrowid`` / RETURNING / rows)."""
        cur = dbapi_conn.cursor()
        try:
            cur.execute(self.sql, self.params(values))
        except self._errors as exc:
            cur.close()
            raise _journal_error(exc) from None
        return cur

    def insert(self, dbapi_conn: Any, values: Mapping[str, Any]) -> int:
        """Execute an INSERT; the new row's id."""
        cur = self.run(dbapi_conn, values)
        try:
            if self.returns_id:
                return int(cur.fetchone()[0])
            return int(cur.lastrowid)
        finally:
            cur.close()

    def write(self, dbapi_conn: Any, values: Mapping[str, Any]) -> int:
        """Execute an INSERT/UPDATE whose result is not needed; rows affected."""
        cur = self.run(dbapi_conn, values)
        try:
            return int(cur.rowcount)
        finally:
            cur.close()

    def write_many(self, dbapi_conn: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.executemany(self.sql, [self.params(r) for r in rows])
        except self._errors as exc:
            raise _journal_error(exc) from None
        finally:
            cur.close()

    def write_tuples(self, dbapi_conn: Any, keys: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> None:
        """``write_many`` for rows given as tuples of ``keys``' values already bound for
        this dialect (no processor runs on them): where the statement takes exactly those
        parameters in that order, the tuples go to the driver as they are, with no dict
        per row (the replay's per-bar rows); otherwise they are rearranged to fit."""
        keys = tuple(keys)
        if set(keys) != set(self._names) or self._defaults:
            raise ValueError(f"rows of {keys} do not fit {self.sql!r}")
        params: Sequence[Any] = rows
        if not self._positional:
            params = [dict(zip(keys, r, strict=True)) for r in rows]
        elif self._names != keys:
            at = [keys.index(n) for n in self._names]
            params = [tuple(r[i] for i in at) for r in rows]
        cur = dbapi_conn.cursor()
        try:
            cur.executemany(self.sql, params)
        except self._errors as exc:
            raise _journal_error(exc) from None
        finally:
            cur.close()

    def _fetch(self, dbapi_conn: Any, values: Mapping[str, Any] | None,
               how: Callable[[Any], Any]) -> Any:
        cur = self.run(dbapi_conn, values or {})
        try:
            return how(cur)
        except self._errors as exc:
            raise _journal_error(exc) from None
        finally:
            cur.close()

    def rows(self, dbapi_conn: Any, values: Mapping[str, Any] | None = None,
             ) -> list[dict[str, Any]]:
        """Execute a SELECT; rows as dicts keyed by column, values processed."""
        raw = self._fetch(dbapi_conn, values, lambda cur: cur.fetchall())
        cols, procs = self._columns, self._results
        return [{k: (v if p is None else p(v)) for k, p, v in zip(cols, procs, r, strict=True)}
                for r in raw]

    def scalar(self, dbapi_conn: Any, values: Mapping[str, Any] | None = None) -> Any:
        row = self._fetch(dbapi_conn, values, lambda cur: cur.fetchone())
        if row is None:
            return None
        p = self._results[0] if self._results else None
        return row[0] if p is None else p(row[0])


def _bind_processor(type_: Any, dialect: Dialect) -> _Proc:
    """The column type's own bind processing; a type may offer a faster equivalent
    (``UTCDateTime.fast_bind_processor``), which tests/integration/test_decision_path_equivalence.py
    holds to writing the same stored values."""
    fast = getattr(type_, "fast_bind_processor", None)
    if fast is not None:
        return cast(_Proc, fast(dialect))
    return cast(_Proc, type_.dialect_impl(dialect).bind_processor(dialect))


def _journal_error(exc: BaseException) -> JournalError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return JournalError(f"journal statement failed: {exc.__class__.__name__}: {first}")
