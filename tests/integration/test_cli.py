"""The `dta` CLI: exit codes, masking, trace, status, trading state, db upgrade."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.daemon_helpers import replay
from typer.testing import CliRunner

from executor.journal.store import Journal
from runbooks.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _env(**extra: str) -> dict[str, str]:
    return {**{k: "" for k in os.environ if k.startswith("DTA_")}, **extra}


def test_invalid_settings_file_exits_2_naming_field_and_allowed_values(tmp_path: Path) -> None:
    bad = tmp_path / "dta.toml"
    bad.write_text('mode = "papper"\n[guardrails]\nmax_position_lots = -1\n')
    result = runner.invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code == 2
    assert "mode" in result.output and "'paper', 'shadow' or 'live'" in result.output
    assert "guardrails.max_position_lots" in result.output


def test_unknown_key_and_broken_toml_exit_2(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("[guardrails]\nmax_positon_lots = 1\n")
    result = runner.invoke(app, ["config", "show", "--config", str(typo)])
    assert result.exit_code == 2
    assert "guardrails.max_positon_lots: unknown setting" in result.output
    broken = tmp_path / "broken.toml"
    broken.write_text("mode = \n")
    result = runner.invoke(app, ["config", "show", "--config", str(broken)])
    assert result.exit_code == 2 and "not valid TOML" in result.output
    missing = runner.invoke(app, ["config", "show", "--config", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_invalid_settings_start_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "dta.toml"
    db = tmp_path / "j.sqlite"
    bad.write_text(f'mode = "paper"\n[journal]\nurl = "sqlite:///{db}"\nbatch_bars = 0\n')
    result = runner.invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code == 2 and "journal.batch_bars" in result.output
    assert not db.exists()


def test_config_show_masks_every_secret(config_file: Path) -> None:
    secrets = {"DTA_OPENAI_API_KEY": "sk-test-very-secret-1",
               "DTA_ANTHROPIC_API_KEY": "sk-ant-secret-2",
               "DTA_SENTRY_DSN": "https://abc123@sentry.example/1"}
    result = runner.invoke(app, ["config", "show", "--config", str(config_file), "--json"],
                           env=_env(**secrets))
    assert result.exit_code == 0, result.output
    for value in secrets.values():
        assert value not in result.output
    data = json.loads(result.stdout)
    assert data["settings"]["openai_api_key"] == "**********"
    assert data["settings"]["mode"] == "paper"
    assert len(data["content_hash"]) == 16


def test_trading_state_halt_activate_and_status(journal_url: str, config_file: Path) -> None:
    args = ["--config", str(config_file), "--journal-url", journal_url]
    assert runner.invoke(app, ["db", "upgrade", *args]).exit_code == 0
    r = runner.invoke(app, ["trading-state", "halt", "--reason", "news", "--operator", "ann",
                            *args])
    assert r.exit_code == 0, r.output
    again = runner.invoke(app, ["trading-state", "halt", "--reason", "x", *args])
    assert again.exit_code == 5 and "already HALTED" in again.output
    status = runner.invoke(app, ["status", "--json", *args])
    assert status.exit_code == 0, status.output
    ts = json.loads(status.stdout)["trading_state"]
    assert ts["state"] == "HALTED" and ts["operator"] == "ann" and ts["reason"] == "news"
    no_reason = runner.invoke(app, ["trading-state", "activate", "--reason", " ", *args])
    assert no_reason.exit_code == 2
    r = runner.invoke(app, ["trading-state", "activate", "--reason", "done", "--operator", "ann",
                            *args])
    assert r.exit_code == 0, r.output
    status = runner.invoke(app, ["status", "--json", *args])
    assert json.loads(status.stdout)["trading_state"]["state"] == "ACTIVE"


def test_trace_shows_bar_snapshot_decision_verdict_order_fills(
        journal_url: str, sample_head: Path, config_file: Path) -> None:
    replay(journal_url, sample_head)
    j = Journal.open(journal_url)
    filled = [o for o in j.orders.all() if o.state.value == "filled"]
    j.close()
    assert filled
    coid = filled[0].client_order_id
    args = ["--config", str(config_file), "--journal-url", journal_url]
    r = runner.invoke(app, ["trace", coid, "--json", *args])
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)
    assert t["order"]["client_order_id"] == coid
    assert t["bar"]["time"] == t["order"]["bar_time"]
    assert t["snapshot"]["trend"] in ("bullish", "bearish")
    assert t["proposal"]["direction"] == t["decision"]["direction"]
    assert t["decision"]["provider_mix"] == ["structure", "momentum"]
    assert t["verdict"]["approved"] is True
    assert {c["name"] for c in t["verdict"]["checks"]} == {
        "order_volume", "no_shorts", "exits_vs_market", "stop_vs_liquidation",
        "trading_state", "clearance",
        "max_position",
        "consensus",
        "max_gross_exposure",
        "max_order_notional", "order_throttle", "max_daily_loss", "min_stop_distance",
        "max_spread"}
    assert all(c["passed"] for c in t["verdict"]["checks"])
    assert t["parameter_set"]["versions"] == [1]
    assert t["parameter_set"]["content"]["strategy"]["name"] == "smc_ob_retest"
    assert [e["to_state"] for e in t["order_events"]] == ["new", "submitting", "accepted",
                                                         "filled"]
    assert t["fills"][0]["kind"] == "entry"
    text = runner.invoke(app, ["trace", coid, *args])
    assert text.exit_code == 0 and "verdict   approved" in text.output
    missing = runner.invoke(app, ["trace", "dta-nope", *args])
    assert missing.exit_code == 4


def test_status_json_after_replay(journal_url: str, sample_head: Path,
                                  config_file: Path) -> None:
    replay(journal_url, sample_head)
    r = runner.invoke(app, ["status", "--json", "--config", str(config_file), "--journal-url",
                            journal_url])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["streams"]["EURUSD/M15"]["count"] == 3000
    assert data["last_run"]["status"] == "completed"
    assert data["streams"]["EURUSD/M15"]["age_s"] > 0


def test_db_upgrade_is_idempotent_and_status_requires_migration(tmp_path: Path,
                                                               config_file: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    args = ["--config", str(config_file), "--journal-url", url]
    status = runner.invoke(app, ["status", *args])
    assert status.exit_code == 3 and "dta db upgrade" in status.output
    for _ in range(2):
        r = runner.invoke(app, ["db", "upgrade", *args])
        assert r.exit_code == 0 and "(head)" in r.output
    assert runner.invoke(app, ["status", *args]).exit_code == 0


def test_run_refuses_uncleared_modes_then_missing_adapters(config_file: Path,
                                                          tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    args = ["--config", str(config_file), "--journal-url", url]
    assert runner.invoke(app, ["db", "upgrade", *args]).exit_code == 0
    for mode in ("live", "shadow"):
        r = runner.invoke(app, ["run", "--mode", mode, *args])
        assert r.exit_code == 5 and "cleared for paper" in r.output, r.output
    j = Journal.open(url)
    j.clearances.record_clearance(account="paper-1", strategy="smc_ob_retest", action="promote",
                                  mode="live", person="desk", note="test")
    j.close()
    shadow = runner.invoke(app, ["run", "--mode", "shadow", *args])
    assert shadow.exit_code == 2 and "shadow.ea_deals_file" in shadow.output
    live = runner.invoke(app, ["run", "--mode", "live", *args])
    assert live.exit_code == 2 and "broker.kind: 'paper' cannot trade live" in live.output


def test_run_with_data_file_and_explicit_symbol(tmp_path: Path, config_file: Path) -> None:
    data = tmp_path / "bars.json"
    rows = [[1_699_999_200_000 + i * 3_600_000, 100 + i, 101 + i, 99 + i, 100.5 + i, 5]
            for i in range(60)]
    data.write_text(json.dumps(rows))
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    r = runner.invoke(app, ["run", "--config", str(config_file), "--journal-url", url,
                            "--data", str(data), "--symbol", "BTC/USDT", "--timeframe", "1h",
                            "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["bars_processed"] == 60
    no_names = runner.invoke(app, ["run", "--config", str(config_file), "--journal-url", url,
                                   "--data", str(data)])
    assert no_names.exit_code == 2 and "--symbol" in no_names.output


@pytest.mark.slow
def test_help_is_fast_and_lists_commands() -> None:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "runbooks.cli", "--help"], capture_output=True,
                         text=True, timeout=30, check=True)
    elapsed = time.perf_counter() - started
    for cmd in ("run", "status", "trading-state", "trace", "config", "db"):
        assert cmd in out.stdout
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys, runbooks.cli; "
         "print(sorted(m for m in ('sqlalchemy','sqlmodel','ccxt','alembic','apscheduler',"
         "'sentry_sdk') if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert heavy.stdout.strip() == "[]"
    assert elapsed < 10  # generous: speed is measured in benchmarks/, this guards imports


def test_providers_matrix_from_the_journal(journal_url: str, sample_head: Path,
                                           config_file: Path) -> None:
    summary = replay(journal_url, sample_head)
    r = runner.invoke(app, ["providers", "matrix", "--json", "--config", str(config_file),
                            "--journal-url", journal_url])
    assert r.exit_code == 0, r.output
    rows = {row["provider"]: row for row in json.loads(r.stdout)["providers"]}
    assert set(rows) == {"structure", "momentum"}
    for row in rows.values():
        assert row["calls"] == summary["decisions"]
        assert row["latency_p50_ms"] is not None and row["latency_p99_ms"] >= row[
            "latency_p50_ms"]
        assert row["errors"] == 0 and 0.0 <= row["agreement_with_ensemble"] <= 1.0
        assert row["hit_n"] > 0  # bar times matched in the journal's stored form
    text = runner.invoke(app, ["providers", "matrix", "--config", str(config_file),
                               "--journal-url", journal_url])
    assert "structure" in text.stdout and "hit" in text.stdout
