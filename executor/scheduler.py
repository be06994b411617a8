"""Wall-clock scheduling of the live cycle with APScheduler 3.

One job per timeframe, firing at every bar close plus a settle delay (brokers publish the
closed bar a moment after the boundary). ``max_instances=1`` so a slow cycle is never
overlapped by the next, ``coalesce`` so a backlog after a stall runs once, not N times,
and a misfire grace so a late wake-up still runs rather than silently skipping a bar. The
single-worker executor serialises all cycles: the journal has one writer, and a hung cycle
also stops the watchdog job, so systemd restarts the process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import timeframe_seconds
from executor.brokers.server_time import ServerClock

# A Monday at 00:00 UTC: weekly and daily boundaries line up with it.
_ANCHOR = datetime(2001, 1, 1, tzinfo=UTC)


def bar_close_trigger(timeframe: str, settle_seconds: float,
                      server_utc_offset_hours: float = 0.0,
                      server_clock: ServerClock | None = None) -> Any:
    """A trigger firing at each close of ``timeframe`` bars plus ``settle_seconds``.

    Bars of H4 and longer open on broker server-time boundaries, so the anchor moves by the
    server's UTC offset; with a ``server_clock`` whose offset changes with daylight saving
    they close on the server's wall-clock boundaries, which move in UTC twice a year
    (``ServerBoundaryTrigger``).
    """
    from apscheduler.triggers.interval import IntervalTrigger

    seconds = timeframe_seconds(timeframe)
    if seconds >= 4 * 3600 and server_clock is not None and server_clock.zone is not None:
        return _as_trigger(ServerBoundaryTrigger(seconds, settle_seconds, server_clock))
    anchor = _ANCHOR
    if seconds >= 4 * 3600:
        offset = (server_clock.fixed.total_seconds() / 3600 if server_clock is not None
                  else server_utc_offset_hours)
        anchor -= timedelta(hours=offset)
    return IntervalTrigger(seconds=seconds, start_date=anchor + timedelta(seconds=settle_seconds),
                           timezone=UTC)


class ServerBoundaryTrigger:
    """Fires ``settle`` seconds after each multiple of ``seconds`` on the server's wall
    clock (counted from Monday 2001-01-01 00:00 server time, so D1 closes at server
    midnight and W1 on Monday), whatever the server's offset from UTC is that day."""

    def __init__(self, seconds: int, settle: float, clock: ServerClock) -> None:
        self.seconds = seconds
        self.settle = timedelta(seconds=settle)
        self.clock = clock
        self.anchor = _ANCHOR.timestamp()  # as server wall-clock epoch seconds

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime:
        after = now if previous_fire_time is None else max(now, previous_fire_time)
        wall = self.clock.to_server_epoch(after - self.settle)
        n = math.floor((wall - self.anchor) / self.seconds) + 1
        while True:
            fire = self.clock.to_utc(self.anchor + n * self.seconds) + self.settle
            if fire > after or (previous_fire_time is None and fire >= now):
                return fire
            n += 1



def _as_trigger(boundaries: ServerBoundaryTrigger) -> Any:
    """APScheduler takes only its own trigger classes (imported here, not at module load,
    so `dta --help` stays fast)."""
    from apscheduler.triggers.base import BaseTrigger

    class _Trigger(BaseTrigger):  # type: ignore[misc]
        def get_next_fire_time(self, previous_fire_time: datetime | None,
                               now: datetime) -> datetime:
            return boundaries.get_next_fire_time(previous_fire_time, now)

        def __str__(self) -> str:
            return f"server boundaries every {boundaries.seconds}s"

    return _Trigger()


def build_scheduler(
    cycle: Callable[[], Any],
    timeframes: Iterable[str],
    *,
    settle_seconds: float,
    misfire_grace_seconds: int,
    server_utc_offset_hours: float = 0.0,
    server_clock: ServerClock | None = None,
    watchdog: Callable[[], Any] | None = None,
    watchdog_seconds: float = 10.0,
    blocking: bool = True,
    housekeeping: Callable[[], Any] | None = None,
    housekeeping_seconds: float = 1.0,
) -> Any:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=1)},
                    job_defaults={"max_instances": 1, "coalesce": True,
                                  "misfire_grace_time": misfire_grace_seconds})
    for tf in sorted(set(timeframes)):
        scheduler.add_job(cycle, bar_close_trigger(tf, settle_seconds, server_utc_offset_hours,
                                                   server_clock),
                          id=f"cycle-{tf}", name=f"bar close {tf}", max_instances=1,
                          coalesce=True, misfire_grace_time=misfire_grace_seconds)
    if housekeeping is not None:
        # Half a period off the bar-close ticks (which land on whole seconds of the settle
        # delay), so housekeeping is long done when a bar closes and never delays it.
        from apscheduler.triggers.interval import IntervalTrigger as Every

        phase = (settle_seconds + housekeeping_seconds / 2) % housekeeping_seconds
        scheduler.add_job(housekeeping, Every(seconds=housekeeping_seconds,
                                              start_date=_ANCHOR + timedelta(seconds=phase),
                                              timezone=UTC),
                          id="housekeeping", name="journal polls and checkpoint",
                          max_instances=1, coalesce=True, misfire_grace_time=1)
    if watchdog is not None:
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler.add_job(watchdog, IntervalTrigger(seconds=watchdog_seconds, timezone=UTC),
                          id="watchdog", name="systemd watchdog", max_instances=1,
                          coalesce=True, misfire_grace_time=misfire_grace_seconds)
    return scheduler
