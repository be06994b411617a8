"""The journal's database: an engine with the pragmas the daemon relies on, opened only
when its schema is what the code expects. Nothing here holds a session: that is the unit
of work's (``unit_of_work.py``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from domain.errors import JournalError
from executor.journal import jsontext, migrate


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


def open_engine(url: str, *, migrate_schema: bool = True, create: bool = True) -> Engine:
    """The engine of a journal whose schema is at head (migrated first when
    ``migrate_schema``). ``create=False``: only a journal that already has a schema."""
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
    return engine


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the journal's schema revision, the code's head revision)."""
    return migrate.current_revision(engine), migrate.head_revision(engine)


def has_version_table(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(inspect(conn).has_table(migrate.VERSION_TABLE))


def probe_write(engine: Engine) -> None:
    """A real, committed write (the schema's version row rewritten with its own value): a
    write lock alone is granted on a file that cannot be written (immutable, read-only
    mount, a role without UPDATE), and only a commit reaches the storage. Raises what the
    driver raised."""
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = version_num"))
