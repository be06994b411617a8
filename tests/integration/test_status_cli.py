"""`dta status` as an operator reads it (issue 18): equity and PnL, pending approvals with
their time left, open incidents, stale streams, rejected rows, ages in human units."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from freezegun import freeze_time
from support.status_scene import write_status_scene
from typer.testing import CliRunner

from runbooks.cli import app

runner = CliRunner()


def test_status_text_reads_for_people(sqlite_url: str, config_file: Path) -> None:
    with freeze_time("2024-03-05 10:55:00"):
        write_status_scene(sqlite_url)
    args = ["--config", str(config_file), "--journal-url", sqlite_url]
    with freeze_time("2024-03-05 12:00:00"):
        result = runner.invoke(app, ["status", *args])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    expected = [
        "account paper-1  mode paper  strategy smc_ob_retest",
        "trading state: HALTED by ann for 1 h 5 min (since 2024-03-05 10:55 UTC): "
        "news at 14:30",
        "equity 10,099.00 (from 10,000.00): realised +70.00, unrealised +30.00, fees 1.00",
        "today (2024-03-05 UTC): PnL +49.00 from 10,050.00",
        "positions: EURUSD +0.1 lots @ 1.1 (mark 1.103, +30.00)",
        "working orders: dta",  # the working sell's client order id follows
        "  EURUSD/M15: 2 bars, last bar 2024-03-05 11:30 UTC, closed 15 min ago",
        "  GBPUSD/M15: 1 bar, last bar 2024-03-05 10:00 UTC, closed 1 h 45 min ago  STALE "
        "(no bar for over 30 min)",
        "rows rejected: 2 (unparseable_row 2)",
        "approvals pending: 2",
        "  #1 EURUSD long: 4 min left on the wall clock; conflict",
        "  #2 EURUSD short: 30 min left on the replay clock; low confidence",
        "incidents open: 2",
        "  #2 high auto_rollback (acknowledged, 1 h 5 min ago): rolled back v2",
        "  #3 critical fill_surplus (open, 1 h 5 min ago): more filled than sent",
        "providers: structure on (breaker closed), momentum OFF (breaker closed)",
    ]
    for line in expected:
        assert any(shown.startswith(line) for shown in lines), (line, result.output)


def test_status_json_carries_figures_and_human_units(sqlite_url: str,
                                                     config_file: Path) -> None:
    with freeze_time("2024-03-05 10:55:00"):
        write_status_scene(sqlite_url)
    args = ["--config", str(config_file), "--journal-url", sqlite_url, "--json"]
    with freeze_time("2024-03-05 12:00:00"):
        result = runner.invoke(app, ["status", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["equity"]["equity"] == pytest.approx(10_099.0)
    assert data["equity"]["day_pnl"] == pytest.approx(49.0)
    assert [a["time_left"] for a in data["approvals"]] == ["4 min", "30 min"]
    assert [i["age"] for i in data["incidents"]] == ["1 h 5 min", "1 h 5 min"]
    assert data["streams"]["GBPUSD/M15"]["stale"] is True
    assert data["streams"]["EURUSD/M15"]["age"] == "15 min"
    assert data["rejected"] == {"unparseable_row": 2}
    assert data["trading_state"]["state"] == "HALTED"
