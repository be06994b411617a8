"""Journal work that need not wait for a bar: operator changes picked up (parameter
versions, provider toggles, approvals), rows other threads queued, the SQLite WAL
checkpoint, and the heap handed back to the system once a market hour.

Live, the scheduler runs it every second between bar closes (``HOUSEKEEPING_SECONDS``), so
the cycle at bar close finds it all done and goes straight to the bars: neither the polls
nor a checkpoint sit between a bar and its order (benchmarks/bench_latency.py). Without
that job (replays, tests) the cycle itself polls, at most once a second of wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from domain.errors import JournalError
from executor.components import Components
from executor.engine.approvals import ApprovalQueue
from executor.engine.clock import Clock
from executor.engine.stats import RunStats
from executor.heap import release_free_heap
from executor.journal.store import Journal
from executor.metrics import Metrics
from guardrails.params import active_version

log = structlog.get_logger("dta.executor")

# Between bar closes: journal polls and the WAL checkpoint (``RealtimeExecutor.housekeeping``).
HOUSEKEEPING_SECONDS = 1.0

_HOUR = timedelta(hours=1)


class Housekeeper:
    def __init__(self, *, journal: Journal, stats: RunStats, metrics: Metrics | None,
                 approvals: ApprovalQueue, queued_rows: list[Callable[[], object]],
                 apply: Callable[[int, dict[str, Any]], None]) -> None:
        self.journal = journal
        self.stats = stats
        self.metrics = metrics
        self.approvals = approvals
        # Journal rows other threads queued (late answers, breaker transitions): written
        # here between bars and at stop, as well as at the next cycle, so none waits for
        # the next bar close or is lost with a run's last cycle.
        self.queued_rows = queued_rows
        self.apply = apply  # runs another parameter version from the next decision on
        self.c: Components  # set by the executor with every parameter version
        self.param_event_id = -1
        self.provider_event_id = -1
        self.param_checked = 0.0  # when the journal was last polled (monotonic seconds)
        self.poll_seconds = 1.0  # see ``RealtimeExecutor.poll_seconds``
        self.heap_hour: datetime | None = None

    def run(self, clock: Clock) -> None:
        """One round between bar closes: every poll is due, whatever its last time."""
        self.param_checked = self.approvals.checked = 0.0
        self.follow_param_changes()
        self.approvals.service(clock.now())
        self.write_queued_rows()
        self.journal.commit()
        self.journal.checkpoint()

    def hand_over(self) -> None:
        """WAL checkpoints wait for housekeeping instead of landing on a commit."""
        self.journal.manual_checkpoints()

    def write_queued_rows(self) -> None:
        for write in self.queued_rows:
            try:
                write()
            except (JournalError, SQLAlchemyError):
                raise  # a journal error stops the daemon, as in a cycle
            except Exception as exc:
                self.stats.errors["queued_rows_error"] += 1
                log.error("queued_rows_failed", error=repr(exc))

    def follow_param_changes(self) -> None:
        """Pick up an operator's `dta params activate|rollback` or an approval's weight
        update. Checked at most once a second of wall time: cheap in replays, prompt live."""
        mono = time.monotonic()
        if mono - self.param_checked < self.poll_seconds:
            return
        self.param_checked = mono
        # Read every round when someone follows it, decisions or not: a change another
        # process made reaches the metrics and the state's listeners (notifications)
        # within a second. Nobody following, nothing read.
        if self.metrics is not None or self.journal.trading_state.listeners:
            state = self.journal.trading_state.trading_state().state
            if self.metrics is not None:
                self.metrics.set_state(state)
        latest = self.journal.params.latest_param_event_id()
        providers = self.journal.provider_calls.latest_provider_event_id()
        if latest == self.param_event_id and providers == self.provider_event_id:
            return
        rebuild = providers != self.provider_event_id  # an operator (dis|en)abled one
        self.param_event_id, self.provider_event_id = latest, providers
        active = active_version(self.journal.params)
        if active is not None and (rebuild or active.version != self.c.version):
            self.apply(active.version, active.content)

    def after_cycle(self, now: datetime) -> None:
        """What a cycle leaves to do once its orders went out."""
        if self.journal.checkpoint_due():  # no housekeeping ran: bound the WAL here
            self.journal.checkpoint()
        hour = self.heap_hour
        if hour is None or not hour <= now < hour + _HOUR:  # a new market hour:
            self.heap_hour = now.replace(minute=0, second=0, microsecond=0)
            release_free_heap()                              # return the free heap
