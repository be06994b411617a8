"""Wall-clock scheduling: bar-close alignment, job options, and a real scheduler run."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon_helpers import settings_for

from executor.brokers.paper import PaperBroker
from executor.daemon import RealtimeExecutor
from executor.feeds.validator import BarValidator
from executor.journal.store import Journal
from executor.scheduler import bar_close_trigger, build_scheduler
from executor.systemd import Notifier
from executor.wiring import component_factory
from strategies.domain import Bar


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
            out.append(Bar(symbol, timeframe, t, price, price + 0.0005, price - 0.0005,
                           price + 0.0001, 10, 0.0001))
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
    assert j.count_duplicate_bars() == 0
    j.close()
