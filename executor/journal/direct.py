"""The journal read through its database driver alone (the standard library's ``sqlite3``,
or ``psycopg``), for the status view (``executor/status_view.py``).

Why not ``Journal``: importing SQLAlchemy, sqlmodel and the table models costs ~350 ms on
our 2-core machine, more than the 300 ms `dta status` has in all (issue 18). The status
view needs a dozen plain SELECTs, which the drivers run as well as any ORM. Nothing here
writes. A journal that does not exist, has no schema or is behind the code is refused as
``Journal.open(url, create=False, migrate_schema=False)`` refuses it (``JournalError``,
exit 3), and a SQLite file is opened ``mode=rw``, never created.

All the reads of one view see one snapshot: SQLite holds one read transaction from the
first SELECT to ``close``; PostgreSQL reads at REPEATABLE READ, read-only.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from domain.errors import JournalError
from executor.journal.revisions import VERSION_TABLE, code_head

__all__ = ["DirectReader", "open_direct", "shown_url"]

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def shown_url(url: str) -> str:
    """The URL with its password masked, as SQLAlchemy renders it (``***``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class DirectReader:
    """Plain SELECTs on one DB-API connection. Statements name their parameters
    ``:name`` (rewritten to ``%(name)s`` for psycopg); rows come back as dicts."""

    def __init__(self, conn: Any, dialect: str, shown: str) -> None:
        self._conn = conn
        self.dialect = dialect
        self.url = shown

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        if self.dialect == "postgresql":
            sql = _NAMED.sub(r"%(\1)s", sql)
        try:
            cur = self._conn.execute(sql, params)
            rows = cur.fetchall()
        except Exception as exc:  # the driver's own error types: sqlite3's, psycopg's
            raise JournalError(f"cannot read journal {self.url}: {exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        return [dict(r) for r in rows]

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.rows(sql, **params)
        return next(iter(rows[0].values())) if rows else None

    def close(self) -> None:
        try:
            self._conn.rollback()  # a read-only transaction: nothing to keep
        finally:
            self._conn.close()

    def __enter__(self) -> DirectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def utc(value: Any) -> datetime | None:
    """A journal timestamp as an aware UTC datetime: SQLite returns the text SQLAlchemy
    stored (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC without a zone), PostgreSQL a datetime."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_json(value: Any) -> Any:
    """A JSON column's value: SQLite returns the text, psycopg the parsed value."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def open_direct(url: str) -> DirectReader:
    """A reader of the journal at ``url`` (a SQLAlchemy URL, as in settings), its schema
    checked against the code's head revision."""
    shown = shown_url(url)
    if url.startswith("sqlite"):
        reader = DirectReader(_sqlite(url, shown), "sqlite", shown)
    elif url.startswith("postgresql"):
        reader = DirectReader(_postgres(url, shown), "postgresql", shown)
    else:
        raise JournalError(f"journal {shown}: only SQLite and PostgreSQL journals are read "
                           "directly")
    try:
        _check_schema(reader)
    except BaseException:
        reader.close()
        raise
    return reader


def _sqlite(url: str, shown: str) -> Any:
    import sqlite3

    db = urlsplit(url).path[1:] if url.startswith("sqlite:///") else ""
    if not db or db == ":memory:":
        raise JournalError(f"journal {shown}: an in-memory journal cannot be read from "
                           "another connection")
    path = Path(db)
    if not path.is_file():
        raise JournalError(f"journal {shown} does not exist: `dta db upgrade` creates it")
    if path.stat().st_size == 0:
        raise JournalError(f"journal {shown} has no schema: `dta db upgrade` creates it")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True,
                               timeout=30, isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open journal {shown}: {exc}") from None
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("BEGIN")  # one snapshot from the first SELECT on (WAL)
    return conn


def _postgres(url: str, shown: str) -> Any:
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError:
        raise JournalError("a PostgreSQL journal needs psycopg: pip install "
                           "'dta-executor[postgres]'") from None
    _, _, rest = url.partition("://")
    try:
        conn = psycopg.connect("postgresql://" + rest, row_factory=dict_row,
                               connect_timeout=10)
    except psycopg.Error as exc:
        raise JournalError(f"cannot open journal {shown}: {exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _check_schema(reader: DirectReader) -> None:
    """As ``database.open_engine`` checks it: a schema, at the code's head revision."""
    if reader.dialect == "sqlite":
        present = reader.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                "AND name = :name", name=VERSION_TABLE)
    else:
        present = reader.scalar("SELECT count(*) FROM information_schema.tables WHERE "
                                "table_schema = current_schema() AND table_name = :name",
                                name=VERSION_TABLE)
    revisions = ([r["version_num"] for r in reader.rows(f"SELECT version_num FROM "
                                                         f"{VERSION_TABLE}")]
                 if present else [])
    if not revisions:
        raise JournalError(f"journal {reader.url} has no schema: `dta db upgrade` creates "
                           "it (only it, and a paper run, start a fresh journal)")
    if len(revisions) > 1:
        raise JournalError(f"journal {reader.url} has more than one schema revision "
                           f"({', '.join(sorted(revisions))}); resolve it with alembic "
                           "before running `dta`")
    if revisions[0] != code_head():
        raise JournalError(f"journal {reader.url} is not migrated to the current schema: "
                           "run `dta db upgrade`")

