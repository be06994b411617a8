"""Guardrails inside the running daemon: automatic parameter rollback on a replay, and the
approval queue end to end (approve in time -> executed once; late -> never executed)."""

from __future__ import annotations

import json
from pathlib import Path

from support.daemon_helpers import replay
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.feeds.files import load_bars
from executor.journal.store import Journal
from guardrails.params import active_version
from runbooks.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
LONG_TTL = {"approval_ttl_seconds": 5 * 86400}


def _cli(url: str, *args: str) -> object:
    return runner.invoke(app, [*args, "--config", str(ROOT / "config/dta.example.toml"),
                               "--journal-url", url])


def test_harmful_parameter_change_is_rolled_back_automatically(journal_url: str,
                                                               tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 8000)
    first = replay(journal_url, data, stop_after=2000)
    assert first["params_version"] == 1 and first["rollbacks"] == 0

    r = _cli(journal_url, "params", "propose", "--reason", "try 20x size",
             "--set", "paper.order_volume_lots=2.0", "--set", "guardrails.max_position_lots=2.0",
             "--set", "guardrails.max_order_notional=1000000",
             "--set", "guardrails.max_gross_exposure_lots=5",
             "--set", "guardrails.regression.drawdown_pct=2.0",
             "--activate",
             "--operator", "quant")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    diff = _cli(journal_url, "params", "diff", "1", "2", "--json")
    changed = {row["path"] for row in json.loads(diff.stdout)}  # type: ignore[attr-defined]
    assert "paper.order_volume_lots" in changed

    second = replay(journal_url, data)
    assert second["rollbacks"] == 1
    assert second["trading_state"] in ("REDUCING", "HALTED")  # REDUCING, or stricter since
    assert second["params_version"] == 1

    j = Journal.open(journal_url)
    try:
        events = [(e.version, e.action, e.trigger) for e in j.params.param_events()]
        assert events[0] == (1, "activate", None)
        assert (2, "activate", None) in events
        assert events[-1] == (1, "auto_rollback", "drawdown_since_activation")
        versions = {v.version: v for v in j.params.param_versions()}
        assert versions[2].bad and not versions[1].bad
        assert active_version(j.params).version == 1  # type: ignore[union-attr]
        by_hash = {v.hash: v.version for v in versions.values()}
        runs_under = [by_hash[o.intent.params_hash] for o in j.orders.all()]
        # Orders ran under v1, then v2 until the trigger; none after (REDUCING).
        assert runs_under == sorted(runs_under)
        assert 1 in runs_under and 2 in runs_under
        rollback_at = j.params.param_events()[-1].at
        states = [(e.state, e.trigger) for e in reversed(j.trading_state.trading_state_events())]
        assert states[0] == ("REDUCING", "drawdown_since_activation")
        incidents = j.incidents.all()
        assert incidents[0].kind == "auto_rollback:drawdown_since_activation"
        assert incidents[0].severity == "high"
        assert rollback_at is not None
    finally:
        j.close()
    status = _cli(journal_url, "status", "--json")
    assert json.loads(status.stdout)["trading_state"]["state"] != "ACTIVE"  # type: ignore[attr-defined]
    history = _cli(journal_url, "params", "list")
    assert "auto_rollback v1 by system (drawdown_since_activation)" in history.stdout  # type: ignore[attr-defined]
    # The evidence behind it: the trigger's figures, v2 -> v1 and what changed, the
    # incident it opened, and v2's record (its orders and their realised PnL).
    shown = _cli(journal_url, "params", "evidence", "--json")
    [evidence] = json.loads(shown.stdout)  # type: ignore[attr-defined]
    assert (evidence["from_version"], evidence["to_version"]) == (2, 1)
    assert evidence["trigger"] == "drawdown_since_activation"
    assert "below" in evidence["reason"] and "at activation" in evidence["reason"]
    assert ["paper.order_volume_lots", 2.0, 0.1] in [
        [path, old, new] for path, old, new in evidence["changes"]]
    assert evidence["incident"]["severity"] == "high"
    assert evidence["orders_under"] > 0 and evidence["realised_under"] < 0


def _first_request_bar(data: Path, tmp_path: Path) -> tuple[int, object]:
    """Where the first approval request appears: a scratch run tells us."""
    scratch = f"sqlite:///{tmp_path / 'scratch.sqlite'}"
    replay(scratch, data, guardrails=LONG_TTL)
    j = Journal.open(scratch)
    first = j.approvals.all()[0]
    j.close()
    bars = load_bars(data).bars
    index = next(i for i, b in enumerate(bars) if b.close_time == first.created_at)
    return index, first.created_at


def test_approved_in_time_executes_once_and_late_never(journal_url: str,
                                                       tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 6000)
    index, _created_at = _first_request_bar(data, tmp_path)
    replay(journal_url, data, stop_after=index + 3, guardrails=LONG_TTL)
    j = Journal.open(journal_url)
    pending = j.approvals.all("pending")
    assert len(pending) == 1
    request = pending[0]
    weights_before = active_version(j.params).content["ensemble"]["providers"]  # type: ignore[union-attr]
    j.close()

    shown = _cli(journal_url, "approvals", "show", str(request.id))
    assert shown.exit_code == 0 and '"signals"' in shown.stdout  # type: ignore[attr-defined]
    # Approved on today's wall clock, years after the replay's bars: the request lives on
    # the replay's clock (issue 16, defect 8), where it has days left.
    r = _cli(journal_url, "approvals", "approve", str(request.id), "--note",
             "structure is clean", "--operator", "analyst")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "approved" in r.stdout  # type: ignore[attr-defined]
    again = _cli(journal_url, "approvals", "approve", str(request.id), "--note", "x",
                 "--operator", "analyst")
    assert again.exit_code == 5  # type: ignore[attr-defined]

    summary = replay(journal_url, data, guardrails=LONG_TTL)
    assert summary["approvals"]["executed"] == 1
    j = Journal.open(journal_url)
    try:
        done = j.approvals.get_approval(request.id or 0)
        assert done is not None and done.status == "executed"
        assert done.operator == "analyst" and done.note == "structure is clean"
        order = j.orders.get_order(done.client_order_id or "")
        assert order is not None and order.intent.decision_id == request.decision_id
        shown = request.intent or {}  # what the analyst approved is what was sent
        sent = order.intent
        assert (sent.side.value, sent.volume, sent.stop_loss, sent.take_profit) == (
            shown["side"], shown["volume"], shown["stop_loss"], shown["take_profit"])
        assert request.direction == ("long" if sent.side.value == "buy" else "short")
        assert sum(1 for o in j.orders.all() if o.client_order_id == done.client_order_id) == 1
        # The verdict fed the weights: a new, active version within the bounds.
        active = active_version(j.params)
        assert active is not None and active.author == "approval-feedback"
        for name, cfg in active.content["ensemble"]["providers"].items():
            base = weights_before[name]["weight"]
            assert 0.25 * base <= cfg["weight"] <= 4.0 * base
            assert abs(cfg["weight"] - base) <= 0.05 * base + 1e-9
        assert active.content["ensemble"]["providers"] != weights_before
    finally:
        j.close()

    # The same request in another journal whose replay ran past its time-to-live (on the
    # replay's clock) before anyone looked: refused, expired, and never sent.
    late_url = f"sqlite:///{tmp_path / 'late.sqlite'}"
    replay(late_url, data, stop_after=index + 3, guardrails=LONG_TTL)
    j = Journal.open(late_url)
    try:
        assert j.approvals.get_approval(request.id or 0).status == "pending"  # type: ignore[union-attr]
    finally:
        j.close()
    replay(late_url, data, stop_after=700, guardrails=LONG_TTL)  # 700 bars > 5 days
    r = _cli(late_url, "approvals", "approve", str(request.id), "--note", "too late",
             "--operator", "analyst")
    assert r.exit_code == 5 and "expired" in r.output  # type: ignore[attr-defined]
    resumed = replay(late_url, data, guardrails=LONG_TTL)
    assert resumed["approvals"]["executed"] == 0
    j = Journal.open(late_url)
    try:
        late = j.approvals.get_approval(request.id or 0)
        assert late is not None and late.status == "expired" and late.client_order_id is None
        coid = (late.intent or {})["client_order_id"]
        assert j.orders.get_order(coid) is None
        assert all(a.status != "approved" for a in j.approvals.all())
    finally:
        j.close()
