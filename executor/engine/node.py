"""The node: one trading process, from its lease to its summary. `dta run` only parses
its options, calls ``Node.run`` and prints what it returns.

In order: logging; the journal (paper may start a fresh one; shadow and live only one that
`dta db upgrade` created); the clearance for the mode; the account's lease (live, before
anything binds a port or reaches the broker); the side services; the daemon's object
graph; signals (SIGTERM/SIGINT finish the cycle in progress); start, start-up
reconciliation (live), then the scheduler live or the replay at full speed; stop and the
summary. Whatever it took, it gives back on every way out: the lease, the services and the
journal.

A refusal before trading, or an error with a documented exit code while trading, ends in
``RunAborted`` with that code; any other error (a bug) propagates with its traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from domain.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_JOURNAL, EXIT_REFUSED
from executor.exit_codes import exit_code_for, one_line
from executor.systemd import Notifier

if TYPE_CHECKING:
    from executor.daemon import RealtimeExecutor
    from executor.journal.store import Journal
    from executor.lease import AccountLease
    from executor.services import Services
    from executor.settings import Settings
    from executor.wiring import Daemon


class RunAborted(Exception):
    """The run ends with exit ``code``. ``message`` is still to be shown to the operator;
    ``None`` when the node already reported it (a failure while trading)."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or f"exit {code}")
        self.code = code
        self.message = message


def _to_stderr(message: str) -> None:
    sys.stderr.write(f"dta: {message}\n")


class Node:
    def __init__(self, settings: Settings, *, data: Path | None = None,
                 warn: Callable[[str], Any] = _to_stderr) -> None:
        self.settings = settings
        self.data = data  # a bar file to replay instead of data.path
        self.warn = warn  # one line for the operator (the CLI prefixes "dta: ")
        self.notifier = Notifier()

    def run(self) -> dict[str, Any]:
        """Lease, build, start, reconcile, run until done or stopped, stop. Returns the
        run's summary; raises ``RunAborted`` with the exit code otherwise."""
        from executor.services import start_services

        self._set_up_logging()
        journal = self._open_journal()
        self._check_clearance(journal)
        lease = self._take_lease(journal)
        services = start_services(self.settings, journal)
        daemon = self._build(journal, lease, services)
        self._catch_signals(daemon.executor)
        status = self._drive(daemon, journal, services)
        return self._finish(daemon, journal, services, status)

    # ------------------------------------------------------------------ before trading

    def _set_up_logging(self) -> None:
        from executor.data_register import warnings as register_warnings
        from executor.log_setup import configure_logging

        configure_logging(self.settings.log_level, self.settings.secret_values())
        for warning in register_warnings(self.settings):  # data leaving the VPS, declared
            self.warn(f"warning: {warning}")

    def _open_journal(self) -> Journal:
        from domain.errors import JournalError
        from executor.journal.store import Journal

        try:
            return Journal.open(self.settings.journal.url, migrate_schema=True,
                                create=self.settings.mode == "paper")
        except JournalError as exc:
            raise RunAborted(EXIT_JOURNAL, str(exc)) from None

    def _check_clearance(self, journal: Journal) -> None:
        """Shadow and live only for an account and strategy promoted that far."""
        s = self.settings
        if s.mode == "paper":
            return
        from guardrails.clearance import cleared_mode
        from guardrails.promotion import RANK

        cleared = cleared_mode(journal.clearances, s.account, s.strategy.name)
        if RANK[cleared] < RANK[s.mode]:
            journal.close()
            raise RunAborted(EXIT_REFUSED, (
                f"{s.account}/{s.strategy.name} is cleared for {cleared}, not {s.mode}: "
                f"`dta promote {s.account} --to {'shadow' if cleared == 'paper' else 'live'}`"
                " with the evidence and every sign-off first"))

    def _take_lease(self, journal: Journal) -> AccountLease | None:
        """Live only: before anything binds a port or reaches the broker."""
        if self.settings.mode != "live":
            return None
        from domain.errors import LeaseError
        from executor.lease import acquire_lease, venue_account

        try:
            return acquire_lease(self.settings.account, self.settings.journal.url,
                                 venue=venue_account(self.settings))
        except LeaseError as exc:
            journal.close()
            raise RunAborted(EXIT_REFUSED, str(exc)) from None

    def _build(self, journal: Journal, lease: AccountLease | None,
               services: Services) -> Daemon:
        from domain.errors import ConfigError, DataFormatError, LeaseError, VenueError
        from executor.wiring import build_daemon

        def give_up(message: str, code: int) -> NoReturn:
            if lease is not None:
                lease.release()
            services.close()
            journal.close()
            raise RunAborted(code, message)

        try:
            return build_daemon(self.settings, journal, data=self.data,
                                notifier=self.notifier, metrics=services.metrics, lease=lease)
        except (ConfigError, DataFormatError) as exc:
            give_up(str(exc), EXIT_CONFIG)
        except LeaseError as exc:
            give_up(str(exc), EXIT_REFUSED)
        except VenueError as exc:
            give_up(f"cannot reach the broker: {exc}", EXIT_FAILURE)
        except BaseException:
            if lease is not None:
                lease.release()
            raise

    @staticmethod
    def _catch_signals(executor: RealtimeExecutor) -> None:
        def _on_signal(signum: int, _frame: Any) -> None:
            executor.stop_requested.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

    # ------------------------------------------------------------------ trading

    def _drive(self, daemon: Daemon, journal: Journal, services: Services) -> str:
        """Start and run; the run's status. A failure with an exit code is reported and
        the run stopped as "failed" before ``RunAborted`` carries the code out."""
        from executor.heap import settle_after_start_up

        executor = daemon.executor
        status = "completed"
        try:
            executor.start()
            settle_after_start_up()  # start-up heap frozen out of the collector, malloc pinned
            if daemon.live is not None:
                self._run_live(daemon, journal)
                status = "stopped"
            else:
                self._run_replay(daemon)
                if executor.stop_requested.is_set():
                    status = "stopped"
        except Exception as exc:
            code = exit_code_for(exc)  # by type: a journal that cannot be written exits 3
            if code is None:
                raise
            self._fail(daemon, journal, services, exc, code)
        return status

    def _run_live(self, daemon: Daemon, journal: Journal) -> None:
        from executor.engine.startup import start_live

        s, executor = self.settings, daemon.executor
        if s.mode == "live":
            start_live(s, daemon, journal, warn=self.warn)
        self.notifier.ready(f"{s.mode} on {s.broker.kind}: {len(daemon.live.streams)} "
                            "stream(s)")
        sched = s.scheduler
        executor.run_scheduled(
            settle_seconds=sched.settle_delay_seconds,
            misfire_grace_seconds=sched.misfire_grace_seconds,
            server_utc_offset_hours=s.broker.mt5.server_utc_offset_hours
            if s.broker.kind == "mt5" else 0.0,
            server_clock=self._server_clock(),
            watchdog_seconds=sched.watchdog_interval_seconds)
        if executor.fatal_error is not None:
            raise executor.fatal_error

    def _server_clock(self) -> Any:
        """MT5's trade-server clock (a zone with daylight saving, or a fixed offset) for the
        bar-close schedule; ``None`` elsewhere (ccxt venues run on UTC)."""
        if self.settings.broker.kind != "mt5":
            return None
        from executor.brokers.server_time import ServerClock

        return ServerClock.from_settings(self.settings.broker.mt5)

    def _run_replay(self, daemon: Daemon) -> None:
        from executor.engine.clock import SimulatedClock

        assert daemon.loaded is not None and daemon.feed is not None
        self.notifier.ready(f"replaying {daemon.loaded.symbol} {daemon.loaded.timeframe}")
        daemon.executor.run_replay(SimulatedClock(), daemon.feed.next_close_time)

    # ------------------------------------------------------------------ the way out

    def _fail(self, daemon: Daemon, journal: Journal, services: Services,
              exc: Exception, code: int) -> NoReturn:
        self.notifier.stopping()
        self.warn(one_line(exc))
        try:
            with contextlib.suppress(Exception):  # the journal may be what failed
                daemon.executor.stop("failed")
        finally:
            if daemon.live is not None:
                daemon.live.lease.release()
            services.close()
            with contextlib.suppress(Exception):
                journal.close()
        raise RunAborted(code) from None

    def _finish(self, daemon: Daemon, journal: Journal, services: Services,
                status: str) -> dict[str, Any]:
        if daemon.live is not None:
            daemon.live.lease.release()
        self.notifier.stopping()
        summary = daemon.executor.stop(status)
        summary["journal"] = self.settings.journal.url
        summary["status"] = status
        services.close()
        journal.close()
        return summary
