"""Promotion gate: refused with a missing sign-off or a failing threshold, accepted when
all pass; demotion reaches a running daemon at its next decision."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from support.daemon_helpers import EXAMPLE, replay, settings_for
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.engine.clock import SimulatedClock
from executor.journal.store import Journal
from executor.wiring import build_daemon
from guardrails.promotion import Evidence, evaluate
from runbooks.cli import app

runner = CliRunner()

GOOD = Evidence(days=30, decisions=200, trades=40, max_drawdown_pct=5.0, expectancy_r=0.2,
                provider_error_rate=0.01, open_serious_incidents=0, direction_agreement=0.7)
LIVE = {"min_days": 20, "min_decisions": 100, "min_trades": 20, "min_direction_agreement": 0.6,
        "max_drawdown_pct": 10.0, "min_expectancy_r": 0.0, "max_provider_error_rate": 0.05}


@pytest.mark.parametrize(("field", "bad", "threshold"), [
    ("days", 19, "days"),
    ("decisions", 99, "decisions"),
    ("trades", 10, "trades"),
    ("direction_agreement", 0.55, "direction_agreement"),
    ("direction_agreement", None, "direction_agreement"),
    ("max_drawdown_pct", 12.0, "max_drawdown_pct"),
    ("expectancy_r", -0.1, "expectancy_r"),
    ("expectancy_r", None, "expectancy_r"),
    ("provider_error_rate", 0.2, "provider_error_rate"),
    ("open_serious_incidents", 1, "no_serious_incident"),
])
def test_each_threshold_fails_alone(field: str, bad: object, threshold: str) -> None:
    assert all(r.passed for r in evaluate(GOOD, LIVE))
    results = evaluate(replace(GOOD, **{field: bad}), LIVE)
    failing = [r.name for r in results if not r.passed]
    assert failing == [threshold]


def _config(tmp_path: Path, name: str = "dta.toml", **to_shadow: object) -> Path:
    text = (Path(EXAMPLE).read_text()
            + "\n[governance.to_shadow]\n"
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in to_shadow.items()))
    text = text.replace('path = "config/samples/EURUSD_M15.csv"',
                        f'path = "{Path(EXAMPLE).parent / "samples" / "EURUSD_M15.csv"}"')
    path = tmp_path / name
    path.write_text(text)
    return path


def _promote(cfg: Path, url: str, *extra: str) -> object:
    return runner.invoke(app, ["promote", "--to", "shadow", *extra, "--json", "--config",
                               str(cfg), "--journal-url", url])


def test_promotion_needs_every_signoff_and_every_threshold(journal_url: str,
                                                           tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 4000)
    replay(journal_url, data)  # the paper record
    cfg = _config(tmp_path, min_days=10, min_decisions=5, max_drawdown_pct=50.0)

    r = _promote(cfg, journal_url)
    assert r.exit_code == 5  # type: ignore[attr-defined]
    out = json.loads(r.stdout)  # type: ignore[attr-defined]
    assert out["missing_signoffs"] == ["trading", "compliance", "platform"]
    assert all(t["passed"] for t in out["thresholds"]), out["thresholds"]
    assert out["evidence"]["days"] > 10

    for role in ("trading", "compliance"):
        r = _promote(cfg, journal_url, "--sign-off", role, "--person", f"{role}-lead",
                     "--note", "reviewed the paper record")
        assert r.exit_code == 5  # type: ignore[attr-defined]
    assert json.loads(r.stdout)["missing_signoffs"] == ["platform"]  # type: ignore[attr-defined]

    strict = _config(tmp_path, "strict.toml", min_days=10_000, min_decisions=5)
    r = _promote(strict, journal_url, "--sign-off", "platform", "--person", "ops",
                 "--note", "VPS hardened")
    assert r.exit_code == 5  # type: ignore[attr-defined]
    out = json.loads(r.stdout)  # type: ignore[attr-defined]
    assert out["missing_signoffs"] == [] and not out["promoted"]
    assert [t["name"] for t in out["thresholds"] if not t["passed"]] == ["days"]

    r = _promote(cfg, journal_url)  # all signed, all passed: still nobody promoting
    assert r.exit_code == 5 and "needs an identified person" in r.output  # type: ignore[attr-defined]
    r = _promote(cfg, journal_url, "--operator", "head-of-desk")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert json.loads(r.stdout)["promoted"] is True  # type: ignore[attr-defined]
    hist = runner.invoke(app, ["promote", "--history", "--config", str(cfg), "--journal-url",
                               journal_url])
    assert hist.stdout.count("signoff") == 3 and "promote  shadow" in hist.stdout
    again = _promote(cfg, journal_url)
    assert again.exit_code == 5 and "cleared for shadow" in again.output  # type: ignore[attr-defined]


def test_demotion_takes_effect_at_the_next_decision_of_a_running_daemon(
        sqlite_url: str, tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 6000)
    deals = tmp_path / "deals.csv"
    deals.write_text("ticket,time,symbol,side,price,volume\n")
    j = Journal.open(sqlite_url)
    j.clearances.record_clearance(account="paper-1", strategy="smc_ob_retest", action="promote",
                                  mode="shadow", person="desk", note="cleared")
    j.close()
    settings = settings_for(sqlite_url, mode="shadow", shadow={"ea_deals_file": str(deals)})
    journal = Journal.open(sqlite_url)
    daemon = build_daemon(settings, journal, data=data)
    executor = daemon.executor
    executor.start()
    cycles = 0
    demoted_at: list[int] = []

    def next_close() -> object:
        nonlocal cycles
        cycles += 1
        if cycles == 3000:  # an operator demotes while the daemon runs
            r = runner.invoke(app, ["demote", "--to", "paper", "--reason", "EA disagreement",
                                    "--operator", "head-of-trading", "--config",
                                    str(EXAMPLE), "--journal-url", sqlite_url])
            assert r.exit_code == 0, r.output
            demoted_at.append(executor.stats.decisions)
        return daemon.feed.next_close_time()

    executor.run_replay(SimulatedClock(), next_close)
    summary = executor.stop()
    orders_before = sum(summary["orders"].values())
    rows = journal.clearances.clearances("paper-1")
    state = journal.trading_state.trading_state()
    journal.close()
    assert demoted_at and summary["decisions"] > demoted_at[0]
    assert summary["vetoes"].get("clearance", 0) == summary["decisions"] - demoted_at[0]
    assert orders_before > 0  # it did trade (virtually) before the demotion
    assert [r.action for r in rows] == ["promote", "demote"]
    assert state.state == "REDUCING" and "demoted to paper" in (state.reason or "")
