"""`dta providers matrix` over a replayed journal: the window, and the exports (CSV, JSON,
and a PostgreSQL table for shared analytics, appended one snapshot per export)."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon_helpers import replay
from typer.testing import CliRunner

from runbooks.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    from support.samples import write_sample_head

    folder = tmp_path_factory.mktemp("matrix")
    data = write_sample_head(folder / "EURUSD_M15.csv", 3000)
    url = f"sqlite:///{folder / 'journal.sqlite'}"
    return url, replay(url, data)


def _matrix(url: str, config_file: Path, *args: str) -> str:
    r = runner.invoke(app, ["providers", "matrix", "--config", str(config_file),
                            "--journal-url", url, *args])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_csv_and_json_carry_the_same_figures(replayed: tuple[str, dict[str, object]],
                                             config_file: Path) -> None:
    url, summary = replayed
    rows = list(csv.DictReader(io.StringIO(_matrix(url, config_file, "--format", "csv"))))
    data = json.loads(_matrix(url, config_file, "--format", "json"))
    assert [r["provider"] for r in rows] == [p["provider"] for p in data["providers"]] == [
        "structure", "momentum"]
    for row, full in zip(rows, data["providers"], strict=True):
        assert int(row["calls"]) == full["calls"] == summary["decisions"]
        assert row["status"] == "up" and row["breaker"] == "closed"
        assert float(row["latency_p99_ms"]) >= float(row["latency_p50_ms"]) > 0
        assert int(row["errors"]) == int(row["timeouts"]) == 0
        assert 0.0 <= float(row["hit_rate"]) <= 1.0 and int(row["hit_n"]) > 0
    structure, momentum = data["providers"]
    # Agreement between two providers is one figure, seen from either side.
    assert structure["agreement"]["momentum"] == momentum["agreement"]["structure"]
    assert rows[0]["agree_momentum"] == str(structure["agreement"]["momentum"])
    text = _matrix(url, config_file)
    assert "agreement between providers:" in text and "p99" in text


def test_a_window_of_days_counts_back_from_the_newest_bar(
        replayed: tuple[str, dict[str, object]], config_file: Path) -> None:
    url, _ = replayed
    whole = json.loads(_matrix(url, config_file, "--json"))
    week = json.loads(_matrix(url, config_file, "--json", "--days", "7"))
    assert whole["window"] == {"start": None, "end": None}
    assert week["window"]["start"] is not None
    assert 0 < week["providers"][0]["calls"] < whole["providers"][0]["calls"]


def test_bad_export_arguments_are_refused(replayed: tuple[str, dict[str, object]],
                                          config_file: Path) -> None:
    url, _ = replayed
    base = ["providers", "matrix", "--config", str(config_file), "--journal-url", url]
    assert runner.invoke(app, [*base, "--format", "xml"]).exit_code == 2
    sqlite = runner.invoke(app, [*base, "--to-postgres", url])
    assert sqlite.exit_code == 2 and "PostgreSQL" in sqlite.output
    bad = runner.invoke(app, [*base, "--to-postgres", "postgresql+psycopg://x@127.0.0.1/x",
                              "--table", "m; drop table x"])
    assert bad.exit_code == 2 and "table" in bad.output


@pytest.fixture
def pg_table() -> Iterator[tuple[str, str]]:
    url = os.environ.get("DTA_TEST_DATABASE_URL")
    if not url:
        pytest.skip("the PostgreSQL export needs DTA_TEST_DATABASE_URL "
                    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    table = f"dta_matrix_{secrets.token_hex(4)}"  # this run's own table
    yield url, table
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def test_export_appends_a_snapshot_to_a_postgres_table(
        replayed: tuple[str, dict[str, object]], config_file: Path,
        pg_table: tuple[str, str]) -> None:
    from sqlalchemy import create_engine, text

    url, summary = replayed
    pg_url, table = pg_table
    for _ in range(2):
        r = runner.invoke(app, ["providers", "matrix", "--config", str(config_file),
                                "--journal-url", url, "--format", "csv", "--to-postgres",
                                pg_url, "--table", table])
        assert r.exit_code == 0, r.output
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT exported_at, account, provider, calls, status, "
                                 f"hit_rate, agreement FROM {table} ORDER BY exported_at, "
                                 "provider")).all()
    engine.dispose()
    assert len(rows) == 4 and len({r.exported_at for r in rows}) == 2
    first = {r.provider: r for r in rows[:2]}
    assert set(first) == {"structure", "momentum"}
    assert first["structure"].calls == summary["decisions"]
    assert first["structure"].account == "paper-1" and first["structure"].status == "up"
    assert set(first["structure"].agreement["share"]) == {"momentum"}
