"""`dta replay` (runbooks/replay_cli.py): results, report, reproducibility facts in the
journal, date range, parameter versions, A/B, and the exit codes of its refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from support.samples import ROOT, write_sample_head
from typer.testing import CliRunner

from domain import stable_hash
from executor.journal.store import Journal
from runbooks.replay_cli import parse_when, register

EXAMPLE = ROOT / "config" / "dta.example.toml"
REFERENCE = ROOT / "tests" / "data" / "smc_reference"

app = typer.Typer(add_completion=False)


@app.callback()
def _root() -> None:
    """The `dta` app stand-in: the lead registers the command on runbooks.cli.app."""


register(app)
runner = CliRunner()


def dta(*args: str) -> Any:
    return runner.invoke(app, ["replay", *args, "--config", str(EXAMPLE)])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_head(tmp_path_factory.mktemp("data") / "EURUSD_M15.csv", 3000)


def test_replay_with_report_ab_and_smc_scores(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = dta(str(data), "--report", str(out), "--ab", "--seed", "5", "--resamples", "500",
                 "--smc-reference", str(REFERENCE), "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["status"] == "completed"
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    assert r["replay"]["data"]["sha256"] == sha
    assert r["replay"]["data"]["bars_in_range"] == 3000
    assert set(r["replay"]["providers"]["configured"]) == {"structure", "momentum"}
    assert r["results"]["trades"] > 0 and r["ab"]["design"]["seed"] == 5
    assert {s["kind"] for s in r["smc_scores"]} == {"bos", "choch", "sweeps",
                                                    "mitigation_blocks"}
    assert (out / "report.html").is_file() and (out / "smc_scores.csv").is_file()
    assert json.loads((out / "run.json").read_text())["replay"]["data"]["sha256"] == sha
    # the run is journaled with what it takes to reproduce it
    journal = Journal.open(f"sqlite:///{out / 'journal.sqlite'}", migrate_schema=False)
    try:
        (run,) = journal.queries.runs()
    finally:
        journal.close()
    assert run.status == "completed" and run.summary is not None
    replay = run.summary["replay"]
    assert replay["data"]["sha256"] == sha
    assert replay["params"]["hash"] == run.params_hash
    assert replay["ab"]["seed"] == 5
    assert sum(replay["providers"]["decisions_by_mix"].values()) == r["engine"]["proposals"]
    assert "--ab --seed 5" in replay["reproduce"]

    # a second replay into the same journal would resume, not replay: refused
    again = dta(str(data), "--journal-url", f"sqlite:///{out / 'journal.sqlite'}")
    assert again.exit_code == 5, again.output
    assert "already holds processed bars" in again.output


def test_date_range_and_text_output(data: Path, tmp_path: Path) -> None:
    result = dta(str(data), "--from", "2022-10-12", "--to", "2022-10-20",
                 "--journal-url", f"sqlite:///{tmp_path / 'j.sqlite'}")
    assert result.exit_code == 0, result.output
    assert "DTA replay completed: EURUSD M15" in result.stdout
    assert "2022-10-12T00:00 .. 2022-10-20T23:45" in result.stdout  # --to date: whole day
    assert "win rate" in result.stdout and "Sharpe" in result.stdout
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.sqlite'}", migrate_schema=False)
    try:
        (run,) = journal.queries.runs()
        first = next(journal.runs.iter_bars("EURUSD", "M15"))
    finally:
        journal.close()
    assert run.summary is not None
    assert run.summary["replay"]["data"]["from"] == "2022-10-12T00:00:00+00:00"
    assert first.time.isoformat() == "2022-10-12T00:00:00+00:00"


def test_params_version_from_the_operators_journal(data: Path, tmp_path: Path) -> None:
    from executor.settings import load_settings

    content = load_settings(EXAMPLE).parameter_set().values
    content["strategy"]["params"]["risk_reward"] = 3.0
    params_url = f"sqlite:///{tmp_path / 'operator.sqlite'}"
    ops = Journal.open(params_url)
    try:
        ops.params.add_param_version(content, None, "alice", "wider targets")
    finally:
        ops.close()
    result = dta(str(data), "--to", "2022-10-25", "--params", "1", "--params-journal",
                 params_url, "--journal-url", f"sqlite:///{tmp_path / 'replay.sqlite'}",
                 "--json")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["replay"]["params"]
    assert params["hash"] == stable_hash(content)
    assert (params["source_version"], params["from_settings_file"]) == (1, False)

    missing = dta(str(data), "--params", "7", "--params-journal", params_url,
                  "--journal-url", f"sqlite:///{tmp_path / 'other.sqlite'}")
    assert missing.exit_code == 4, missing.output


@pytest.mark.parametrize("args, message", [
    (["--from", "2022-10-20", "--to", "2022-10-12"], "is not after"),
    (["--from", "yesterday"], "not an ISO date"),
    (["--seed", "3"], "only apply with --ab"),
    (["--ab", "--ab-batch", "week"], "--ab-batch"),
    (["--from", "2031-01-01"], "no bars"),
])
def test_usage_errors_exit_2(data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = dta(str(data), *args, "--journal-url", f"sqlite:///{tmp_path / 'j.sqlite'}")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_parse_when() -> None:
    assert parse_when("2023-01-31", end=True).isoformat() == "2023-02-01T00:00:00+00:00"
    assert parse_when("2023-01-31", end=False).isoformat() == "2023-01-31T00:00:00+00:00"
    assert parse_when("2023-01-31T12:00:00+02:00", end=True).isoformat() == \
        "2023-01-31T10:00:00+00:00"
