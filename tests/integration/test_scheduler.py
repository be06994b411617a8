"""Wall-clock scheduling: bar-close alignment, job options, and a real scheduler run."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support.builders import a_bar
from support.daemon_helpers import settings_for

from domain import Bar
from executor.brokers.paper import PaperBroker
from executor.daemon import RealtimeExecutor
from executor.feeds.validator import BarValidator
from executor.journal.store import Journal
from executor.scheduler import bar_close_trigger, build_scheduler
from executor.systemd import Notifier
from executor.wiring import component_factory


def test_trigger_fires_at_bar_close_plus_settle() -> None:
    trig = bar_close_trigger("M15", 2.5)
    now = datetime(2024, 3, 5, 10, 7, 12, tzinfo=UTC)
    fire = trig.get_next_fire_time(None, now)
    assert fire == datetime(2024, 3, 5, 10, 15, 2, 500000, tzinfo=UTC)
    h1 = bar_close_trigger("1h", 0).get_next_fire_time(None, now)
    assert h1 == datetime(2024, 3, 5, 11, 0, tzinfo=UTC)
    # H4 and D1 bars open on broker server-time boundaries (UTC+2 here).
    d1 = bar_close_trigger("D1", 1, server_utc_offset_hours=2).get_next_fire_time(None, now)
    assert d1 == datetime(2024, 3, 5, 22, 0, 1, tzinfo=UTC)


def test_job_options_one_instance_coalesced_with_grace() -> None:
    sched = build_scheduler(lambda: None, ["M15", "H1", "M15"], settle_seconds=2,
                            misfire_grace_seconds=45, blocking=False)
    jobs = {j.id: j for j in sched.get_jobs()}
    assert set(jobs) == {"cycle-M15", "cycle-H1"}
    for job in jobs.values():
        assert job.max_instances == 1 and job.coalesce is True
        assert job.misfire_grace_time == 45


class ClockFeed:
    """A live-like feed of one-second bars: a bar is available once its second has ended."""

    def __init__(self, start: datetime) -> None:
        self.start = start

    def closed_bars(self, symbol: str, timeframe: str, since: datetime | None,
                    now: datetime) -> list[Bar]:
        first = since + timedelta(seconds=1) if since else self.start
        out = []
        t = first
        while t + timedelta(seconds=1) <= now:
            i = int((t - self.start).total_seconds())
            price = 1.1 + 0.001 * ((i % 7) - 3)
            out.append(a_bar(symbol=symbol, timeframe=timeframe, time=t, open=price,
                             high=price + 0.0005, low=price - 0.0005, close=price + 0.0001,
                             volume=10, spread=0.0001))
            t += timedelta(seconds=1)
        return out


def test_scheduled_daemon_runs_each_bar_once_and_stops_cleanly(sqlite_url: str,
                                                              tmp_path: Path) -> None:
    settings = settings_for(sqlite_url)
    journal = Journal.open(sqlite_url)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    notify_path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(0.1)
    params = dict(settings.parameter_set().values)
    params["strategy"] = {"name": "swing_breakout", "params": {},
                          "snapshot": {"swing_length": 2}}
    executor = RealtimeExecutor(
        mode="paper", account="acct", journal=journal, feed=ClockFeed(start),
        streams=[("EURUSD", "S1")], broker=PaperBroker(),
        components=component_factory(settings, journal), settings_params=params,
        validator=BarValidator(), settings_hash=settings.content_hash,
        notifier=Notifier(str(notify_path), watchdog_usec=200_000))
    executor.start()
    runner = threading.Thread(target=executor.run_scheduled,
                              kwargs={"settle_seconds": 0.05, "misfire_grace_seconds": 5,
                                      "watchdog_seconds": 0.2})
    runner.start()
    time.sleep(3.2)
    executor.stop_requested.set()
    runner.join(timeout=10)
    assert not runner.is_alive()
    summary = executor.stop()
    messages = []
    while True:
        try:
            messages.append(sock.recv(100).decode())
        except TimeoutError:
            break
    sock.close()
    journal.close()
    # 5 backlog bars on the first tick, then one per second: every bar once, in order.
    assert summary["bars_processed"] >= 7
    assert summary["bars_rejected"] == {}
    assert executor.stats.cycles >= 3
    assert "WATCHDOG=1" in messages
    j = Journal.open(sqlite_url)
    assert j.queries.count_duplicate_bars() == 0
    j.close()


def test_housekeeping_job_runs_between_bar_closes() -> None:
    sched = build_scheduler(lambda: None, ["M1"], settle_seconds=2, misfire_grace_seconds=45,
                            blocking=False, housekeeping=lambda: None)
    job = {j.id: j for j in sched.get_jobs()}["housekeeping"]
    assert job.max_instances == 1 and job.coalesce is True
    now = datetime(2024, 3, 5, 10, 7, 12, tzinfo=UTC)
    fires = [job.trigger.get_next_fire_time(None, now + timedelta(seconds=k))
             for k in range(3)]
    # half a second off the cycles (which fire at whole seconds + the 2 s settle delay)
    assert [f.microsecond for f in fires] == [500000] * 3
    assert fires[1] - fires[0] == timedelta(seconds=1)


def _paper_executor(url: str, data: Path) -> tuple[RealtimeExecutor, Journal, Any]:
    from executor.wiring import build_daemon

    settings = settings_for(url)
    journal = Journal.open(url)
    daemon = build_daemon(settings, journal, data=data)
    daemon.executor.start()
    return daemon.executor, journal, daemon


def test_housekeeping_takes_polls_and_checkpoints_off_the_cycle(tmp_path: Path) -> None:
    from support.samples import write_sample_head

    from guardrails.params import activate as activate_version
    from guardrails.params import propose

    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    db = tmp_path / "j.sqlite"
    executor, journal, daemon = _paper_executor(
        url, write_sample_head(tmp_path / "EURUSD_M15.csv", 400))
    try:
        executor.hand_over_housekeeping()  # as run_scheduled does
        clock = daemon.feed

        def cycle() -> None:
            t = clock.next_close_time()
            assert t is not None
            executor.run_cycle(t)

        for _ in range(5):
            cycle()
        executor.housekeeping()
        # In WAL mode only a checkpoint writes the database file itself.
        written = db.stat().st_mtime_ns
        for k in range(30):  # commits land in the WAL only: SQLite checkpoints nothing,
            cycle()          # not even past its own 1,000-page threshold (~6 MB here)
            for _ in range(50):
                journal.runs.record_rejection(None, "EURUSD", "M15", "test", f"{k}" + "x" * 4000)
            journal.commit()
        assert db.stat().st_mtime_ns == written

        # An operator activates another version from another process.
        other = Journal.open(url)
        store = other.params
        content = dict(executor.c.params.values)
        content["order_volume"] = 0.07
        v = propose(store, content, author="ops", reason="test")
        activate_version(store, v.version, operator="ops", reason="test")
        other.close()
        cycle()  # polls were fresh (housekeeping ran < poll_seconds ago): not seen yet
        assert executor.c.version != v.version
        executor.housekeeping()  # between bar closes: picked up, and the WAL checkpointed
        assert executor.c.version == v.version
        assert db.stat().st_mtime_ns > written
    finally:
        executor.stop()
        journal.close()


def test_without_housekeeping_the_cycle_bounds_the_wal(tmp_path: Path) -> None:
    from support.samples import write_sample_head

    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    executor, journal, daemon = _paper_executor(
        url, write_sample_head(tmp_path / "EURUSD_M15.csv", 400))
    try:
        journal.manual_checkpoints()
        written = (tmp_path / "j.sqlite").stat().st_mtime_ns
        for _ in range(80):
            t = daemon.feed.next_close_time()
            assert t is not None
            executor.run_cycle(t)
            journal.commit()
        assert not journal.checkpoint_due()  # the cycle checkpointed after 64 commits
        assert (tmp_path / "j.sqlite").stat().st_mtime_ns > written
    finally:
        executor.stop()
        journal.close()
