"""`dta run` as a real subprocess: systemd notifications, SIGTERM, SIGKILL and restart."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.daemon_helpers import replay
from support.doubles import NotifySocket

from executor.journal.models import BarRow, OrderRow, RunRow
from executor.journal.store import Journal

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
TOTAL_BARS = 24424
DTA = [sys.executable, "-m", "runbooks.cli"]




def _start(journal_url: str, tmp_path: Path, notify: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTA_")}
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
        env["WATCHDOG_USEC"] = "200000"
    return subprocess.Popen(
        [*DTA, "run", "--mode", "paper", "--config", str(ROOT / "config/dta.example.toml"),
         "--data", str(SAMPLE), "--journal-url", journal_url, "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _facts(url: str) -> dict[str, object]:
    j = Journal.open(url)
    try:
        s = j.uow.session
        return {
            "bars": s.scalar(select(func.count()).select_from(BarRow)),
            "distinct_bars": s.scalar(select(func.count(func.distinct(BarRow.time)))),
            "orders": sorted(o.client_order_id for o in s.scalars(select(OrderRow))),
            "in_doubt": s.scalar(select(func.count()).select_from(OrderRow).where(
                OrderRow.state.in_(["new", "submitting", "unknown"]))),  # type: ignore[attr-defined]
            "fills": sorted(f.fill_id for f in j.orders.fills()),
            "runs": [(r.status, (r.summary or {}).get("bars_processed"))
                     for r in s.scalars(select(RunRow).order_by(RunRow.id))],
        }
    finally:
        j.close()


@pytest.mark.slow
def test_sigterm_finishes_cycle_commits_and_exits_zero(journal_url: str, tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = _start(journal_url, tmp_path, notify.path)
    try:
        assert notify.wait_for("READY=1", 60), proc.stderr.read() if proc.stderr else ""
        assert notify.wait_for("WATCHDOG=1", 10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert notify.wait_for("STOPPING=1", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    assert proc.returncode == 0, err
    order = [m.split("\n")[0] for m in notify.messages if not m.startswith("STATUS")]
    first = {k: next(i for i, m in enumerate(order) if m.startswith(k))
             for k in ("READY=1", "WATCHDOG=1", "STOPPING=1")}
    assert first["READY=1"] < first["WATCHDOG=1"] < first["STOPPING=1"]
    summary = json.loads(out)
    assert summary["status"] == "stopped"
    stopped_at = summary["bars_processed"]
    assert 0 < stopped_at < TOTAL_BARS

    facts = _facts(journal_url)
    # Consistent: every processed bar is journaled once, no order left in doubt.
    assert facts["bars"] == facts["distinct_bars"] == stopped_at
    assert facts["in_doubt"] == 0
    assert facts["runs"] == [("stopped", stopped_at)]

    rest = replay(journal_url, SAMPLE)
    assert rest["bars_processed"] == TOTAL_BARS - stopped_at


@pytest.mark.slow
def test_sigkill_at_random_points_then_restart_loses_and_duplicates_nothing(
        tmp_path: Path) -> None:
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    replay(reference_url, SAMPLE)
    reference = _facts(reference_url)

    url = f"sqlite:///{tmp_path / 'killed.sqlite'}"
    rng = random.Random(20261125)
    for _ in range(3):
        notify = NotifySocket(tmp_path / "notify.sock")
        proc = _start(url, tmp_path, notify.path)
        try:
            assert notify.wait_for("READY=1", 60)
            time.sleep(rng.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            notify.close()
            (tmp_path / "notify.sock").unlink(missing_ok=True)
    proc = _start(url, tmp_path)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err

    facts = _facts(url)
    assert facts["bars"] == facts["distinct_bars"] == TOTAL_BARS
    assert facts["in_doubt"] == 0
    assert facts["orders"] == reference["orders"]
    assert facts["fills"] == reference["fills"]
