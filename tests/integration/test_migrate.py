"""Schema revision checks without alembic: ``executor.journal.migrate`` reads the current
revision with one SELECT and the head from the scripts' text; both must agree with what
alembic itself computes (that `dta status` does not import alembic: test_startup_imports)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from domain.errors import JournalError
from executor.journal import migrate, revisions
from executor.journal.store import Journal, make_engine
from runbooks.cli import app

runner = CliRunner()


def _alembic_current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_head_is_what_alembic_computes() -> None:
    engine = make_engine("sqlite://")
    expected = ScriptDirectory.from_config(migrate.alembic_config(engine)).get_current_head()
    assert expected is not None
    assert migrate.head_revision(engine) == migrate.head_revision() == expected


def test_head_parsing_of_branches_and_merges(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "__init__.py").write_text("")
    (versions / "a.py").write_text("revision = 'a'\ndown_revision = None\n")
    (versions / "b.py").write_text("revision: str = 'b'\ndown_revision: str | None = 'a'\n")
    assert revisions.script_head(versions) == "b"
    (versions / "c.py").write_text("revision = 'c'\ndown_revision = 'a'\n")
    with pytest.raises(JournalError, match="more than one head: b, c"):
        revisions.script_head(versions)
    (versions / "d.py").write_text("revision = 'd'\ndown_revision = ('b', 'c')\n")
    assert revisions.script_head(versions) == "d"


def test_current_revision_matches_alembic_at_every_step(journal_url: str) -> None:
    engine = make_engine(journal_url)
    try:
        assert migrate.current_revision(engine) is None == _alembic_current(journal_url)
        chain = [s.revision for s in reversed(list(ScriptDirectory.from_config(
            migrate.alembic_config(engine)).walk_revisions()))]
        for revision in chain:
            migrate.upgrade(engine, revision)
            assert migrate.current_revision(engine) == revision == _alembic_current(
                journal_url)
    finally:
        engine.dispose()


def test_status_refuses_a_journal_behind_on_migrations(journal_url: str,
                                                      config_file: Path) -> None:
    engine = make_engine(journal_url)
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    previous = script.get_revision(migrate.head_revision()).down_revision
    assert isinstance(previous, str)
    migrate.upgrade(engine, previous)  # a journal one migration behind the code
    engine.dispose()
    args = ["--config", str(config_file), "--journal-url", journal_url]
    behind = runner.invoke(app, ["status", *args])
    assert behind.exit_code == 3 and "dta db upgrade" in behind.output
    with pytest.raises(JournalError, match="not migrated"):
        Journal.open(journal_url, migrate_schema=False)
    upgraded = runner.invoke(app, ["db", "upgrade", *args])
    assert upgraded.exit_code == 0 and "(head)" in upgraded.output
    assert runner.invoke(app, ["status", *args]).exit_code == 0


def test_two_rows_in_the_version_table_are_an_error(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('zzzz')")
    with pytest.raises(JournalError, match="more than one schema revision"):
        migrate.current_revision(engine)
    engine.dispose()


def test_trading_state_history_survives_the_rename(journal_url: str) -> None:
    """Migration 0010 renames ``kill_switch_events`` to ``trading_state_events`` and the
    verbs an operator typed to the states they led to; no event is lost, so who halted
    and why stays readable, and a journal halted before the upgrade is HALTED after it."""
    import sqlalchemy as sa

    engine = make_engine(journal_url)
    try:
        migrate.upgrade(engine, "0009")
        rows = [("engage", "ann", "news"), ("release", "bob", "checked"),
                ("reduce", "system", "drawdown"), ("engage", "carl", "outage")]
        with engine.begin() as conn:
            for i, (verb, who, why) in enumerate(rows):
                conn.execute(sa.text(
                    "INSERT INTO kill_switch_events (at, action, scope, operator, reason, "
                    "trigger) VALUES (:at, :verb, 'global', :who, :why, 'manual')"),
                    {"at": f"2026-12-0{i + 1} 10:00:00.000000", "verb": verb, "who": who,
                     "why": why})
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    journal = Journal.open(journal_url, migrate_schema=False, create=False)
    try:
        events = [(e.state, e.operator)
                  for e in reversed(journal.trading_state.trading_state_events())]
        state = journal.trading_state.trading_state()
    finally:
        journal.close()
    assert events == [("HALTED", "ann"), ("ACTIVE", "bob"), ("REDUCING", "system"),
                      ("HALTED", "carl")]
    assert (state.state, state.operator, state.reason) == ("HALTED", "carl", "outage")
