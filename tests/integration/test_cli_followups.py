"""Issue 18's CLI items: `dta --version`, unparseable rows in the run summary, and a
proposal whose content already exists (no duplicate version)."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from runbooks.cli import app

runner = CliRunner()


def test_version_prints_the_installed_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"dta {version('dta-executor')}"


def test_run_summary_counts_unparseable_rows_and_says_why(tmp_path: Path,
                                                         config_file: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 300)
    lines = data.read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "abc", 1)  # a high that is no number
    lines[9] = "2022.10.10 02:00:00,1.0,1.1"  # too few columns
    data.write_text("\n".join(lines) + "\n")
    args = ["run", "--config", str(config_file), "--data", str(data),
            "--journal-url", f"sqlite:///{tmp_path / 'j.sqlite'}"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    row = next(line for line in text.stdout.splitlines() if "unparseable rows" in line)
    assert row.split()[2] == "2"
    assert "line 6: high 'abc' is not a number" in row
    assert "line 10: expected 8 columns, got 3" in row
    assert "NaN" not in text.stdout
    args[-1] = f"sqlite:///{tmp_path / 'j2.sqlite'}"
    as_json = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert as_json["unparseable_rows"] == {"count": 2, "first": [
        {"line": 6, "reason": "high 'abc' is not a number"},
        {"line": 10, "reason": "expected 8 columns, got 3"}]}


def test_proposing_existing_content_returns_that_version(tmp_path: Path,
                                                         config_file: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    base = ["--config", str(config_file), "--journal-url", url]
    assert runner.invoke(app, ["db", "upgrade", *base]).exit_code == 0
    change = ["params", "propose", "--set", "guardrails.max_position_lots=0.3",
              "--reason", "smaller", *base]
    first = runner.invoke(app, change)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("proposed v1 ")
    again = runner.invoke(app, change)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("no new version: v1 (") and "already holds" in again.stdout
    activated = runner.invoke(app, [*change, "--activate", "--operator", "ann"])
    assert activated.exit_code == 0 and activated.stdout.rstrip().endswith(", active")
    journal = Journal.open(url, migrate_schema=False, create=False)
    try:
        versions = journal.params.param_versions()
        events = [e.action for e in journal.params.param_events()]
    finally:
        journal.close()
    assert [v.version for v in versions] == [1] and events == ["activate"]
    twice = runner.invoke(app, [*change, "--activate", "--operator", "ann"])
    assert twice.exit_code == 0 and "already holds" in twice.stdout
