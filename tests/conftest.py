"""Shared fixtures. ``journal_url`` runs a test on SQLite and, when DTA_TEST_DATABASE_URL is
set (CI sets it when PostgreSQL answers on 127.0.0.1:5432), on PostgreSQL too."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.samples import ROOT, SAMPLE, write_sample_head

if str(ROOT) not in sys.path:  # `benchmarks` (used by reliability tests) is not installed
    sys.path.insert(0, str(ROOT))
# The server's URL as CI gives it; each test run works in a database of its own on that
# server (``pytest_configure``), so two runs at once never reset each other's schema.
_PG_SERVER_URL = os.environ.get("DTA_TEST_DATABASE_URL")
PG_URL: str | None = None
_RUN_DATABASE: str | None = None


def _run_database_name() -> str:
    return f"dta_test_{os.getpid()}_{secrets.token_hex(4)}"


def pytest_configure(config: pytest.Config) -> None:
    """Create this run's own PostgreSQL database and point ``DTA_TEST_DATABASE_URL`` at it
    (for the modules that read it and the child processes tests start); give the run its
    own directory of account lease files (``DTA_LEASE_DIR``), machine-wide otherwise."""
    global PG_URL, _RUN_DATABASE
    if "DTA_LEASE_DIR" not in os.environ:
        import tempfile

        os.environ["DTA_LEASE_DIR"] = tempfile.mkdtemp(prefix="dta-test-leases-")
    if not _PG_SERVER_URL or os.environ.get("DTA_TEST_DATABASE_OWNED") == "1":
        PG_URL = _PG_SERVER_URL
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(_PG_SERVER_URL)
    name = _run_database_name()
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    _RUN_DATABASE = name
    PG_URL = server.set(database=name).render_as_string(hide_password=False)
    os.environ["DTA_TEST_DATABASE_URL"] = PG_URL
    os.environ["DTA_TEST_DATABASE_OWNED"] = "1"  # a nested pytest reuses this database


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RUN_DATABASE is None or not _PG_SERVER_URL:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(_PG_SERVER_URL), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{_RUN_DATABASE}" WITH (FORCE)'))
    engine.dispose()


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.sqlite'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL journal tests need DTA_TEST_DATABASE_URL "
                    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    _reset_postgres(PG_URL)
    yield PG_URL
    _reset_postgres(PG_URL)


@pytest.fixture
def pg_journal_url() -> Iterator[str]:
    """A PostgreSQL journal only (for what exists only there: the lease's session)."""
    if not PG_URL:
        pytest.skip("PostgreSQL journal tests need DTA_TEST_DATABASE_URL "
                    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    _reset_postgres(PG_URL)
    yield PG_URL
    _reset_postgres(PG_URL)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journal.sqlite'}"


@pytest.fixture
def sample_head(tmp_path: Path) -> Path:
    return write_sample_head(tmp_path / "EURUSD_M15.csv", 3000)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A settings file like the example, journal and data pointed into tmp_path."""
    text = (ROOT / "config" / "dta.example.toml").read_text()
    path = tmp_path / "dta.toml"
    path.write_text(text.replace('path = "config/samples/EURUSD_M15.csv"',
                                 f'path = "{SAMPLE}"'))
    return path
