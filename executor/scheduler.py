"""Wall-clock scheduling of the live cycle with APScheduler 3.

One job per timeframe, firing at every bar close plus a settle delay (brokers publish the
closed bar a moment after the boundary). ``max_instances=1`` so a slow cycle is never
overlapped by the next, ``coalesce`` so a backlog after a stall runs once, not N times,
and a misfire grace so a late wake-up still runs rather than silently skipping a bar. The
single-worker executor serialises all cycles: the journal has one writer, and a hung cycle
also stops the watchdog job, so systemd restarts the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from strategies.domain import timeframe_seconds

# A Monday at 00:00 UTC: weekly and daily boundaries line up with it.
_ANCHOR = datetime(2001, 1, 1, tzinfo=UTC)


def _first_tick(timeframe: str, settle_seconds: float,
                server_utc_offset_hours: float) -> tuple[datetime, int]:
    """One bar-close tick (close + settle) of ``timeframe`` and the period in seconds. Bars
    of H4 and longer open on broker server-time boundaries, so the anchor moves by the
    server's UTC offset."""
    seconds = timeframe_seconds(timeframe)
    anchor = _ANCHOR
    if seconds >= 4 * 3600:
        anchor -= timedelta(hours=server_utc_offset_hours)
    return anchor + timedelta(seconds=settle_seconds), seconds


def bar_close_trigger(timeframe: str, settle_seconds: float,
                      server_utc_offset_hours: float = 0.0, *,
                      lead_seconds: float = 0.0) -> Any:
    """An IntervalTrigger firing at each close of ``timeframe`` bars plus ``settle_seconds``,
    ``lead_seconds`` early (the job then spins up to the tick: ``spin_to_tick``)."""
    from apscheduler.triggers.interval import IntervalTrigger

    first, seconds = _first_tick(timeframe, settle_seconds, server_utc_offset_hours)
    return IntervalTrigger(seconds=seconds, start_date=first - timedelta(seconds=lead_seconds),
                           timezone=UTC)


def nearest_tick(timeframe: str, settle_seconds: float, at: datetime,
                 server_utc_offset_hours: float = 0.0) -> datetime:
    """The bar-close tick (close + settle) of ``timeframe`` nearest to ``at``."""
    first, seconds = _first_tick(timeframe, settle_seconds, server_utc_offset_hours)
    k = round((at - first).total_seconds() / seconds)
    return first + timedelta(seconds=k * seconds)


def spin_until(deadline: float, clock: Callable[[], float] = time.time) -> None:
    """Busy-wait until ``clock()`` reaches ``deadline``.

    Why burn a core: on a VM a vCPU that slept is slow to come back. A cycle started right
    after minutes of idle pays for it twice, in the CPU work (cold caches, a halted vCPU)
    and in the first fsync (its completion interrupt wakes a halted vCPU). Spinning for the
    last few milliseconds before a bar close, which the scheduler knows in advance, keeps
    the vCPU running into the cycle (benchmarks/bench_latency.py measures both).
    """
    while clock() < deadline:
        pass


def spin_to_tick(timeframe: str, settle_seconds: float, spin_seconds: float,
                 server_utc_offset_hours: float = 0.0,
                 clock: Callable[[], float] = time.time) -> float:
    """Called by a cycle job fired ``spin_seconds`` before its tick: spin up to the tick.
    A job that fires late (at or after the tick) does not wait; neither does one far from
    any tick (a misfire run). Returns the seconds spun."""
    now = clock()
    tick = nearest_tick(timeframe, settle_seconds,
                        datetime.fromtimestamp(now + spin_seconds, UTC),
                        server_utc_offset_hours).timestamp()
    wait = tick - now
    if not 0 < wait <= 2 * spin_seconds:
        return 0.0
    spin_until(tick, clock)
    return wait


def build_scheduler(
    cycle: Callable[[], Any],
    timeframes: Iterable[str],
    *,
    settle_seconds: float,
    misfire_grace_seconds: int,
    server_utc_offset_hours: float = 0.0,
    watchdog: Callable[[], Any] | None = None,
    watchdog_seconds: float = 10.0,
    blocking: bool = True,
    housekeeping: Callable[[], Any] | None = None,
    housekeeping_seconds: float = 1.0,
    spin_seconds: float = 0.0,
) -> Any:
    """``spin_seconds``: fire each cycle job that much before its bar-close tick and spin
    up to the tick (``spin_until``); 0 fires at the tick."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=1)},
                    job_defaults={"max_instances": 1, "coalesce": True,
                                  "misfire_grace_time": misfire_grace_seconds})
    for tf in sorted(set(timeframes)):
        job = cycle if not spin_seconds else _spinning(
            cycle, tf, settle_seconds, spin_seconds, server_utc_offset_hours)
        scheduler.add_job(job, bar_close_trigger(tf, settle_seconds, server_utc_offset_hours,
                                                 lead_seconds=spin_seconds),
                          id=f"cycle-{tf}", name=f"bar close {tf}", max_instances=1,
                          coalesce=True, misfire_grace_time=misfire_grace_seconds)
    if housekeeping is not None:
        # Half a period off the bar-close ticks (which land on whole seconds of the settle
        # delay): a bar never waits behind housekeeping, which takes milliseconds.
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


def _spinning(cycle: Callable[[], Any], timeframe: str, settle_seconds: float,
              spin_seconds: float, server_utc_offset_hours: float) -> Callable[[], Any]:
    def job() -> Any:
        spin_to_tick(timeframe, settle_seconds, spin_seconds, server_utc_offset_hours)
        return cycle()

    return job
