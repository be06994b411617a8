"""The closed loop (`dta tune`) and the nightly self-audit (`dta audit`)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from support.daemon_helpers import EXAMPLE, replay
from support.samples import SAMPLE, write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from executor.tuning import audit
from guardrails.params import active_version
from runbooks.cli import app

runner = CliRunner()


def _cli(url: str, *args: str) -> object:
    return runner.invoke(app, [*args, "--config", str(EXAMPLE), "--journal-url", url])


def test_tune_proposes_bounded_weights_with_evidence_and_never_activates(
        journal_url: str, tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 8000)
    summary = replay(journal_url, data)
    r = _cli(journal_url, "tune", "--json", "--min-trades", "5")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    out = json.loads(r.stdout)  # type: ignore[attr-defined]
    ev = out["evidence"]
    assert sum(ev["outcomes"].values()) > 0
    assert sum(ev["outcomes"].values()) <= summary["fills"]
    for name, w in ev["weights"]["proposed"].items():
        base = ev["weights"]["current"][name]
        assert 0.25 * base <= w <= 4.0 * base
        assert abs(w - base) <= 0.2 * base + 1e-9  # eta bounds one run
    assert len(ev["min_confidence"]["table"]) == 9
    j = Journal.open(journal_url)
    try:
        assert active_version(j.params).version == 1  # type: ignore[union-attr]
        stored = j.params.param_evidence(out["proposed_version"])
        assert stored is not None and stored["outcomes"] == ev["outcomes"]
    finally:
        j.close()
    diff = _cli(journal_url, "params", "diff", "1", str(out["proposed_version"]))
    assert "ensemble.providers" in diff.stdout or "guardrails.consensus" in diff.stdout  # type: ignore[attr-defined]


def test_audit_flags_a_provider_regression_and_writes_a_proposal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    replay(url, SAMPLE)
    j = Journal.open(url)
    try:
        from collections import Counter

        per_day = Counter(o.intent.bar_time.date() for o in j.orders.all())
        days = sorted(d for d, n in per_day.items() if n >= 2)
        reports = [audit(j, d, min_signals=2) for d in days]
    finally:
        j.close()
    scored = [r for r in reports if r["providers"]]
    assert scored, "some days have scored provider signals"
    for r in scored:
        for stats in r["providers"].values():
            for key in ("day_accuracy", "trailing_accuracy"):
                assert stats[key] is None or 0.0 <= stats[key] <= 1.0
    flagged = [r for r in reports if r["regressions"]]
    assert flagged, "the sample has at least one bad day for some provider"
    strong = [r for r in flagged if all(
        r["providers"][name]["day_signals"] >= 3 for name in r["providers"])
        and audit_regressions(url, r["day"])]
    assert strong, "a day with a regression at the CLI's default threshold"
    out = json.loads(_cli(url, "audit", "--day", strong[0]["day"], "--json").stdout)  # type: ignore[attr-defined]
    assert out["regressions"]
    assert out["incident_id"] and out["proposed_version"]
    j = Journal.open(url)
    try:
        [incident] = j.incidents.all()
        assert incident.kind == "self_audit:regression" and incident.severity == "high"
        assert active_version(j.params).version == 1  # type: ignore[union-attr]
    finally:
        j.close()


def audit_regressions(url: str, day: str) -> list[str]:
    j = Journal.open(url)
    try:
        return list(audit(j, date.fromisoformat(day))["regressions"])
    finally:
        j.close()
