"""Shared fixtures. ``journal_url`` runs a test on SQLite and, when DTA_TEST_DATABASE_URL is
set (CI sets it when PostgreSQL answers on 127.0.0.1:5432), on PostgreSQL too."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` (used by reliability tests) is not installed
    sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
PG_URL = os.environ.get("DTA_TEST_DATABASE_URL")


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
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journal.sqlite'}"


def write_sample_head(path: Path, rows: int) -> Path:
    """The first ``rows`` bars of the real sample, as an MT5 CSV export."""
    with SAMPLE.open() as src:
        lines = [next(src) for _ in range(rows + 1)]
    path.write_text("".join(lines).rstrip("\n") + "\n")
    return path


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
