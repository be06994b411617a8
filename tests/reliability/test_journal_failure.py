"""A journal that stops accepting writes halts trading: nothing is sent unjournaled, the
alert goes out of band, and `dta run` exits 3.

Two failures, each on SQLite and (with DTA_TEST_DATABASE_URL) PostgreSQL, injected
mid-run into the journal the daemon is writing:

- **read-only**: SQLite ``PRAGMA query_only``; PostgreSQL ``default_transaction_read_only``
  on the daemon's session;
- **full disk**: SQLite ``PRAGMA max_page_count`` clamped to the current size, so the next
  page the journal needs fails with SQLITE_FULL ("database or disk is full", the code a
  full file system gives); PostgreSQL: a trigger on the orders table raising SQLSTATE
  53100 ``disk_full``, as the server does when a relation cannot extend its file.

And the same end to end: `dta run` as a real process whose file-size limit
(``RLIMIT_FSIZE``) makes the kernel refuse the journal's writes past a size, with a
webhook listening for the alert.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes.apprise_receiver import AppriseReceiver
from sqlalchemy import create_engine, text
from support.daemon_helpers import EXAMPLE, settings_for
from support.samples import SAMPLE, write_sample_head

from domain import Order
from domain.errors import JournalError
from executor.engine.clock import SimulatedClock
from executor.journal.store import Journal
from executor.wiring import build_daemon

ROOT = Path(__file__).resolve().parent.parent.parent
FREEZE_AT_CYCLE = 3000  # of 6000 bars: the journal fails with orders behind and ahead
Freeze = Callable[[Journal, str], None]


@dataclass
class FailedRun:
    error: JournalError
    sent: list[str]  # client order ids, in the order the broker saw them
    sent_before_freeze: int
    alerts: list[tuple[Any, ...]]  # what the incident listeners (the webhook) received
    journaled: set[str]  # order ids a fresh reader finds in the journal afterwards


def _run_until_the_journal_fails(url: str, tmp_path: Path, freeze: Freeze) -> FailedRun:
    """Replay 6,000 real bars through the daemon (the wiring of `dta run`), calling
    ``freeze`` on its journal at cycle 3,000; the replay must stop with a JournalError."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 6000)
    journal = Journal.open(url)
    alerts: list[tuple[Any, ...]] = []
    journal.incidents.listeners.append(lambda *a: alerts.append(a))
    daemon = build_daemon(settings_for(url), journal, data=data)
    executor, feed = daemon.executor, daemon.feed
    assert feed is not None
    sent: list[str] = []
    real_submit = executor.broker.submit

    def counting_submit(order: Order) -> Order:
        sent.append(order.client_order_id)
        return real_submit(order)

    executor.broker.submit = counting_submit  # type: ignore[method-assign]
    executor.start()
    cycles = 0
    frozen_at: list[int] = []

    def next_close() -> Any:
        nonlocal cycles
        cycles += 1
        if cycles == FREEZE_AT_CYCLE:
            journal.commit()
            freeze(journal, url)
            frozen_at.append(len(sent))
        return feed.next_close_time()

    with pytest.raises(JournalError) as failed:
        executor.run_replay(SimulatedClock(), next_close)
    assert frozen_at, "the replay ended before the journal was made to fail"
    assert executor.fatal_error is failed.value and executor.stop_requested.is_set()
    journal.rollback()
    journal.close()
    reader = Journal.open(url)
    try:
        journaled = {o.client_order_id for o in reader.orders.all()}
    finally:
        reader.close()
    return FailedRun(failed.value, sent, frozen_at[0], alerts, journaled)


def _assert_halted_without_unjournaled_orders(run: FailedRun) -> None:
    assert run.alerts and run.alerts[-1][1:3] == ("critical", "halted:journal_unwritable")
    assert "journal unwritable, trading stopped" in run.alerts[-1][3]
    assert run.sent_before_freeze > 0  # orders went out before: the failure is mid-run
    assert set(run.sent) <= run.journaled  # everything the broker saw was journaled first


# ----------------------------------------------------------------------------- read-only


def _read_only(journal: Journal, url: str) -> None:
    conn = journal.uow.conn()
    if url.startswith("sqlite"):
        conn.exec_driver_sql("PRAGMA query_only = 1")
        return
    # The daemon's own session: every later transaction of it starts read-only.
    conn.exec_driver_sql("SET SESSION default_transaction_read_only = on")
    journal.commit()


def test_read_only_journal_mid_run_stops_trading_without_unjournaled_orders(
        journal_url: str, tmp_path: Path) -> None:
    run = _run_until_the_journal_fails(journal_url, tmp_path, _read_only)
    _assert_halted_without_unjournaled_orders(run)
    assert len(run.sent) == run.sent_before_freeze  # the very next write failed
    assert ("readonly" in str(run.error) or "read-only" in str(run.error)), run.error


# ----------------------------------------------------------------------------- full disk

_PG_DISK_FULL = """
CREATE FUNCTION dta_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'could not extend relation %: No space left on device', TG_TABLE_NAME
    USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
END $$
"""


def _disk_full(journal: Journal, url: str) -> None:
    if url.startswith("sqlite"):
        conn = journal.uow.conn()
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        # The file may not grow by a single page any more: the next write that needs a new
        # page fails with SQLITE_FULL, as on a full file system.
        assert conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}").scalar_one() == pages
        return
    # From another session (the disk filling up is not the daemon's doing): the orders
    # table's file can no longer grow. The next order row fails with SQLSTATE 53100, as on
    # a full disk when that relation needs a new block: the write the money rides on.
    engine = create_engine(url)
    try:
        with engine.begin() as admin:
            admin.execute(text(_PG_DISK_FULL))
            admin.execute(text("CREATE TRIGGER dta_test_disk_full BEFORE INSERT ON orders "
                               "FOR EACH ROW EXECUTE FUNCTION dta_test_disk_full()"))
    finally:
        engine.dispose()


def test_full_disk_mid_run_stops_trading_without_unjournaled_orders(
        journal_url: str, tmp_path: Path) -> None:
    run = _run_until_the_journal_fails(journal_url, tmp_path, _disk_full)
    _assert_halted_without_unjournaled_orders(run)
    if journal_url.startswith("sqlite"):
        # The file still takes rows into the pages it has, so orders may go out (journaled)
        # until a write needs a new page.
        assert "database or disk is full" in str(run.error), run.error  # SQLITE_FULL
    else:
        # The order whose row could not be written never reached the broker.
        assert "DiskFull" in str(run.error) and "relation orders" in str(run.error)
        assert len(run.sent) == run.sent_before_freeze


# ----------------------------------------------------------------------------- `dta run`

FSIZE_LIMIT = 1_500_000  # bytes per file: the WAL reaches it a few hundred bars in


def _limit_file_size() -> None:
    """In the child before exec: the kernel refuses writes past FSIZE_LIMIT (EFBIG) and,
    with SIGXFSZ ignored, the process lives on to handle it (CPython ignores it too)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def _events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


@pytest.mark.slow
def test_dta_run_exits_3_with_a_critical_alert_when_the_os_refuses_journal_writes(
        tmp_path: Path) -> None:
    hook = AppriseReceiver()
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTA_")}
    # info: the router logs `order_submitted` for every order the broker answered, so the
    # broker's view survives the process.
    env.update(DTA_LOG_LEVEL="info", DTA_ALERT_WEBHOOK_URL=hook.url("http"))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "runbooks.cli", "run", "--mode", "paper", "--config",
             str(EXAMPLE), "--data", str(SAMPLE), "--journal-url", url, "--json"],
            cwd=ROOT, env=env, preexec_fn=_limit_file_size, capture_output=True, text=True,
            timeout=120)
    finally:
        hook.close()
    assert proc.returncode == 3, proc.stderr[-2000:]  # journal unavailable
    assert proc.stdout == ""  # no summary: the run did not complete
    # EFBIG from the kernel is SQLITE_IOERR_WRITE; ENOSPC (a full disk) is SQLITE_FULL.
    assert "dta: journal commit failed" in proc.stderr
    assert any(m in proc.stderr for m in ("disk I/O error", "database or disk is full"))

    events = _events(proc.stderr)
    names = [e.get("event") for e in events]
    assert names.count("journal_unwritable") == 1
    failed_at = names.index("journal_unwritable")
    assert events[failed_at]["level"] == "critical"
    submitted = [e["client_order_id"] for e in events if e.get("event") == "order_submitted"]
    assert submitted, "no order went out before the journal failed: not mid-run"
    assert "order_submitted" not in names[failed_at:]  # nothing sent after the failure
    # The out-of-band alert reached the webhook (the legacy alert_webhook_url, now one
    # more apprise destination) before the process exited.
    titles = [(b["type"], b["title"]) for b in hook.accepted]
    assert ("failure", "[DTA CRITICAL] paper-1: halted:journal_unwritable") in titles, titles

    reader = Journal.open(url, migrate_schema=False)
    try:
        journaled = {o.client_order_id: o.state.value for o in reader.orders.all()}
        processed = reader.queries.bar_counts()["processed"]["EURUSD/M15"]["count"]
    finally:
        reader.close()
    # A paper order and its simulated fill commit with the cycle's batch, together or not
    # at all (the simulator lives and dies with the process and is rebuilt from the
    # journal). So every journaled order was submitted, and the orders the broker saw that
    # the journal lacks are exactly the newest ones: the batch whose commit failed. None of
    # them is journaled half-way, and none was sent after the failure (above).
    assert set(journaled) <= set(submitted)
    lost = [c for c in submitted if c not in journaled]
    assert submitted[len(submitted) - len(lost):] == lost, (lost, submitted)
    assert all(state != "new" for state in journaled.values())
    assert 0 < processed < 24424
