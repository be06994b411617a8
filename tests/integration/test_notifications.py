"""Notifications through apprise, against a loopback receiver (``fakes.apprise_receiver``):
an approval queued during a real paper run reaches a person with a working link; a
receiver that fails is retried until it takes the message once; one that hangs never
slows the cycle; no secret reaches a message or a log line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fakes.apprise_receiver import AppriseReceiver
from support.daemon_helpers import EXAMPLE, drive, settings_for
from support.samples import write_sample_head

from executor.journal.store import Journal
from executor.notify.hooks import start_notifications
from executor.notify.notice import Notice
from executor.wiring import build_daemon

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = "http://127.0.0.1:8787"
LINK = re.compile(r"Open: (\S+)")


def _bodies_of(receiver: AppriseReceiver, kind: str) -> list[dict[str, Any]]:
    return [b for b in receiver.accepted if kind in b["title"]]


def test_an_approval_queued_in_a_paper_run_reaches_the_receiver_with_its_link(
        tmp_path: Path) -> None:
    """The acceptance test: `dta run` (paper, the example config, whose consensus queues
    low-confidence and conflicting decisions for a person) over the bundled bars, with the
    receiver as its only notification destination, given as an operator would: in the
    environment."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 3000)
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    with AppriseReceiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DTA_")}
        env.update(DTA_NOTIFICATIONS__URLS=receiver.url(),
                   DTA_NOTIFICATIONS__CONSOLE_URL=CONSOLE, DTA_LOG_LEVEL="warning")
        proc = subprocess.run(
            [sys.executable, "-m", "runbooks.cli", "run", "--mode", "paper", "--config",
             str(EXAMPLE), "--data", str(data), "--journal-url", url, "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        queued = _bodies_of(receiver, "queued")
    journal = Journal.open(url, migrate_schema=False, create=False)
    try:
        approvals = journal.approvals.all()
    finally:
        journal.close()
    assert approvals, "the example config queued nothing for a person"
    assert json.loads(proc.stdout)["approvals"]["queued"] == len(approvals)
    links = [LINK.search(b["message"]).group(1) for b in queued]  # type: ignore[union-attr]
    assert links == [f"{CONSOLE}/approvals/{a.id}" for a in approvals]
    first, request = queued[0], approvals[0]
    assert first["type"] == "warning" and "paper-1" in first["title"]
    assert f"Approval #{request.id}: {request.direction.upper()}" in first["message"]
    assert request.why in first["message"]
    # The request's own clock: a replay's 900 s time-to-live, in bar time.
    assert "Time left: 15 min on the replay clock" in first["message"]
    # The link works: the console over the same journal opens it, after the sign-in it
    # asks for, on that request.
    from fastapi.testclient import TestClient
    from support.console import console_settings, sign_in

    from executor.console.app import create_app

    path = links[0].removeprefix(CONSOLE)
    with TestClient(create_app(console_settings(url)), base_url=CONSOLE) as console:
        assert "/login" in console.get(path, follow_redirects=False).headers["location"]
        assert sign_in(console, "ann").status_code in (302, 303)
        page = console.get(path)
    assert page.status_code == 200
    assert f'id="approval-{request.id}"' in page.text and request.symbol in page.text


def _halting_replay(tmp_path: Path, receiver: AppriseReceiver, **notifications: Any,
                    ) -> tuple[dict[str, Any], float, Any]:
    """A replay whose first losing trade halts trading (a tiny daily drawdown limit), with
    the receiver as the destination; returns the summary, the replay's seconds and the
    started notifications (not yet closed)."""
    tmp_path.mkdir(exist_ok=True)
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 3000)
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    settings = settings_for(url, guardrails={"daily_drawdown_halt_pct": 0.05},
                            notifications={"urls": [receiver.url()], "backoff_seconds": 0.2,
                                           "events": ["incident"], **notifications})
    journal = Journal.open(url)
    notify = start_notifications(settings, journal)
    assert notify is not None
    try:
        daemon = build_daemon(settings, journal, data=data)
        started = time.perf_counter()
        summary = drive(daemon)
        elapsed = time.perf_counter() - started
    finally:
        journal.close()
    return summary, elapsed, notify


def test_an_incident_is_retried_until_the_receiver_takes_it_once(tmp_path: Path) -> None:
    with AppriseReceiver(failures=2, delay=0.3) as receiver:
        summary, _elapsed, notify = _halting_replay(tmp_path, receiver)
        notify.close(timeout=10)
    assert summary["bars_processed"] == 3000
    assert len(receiver.posts) == 3 and len(receiver.accepted) == 1
    assert notify.sender.delivered == 1 and notify.sender.failed == 0
    taken = receiver.accepted[0]
    assert "halted:daily_drawdown" in taken["title"] and "paper-1" in taken["title"]
    assert taken["type"] == "failure"  # critical


def test_a_hanging_receiver_does_not_slow_the_replay(tmp_path: Path) -> None:
    """The same replay against a receiver that accepts at once and one that never
    answers: the hanging one costs the worker its timeouts, the cycle nothing (a generous
    functional bound: within 5 s of the quick one, while the hanging deliveries alone
    would take 4 x 2 s plus backoff)."""
    with AppriseReceiver() as quick:
        _s, quick_seconds, notify = _halting_replay(tmp_path / "a", quick)
        notify.close(timeout=10)
    assert len(quick.accepted) == 1
    with AppriseReceiver(hang=True) as stuck:
        summary, stuck_seconds, notify = _halting_replay(
            tmp_path / "b", stuck, timeout_seconds=2.0, attempts=4)
        t = time.perf_counter()
        notify.sender.send(Notice("incident", "critical", "[DTA CRITICAL] t", "hand-over"))
        handed_over = time.perf_counter() - t
        closing = time.perf_counter()
        notify.close(timeout=1.0)
        closed_in = time.perf_counter() - closing
    assert summary["bars_processed"] == 3000 and stuck.posts  # it was reached, and hung
    assert stuck_seconds < quick_seconds + 5.0, (stuck_seconds, quick_seconds)
    assert handed_over < 0.5
    assert closed_in < 5.0  # stopping the daemon does not wait out a hung receiver
