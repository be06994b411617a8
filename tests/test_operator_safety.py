"""Operator safety (issue 15, items 14-18, 22, 23): what a new operator's mistakes and a
broken VPS must not be able to do: re-activate a bad parameter version, hide an unwritable
journal, relax trading anonymously, create an empty journal by looking at it, promote to
live on thresholds a partial table dropped, or blank a character out of every log line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_helpers import EXAMPLE
from typer.testing import CliRunner

from executor.journal.store import Journal
from runbooks.cli import app

runner = CliRunner()


def _dta(url: str, *args: str, config: Path = EXAMPLE) -> object:
    return runner.invoke(app, [*args, "--config", str(config), "--journal-url", url])


# ------------------------------------------------------------------ 14: params rollback


def test_repeated_rollback_walks_back_and_never_reactivates_the_version_it_left(
        journal_url: str) -> None:
    j = Journal.open(journal_url)
    try:
        for lots in (0.1, 0.2, 0.3):  # v1, v2, v3, each activated in turn
            v = j.add_param_version({"guardrails": {"max_position_lots": lots}},
                                    None, "quant", f"size {lots}")
            j.add_param_event(v.version, "activate", "quant", f"size {lots}")
    finally:
        j.close()
    first = _dta(journal_url, "params", "rollback", "--reason", "v3 misbehaves",
                 "--operator", "ann")
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    assert "rolled back to v2" in first.output  # type: ignore[attr-defined]
    second = _dta(journal_url, "params", "rollback", "--reason", "v2 too",
                  "--operator", "ann")
    assert second.exit_code == 0, second.output  # type: ignore[attr-defined]
    # Before the fix this re-activated v3, the version the first rollback had left.
    assert "rolled back to v1" in second.output  # type: ignore[attr-defined]
    j = Journal.open(journal_url, migrate_schema=False)
    try:
        bad = {v.version for v in j.param_versions() if v.bad}
    finally:
        j.close()
    assert bad == {2, 3}
    third = _dta(journal_url, "params", "rollback", "--reason", "again", "--operator", "ann")
    assert third.exit_code == 5 and "known-good" in third.output  # type: ignore[attr-defined]
    to_bad = _dta(journal_url, "params", "rollback", "--to", "3", "--reason", "x",
                  "--operator", "ann")
    assert to_bad.exit_code == 5 and "marked bad" in to_bad.output  # type: ignore[attr-defined]


# ------------------------------------------------------------------ 23: secret scrubbing


@pytest.mark.parametrize("env", ["DTA_MT5_PASSWORD", "DTA_EXCHANGE_API_SECRET",
                                 "DTA_ALERT_WEBHOOK_URL"])
def test_a_secret_too_short_to_be_real_is_refused_without_echoing_it(
        env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(env, "e")
    result = runner.invoke(app, ["config", "show", "--config", str(EXAMPLE)])
    assert result.exit_code == 2, result.output
    field = env.removeprefix("DTA_").lower()
    assert f"{field}: Value error, too short to be a real secret" in result.output
    assert "'e'" not in result.output


def test_log_lines_keep_their_letters_and_lose_whole_secrets(
        capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    from executor.log_setup import SecretScrubber, configure_logging

    with pytest.raises(ValueError, match="too short to be real"):
        SecretScrubber(["e", "a-long-enough-secret"])
    configure_logging("info", ["a-long-enough-secret"])
    structlog.get_logger("t").info("event seen", detail="key=a-long-enough-secret end")
    line = capsys.readouterr().err
    assert "event seen" in line and "key=********** end" in line
    assert "a-long-enough-secret" not in line


# ------------------------------------------------------------------ 22: promotion thresholds


def _config(tmp_path: Path, extra: str, name: str = "dta.toml") -> Path:
    path = tmp_path / name
    path.write_text(EXAMPLE.read_text() + "\n" + extra)
    return path


def test_a_partial_to_live_table_keeps_the_other_default_thresholds(tmp_path: Path) -> None:
    from executor.settings import load_settings

    gov = load_settings(_config(tmp_path, "[governance.to_live]\nmin_trades = 5\n")).governance
    assert gov.to_live.min_trades == 5
    assert gov.to_live.min_direction_agreement == 0.6 and gov.to_live.min_days == 20
    assert gov.to_live.max_drawdown_pct == 10.0 and gov.to_live.min_expectancy_r == 0.0
    assert gov.to_live.max_provider_error_rate == 0.05
    assert gov.to_shadow.min_days == 5  # the table not named keeps its defaults too


def test_promotion_to_live_without_a_shadow_record_is_refused(sqlite_url: str,
                                                               tmp_path: Path) -> None:
    cfg = _config(tmp_path, "[governance.to_live]\nmin_trades = 0\n")
    j = Journal.open(sqlite_url)
    j.record_clearance(account="paper-1", strategy="smc_ob_retest", action="promote",
                       mode="shadow", person="desk", note="cleared for shadow")
    j.close()
    for role, person in (("trading", "tina"), ("compliance", "carl"), ("platform", "pia")):
        r = _dta(sqlite_url, "promote", "--to", "live", "--sign-off", role, "--person", person,
                 "--note", "signed", "--json", config=cfg)
    # Before the fix the partial table left only min_trades = 0: promoted, exit 0.
    assert r.exit_code == 5, r.output  # type: ignore[attr-defined]
    out = json.loads(r.stdout)  # type: ignore[attr-defined]
    assert out["promoted"] is False and out["missing_signoffs"] == []
    failing = {t["name"] for t in out["thresholds"] if not t["passed"]}
    assert {"shadow_record", "days", "decisions", "direction_agreement"} <= failing


def test_no_threshold_setting_waives_the_source_record(sqlite_url: str) -> None:
    from datetime import timedelta

    from executor.governance import assess

    j = Journal.open(sqlite_url)
    try:
        _, results, _ = assess(j, account="paper-1", strategy="smc_ob_retest", target="live",
                               thresholds={}, roles=[], contract_size=1.0,
                               initial_balance=1.0, pairing_window=timedelta(hours=1))
    finally:
        j.close()
    assert [r.name for r in results if not r.passed] == ["shadow_record"]
