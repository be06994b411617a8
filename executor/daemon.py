"""RealtimeExecutor: one cycle, end to end, for live scheduling and replay alike.

    feed.closed_bars -> BarValidator -> broker fills -> SnapshotBuilder.update
      -> TradeLogic.on_bar -> Ensemble.evaluate -> Guardrails.check -> OrderRouter.submit

Replay is not a second engine: it drives ``run_cycle`` with a simulated clock, one bar
close at a time, exactly as the scheduler drives it with the wall clock.

This class composes the engine's parts (``executor.engine``), one per job: the bar cycle,
the decider, the approval queue, the triggers, housekeeping, the order router and tracker,
run statistics. What it keeps for itself is what spans them: start and stop, the parameter
version every part runs with, and halting at once when the journal or the lease is gone.
The process around it (lease, signals, reconciliation, `dta run`'s exit code) is the
node's (``executor.engine.node``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError

from domain import Fill, MarketSnapshot, OrderSide
from domain.errors import JournalError
from executor.brokers.base import Broker
from executor.components import ComponentFactory, Components
from executor.engine.approvals import ApprovalQueue
from executor.engine.clock import Clock, SimulatedClock, WallClock
from executor.engine.cycle import BarCycle
from executor.engine.decider import Decider
from executor.engine.housekeeping import HOUSEKEEPING_SECONDS, Housekeeper
from executor.engine.protection import ProtectiveOrders, separate_protection
from executor.engine.router import OrderRouter
from executor.engine.stats import RunStats, run_summary
from executor.engine.tracker import OrderTracker
from executor.engine.triggers import Triggers
from executor.feeds.base import Feed
from executor.feeds.validator import BarValidator
from executor.journal.store import Journal
from executor.metrics import Metrics
from executor.shadow import EaSource
from executor.systemd import Notifier
from guardrails.params import ParamVersion, ensure_registered

__all__ = ["RealtimeExecutor"]

log = structlog.get_logger("dta.executor")

Stream = tuple[str, str]  # (symbol, timeframe)
_T = TypeVar("_T")


def _close(resource: object) -> None:
    """Release what a component holds (the ensemble's thread pool and SDK clients)."""
    close = getattr(resource, "close", None)
    if callable(close):
        close()


class RealtimeExecutor:
    # A live feed is watched for silence (``Triggers.watch``); a replay's clock only moves
    # to the next bar, so its feed cannot fall silent.
    watch_feed: bool
    # Live: the account's lease (``executor.lease.AccountLease``). Checked at the start of
    # every cycle and every housekeeping second: a lease lost (its PostgreSQL session died,
    # so the advisory lock is gone and another daemon may take the account) stops trading
    # at once (``_lease_lost``).
    lease: Any
    # Called at the start of every cycle with the cycle's time (live: the unknown-order
    # resolver). An exception is journaled as an error, never skips the cycle.
    before_cycle: list[Callable[[datetime], object]]
    # Journal rows other threads queued (late answers, breaker transitions): written by
    # housekeeping between bars and by ``stop``, as well as at the next cycle.
    queued_rows: list[Callable[[], object]]
    c: Components  # the active parameter version's objects (``_apply``)
    # The parts, assembled by ``start`` from what the executor holds then (a caller may
    # swap the feed, broker, router, metrics or component factory before it).
    tracker: OrderTracker
    protection: ProtectiveOrders | None  # a venue that holds stops as orders (swap, OCO)
    triggers: Triggers
    decider: Decider
    approvals: ApprovalQueue
    housekeeper: Housekeeper
    cycle: BarCycle

    def __init__(
        self,
        *,
        mode: str,
        account: str,
        journal: Journal,
        feed: Feed,
        streams: Sequence[Stream],
        broker: Broker,
        components: ComponentFactory,
        settings_params: dict[str, Any],
        validator: BarValidator,
        settings_hash: str,
        batch_bars: int = 1000,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        points: dict[str, float] | None = None,
        contract_size: float = 100_000.0,
        metrics: Metrics | None = None,
        ea_source: EaSource | None = None,
        watch_feed: bool = False,
    ) -> None:
        self.mode = mode
        self.account = account
        self.journal = journal
        self.feed = feed
        self.streams = tuple(streams)
        self.broker = broker
        self.component_factory = components
        self.settings_params = settings_params
        self.validator = validator
        self.settings_hash = settings_hash
        self.batch_bars = batch_bars
        self.clock: Clock = clock or WallClock()
        self.notifier = notifier or Notifier()
        self.points = dict(points or {})
        self.contract_size = contract_size
        self.metrics = metrics
        self.ea_source = ea_source
        self.watch_feed = watch_feed
        self.fatal_error: Exception | None = None
        self.lease = None
        self.before_cycle = []
        self.queued_rows = []
        self.router = OrderRouter(journal, broker)
        self.stats = RunStats()
        self.stop_requested = threading.Event()
        self._cycle_lock = threading.Lock()
        self._started = False
        self._assembled = False
        self._poll_seconds = 1.0
        # Can the account hold a short? A spot account cannot (``holds_shorts = False``).
        self._shorts = bool(getattr(broker, "holds_shorts", True))

    @property
    def poll_seconds(self) -> float:
        """How stale the journal polls may be when a cycle starts. 1 s without
        housekeeping (replays, tests); with the live scheduler's 1 s housekeeping job the
        polls run between bar closes and the cycle itself skips them (``housekeeping``)."""
        return self._poll_seconds

    @poll_seconds.setter
    def poll_seconds(self, seconds: float) -> None:
        self._poll_seconds = seconds
        if self._assembled:
            self.housekeeper.poll_seconds = self.approvals.poll_seconds = seconds

    def _assemble(self) -> None:
        snapshots: dict[Stream, MarketSnapshot] = {}
        last_time: dict[Stream, datetime | None] = {}
        self.tracker = self.router.tracker
        self.triggers = Triggers(
            journal=self.journal, broker=self.broker, account=self.account, stats=self.stats,
            streams=self.streams, last_time=last_time, watch_feed=self.watch_feed,
            on_rollback=self._rolled_back)
        # Stops and targets the venue holds as orders of their own (swap, spot OCO): placed
        # by the engine after each entry fills, journaled first.
        self.protection = None
        if separate_protection(self.broker):
            self.protection = ProtectiveOrders(self.journal, self.broker, self.router,
                                               self.account)
        self.decider = Decider(
            journal=self.journal, broker=self.broker, account=self.account,
            router=self.router, stats=self.stats, metrics=self.metrics,
            triggers=self.triggers, points=self.points, contract_size=self.contract_size,
            shorts=self._shorts, protection=self.protection)
        self.approvals = self.decider.approvals = ApprovalQueue(
            journal=self.journal, account=self.account, stats=self.stats, decider=self.decider,
            snapshots=snapshots, replaying=lambda: isinstance(self.clock, SimulatedClock))
        self.housekeeper = Housekeeper(
            journal=self.journal, stats=self.stats, metrics=self.metrics,
            approvals=self.approvals, queued_rows=self.queued_rows, apply=self._apply)
        self.cycle = BarCycle(
            mode=self.mode, journal=self.journal, feed=self.feed, streams=self.streams,
            broker=self.broker, validator=self.validator, batch_bars=self.batch_bars,
            stats=self.stats, metrics=self.metrics, tracker=self.tracker,
            decider=self.decider, approvals=self.approvals, triggers=self.triggers,
            housekeeper=self.housekeeper, snapshots=snapshots, last_time=last_time,
            before_cycle=self.before_cycle, ea_source=self.ea_source,
            stop_requested=self.stop_requested, protection=self.protection)
        self._assembled = True
        self.poll_seconds = self._poll_seconds

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        """Open a run, activate the parameter set, rebuild state from the journal, resolve
        orders left in doubt."""
        self._assemble()
        if self.mode == "paper":  # no order leaves the machine: no fsync per order
            self.journal.paper_durability()
        active = ensure_registered(self.journal.params, self.settings_params, author="settings",
                                   reason=f"settings file {self.settings_hash}")
        self.housekeeper.param_event_id = self.journal.params.latest_param_event_id()
        self.housekeeper.provider_event_id = self.journal.provider_calls.latest_provider_event_id()
        self._apply(active.version, active.content, warm=False)
        self.journal.runs.start_run(self.mode, self.account, self.settings_hash, self.c.params,
                                    sole_daemon=self.lease is not None)
        self.cycle.restore()
        fills = self.journal.orders.fills(account=self.account)  # another account's are not ours
        self.broker.restore(
            self.journal.orders.all(self.account),
            [Fill(f.client_order_id, f.fill_id, f.symbol, OrderSide(f.side), f.time, f.price,
                  f.volume, f.fee) for f in fills],
            [f.kind for f in fills])
        self.approvals.recover()
        self.tracker.rebuild(self.account)  # orders sent, not finished: count toward limits
        for order in self.tracker.resolve_open(self.account):
            log.warning("order_resolved_at_start", client_order_id=order.client_order_id,
                        state=order.state.value)
        if self.protection is not None:
            self.protection.restore()  # reconciled with the venue by ``start_live``
        self.triggers.restore()
        self.journal.commit()
        self.cycle.ea_since = self.journal.ea_deals.last_ea_deal_time()
        self._started = True

    def _apply(self, version: int, content: dict[str, Any], *, warm: bool = True) -> None:
        """Run with another parameter version from the next decision on."""
        previous = getattr(self, "c", None)
        c = self.c = self.component_factory(version, content)
        for part in (self.triggers, self.decider, self.approvals, self.housekeeper,
                     self.cycle):
            part.c = c
        self.decider.params_hash = c.params.content_hash  # hashed once, not per order
        if previous is not None:
            _close(previous.ensemble)
        if warm and previous is not None and previous.snapshot_params != c.snapshot_params:
            self.cycle.warm_builders()
        if previous is not None and previous.version == version:
            return  # same version rebuilt (a provider toggled): keep the monitors' history
        self.triggers.new_thresholds(c.guard, keep_errors=previous is not None)
        log.info("parameters_applied", version=version, params_hash=c.params.content_hash)

    def _rolled_back(self, target: ParamVersion) -> None:
        """An automatic rollback activated ``target``: run it, and do not pick the same
        change up again as an operator's."""
        self.housekeeper.param_event_id = self.journal.params.latest_param_event_id()
        self._apply(target.version, target.content)

    def stop(self, status: str = "stopped") -> dict[str, Any]:
        """Commit what the cycle wrote and close the run with its summary."""
        with self._cycle_lock:
            if self.fatal_error is None:  # not when the journal or the lease is gone
                self.housekeeper.write_queued_rows()
            self.journal.commit()
            summary = self.summary()
            self.journal.runs.end_run(status, summary)
            _close(self.c.ensemble)
            return summary

    # ------------------------------------------------------------------ the cycle

    def run_cycle(self, now: datetime | None = None) -> int:
        """Fetch and process every bar closed by ``now``. Returns bars handed to the cycle."""
        if not self._started:
            raise RuntimeError("RealtimeExecutor.start() must run before the first cycle")
        with self._cycle_lock:
            return self._halting(self._cycle, now or self.clock.now())

    def _cycle(self, now: datetime) -> int:
        if self.stop_requested.is_set() and self.fatal_error is not None:
            return 0  # halted (journal unwritable, lease lost): not one more bar
        if not self._lease_held():
            return 0
        return self.cycle.run(now)

    def _halting(self, step: Callable[..., _T], *args: Any) -> _T:
        """Run ``step``; a journal failure in it halts trading (``_journal_failed``) and is
        raised as a ``JournalError``. What the failed step wrote and did not commit is
        rolled back, as a crash would lose it: nothing half-done (an approval marked
        executed without its order) commits later when the journal is closed. (A plain
        call: a context manager would be a generator per cycle.)"""
        try:
            return step(*args)
        except JournalError as exc:
            self._journal_failed(exc)
            raise
        except SQLAlchemyError as exc:
            error = JournalError(f"journal write failed: {exc.__class__.__name__}: "
                                 f"{str(exc).splitlines()[0]}")
            self._journal_failed(error)
            raise error from None

    def housekeeping(self) -> None:
        """Journal work that need not wait for a bar, run between bar closes by the live
        scheduler (every second, same single worker as the cycles, offset from them): see
        ``executor.engine.housekeeping``."""
        if not self._started or self.stop_requested.is_set():
            return
        with self._cycle_lock:
            self._halting(self._housekeep)

    def _housekeep(self) -> None:
        if not self._lease_held():
            return
        self.housekeeper.run(self.clock)

    def hand_over_housekeeping(self) -> None:
        """``housekeeping`` will run between cycles (the live scheduler's job): the cycle
        polls only if it stalled for a few seconds (a missed second is jitter), and WAL
        checkpoints wait for housekeeping instead of landing on a commit."""
        self.poll_seconds = 3 * HOUSEKEEPING_SECONDS
        self.housekeeper.hand_over()

    # ------------------------------------------------------------------ halting

    def _journal_failed(self, exc: JournalError) -> None:
        """The journal cannot be written (disk full, read-only, database gone): stop
        trading at once. Nothing is sent unjournaled: the order row commits before any
        broker call, so the failing commit is always before the send. The incident cannot
        go into the journal, so it goes straight to the escalation listeners and the log."""
        self.fatal_error = exc
        self.stop_requested.set()
        with contextlib.suppress(Exception):
            self.journal.rollback()
        message = f"journal unwritable, trading stopped: {exc}"
        log.critical("journal_unwritable", error=str(exc))
        for listener in self.journal.incidents.listeners:
            with contextlib.suppress(Exception):
                listener(0, "critical", "halted:journal_unwritable", message)

    def _lease_held(self) -> bool:
        if self.lease is None or self.lease.check():
            return True
        self._lease_lost()
        return False

    def _lease_lost(self) -> None:
        """Another daemon may own the account now: stop before anything else is sent. The
        process exits non-zero; systemd's restart then either takes the lease again or is
        refused while the other daemon holds it (exactly one trades)."""
        from domain.errors import LeaseError

        message = (f"lease on account {self.account!r} lost ({self.lease.kind}): another "
                   "daemon may hold it now; trading stopped")
        self.fatal_error = LeaseError(message)
        self.stop_requested.set()
        log.critical("lease_lost", account=self.account)
        try:
            self.journal.incidents.open_incident("critical", "halted:lease_lost", message)
        except Exception:  # the journal may be what went away: alert directly
            for listener in self.journal.incidents.listeners:
                with contextlib.suppress(Exception):
                    listener(0, "critical", "halted:lease_lost", message)

    # ------------------------------------------------------------------ drivers

    def run_replay(self, clock: SimulatedClock, next_close: Callable[[], datetime | None],
                   on_progress: Callable[[int], None] | None = None) -> None:
        """Full-speed replay: advance the simulated clock to each bar close, run the cycle."""
        self.clock = clock
        while not self.stop_requested.is_set():
            t = next_close()
            if t is None:
                break
            clock.advance_to(t)
            self.run_cycle(clock.now())
            self.notifier.watchdog()
            if on_progress is not None and self.stats.cycles % 1000 == 0:
                on_progress(self.stats.bars_processed)

    def run_scheduled(self, *, settle_seconds: float, misfire_grace_seconds: int,
                      server_utc_offset_hours: float = 0.0,
                      server_clock: Any = None,
                      watchdog_seconds: float = 10.0) -> None:
        """Live driver: one APScheduler job per timeframe at bar close + settle delay, until
        ``stop_requested`` is set (SIGTERM). The cycle in progress finishes before return."""
        from executor.scheduler import build_scheduler

        self.clock = WallClock()
        scheduler = build_scheduler(
            self._scheduled_cycle, [tf for _, tf in self.streams],
            settle_seconds=settle_seconds, misfire_grace_seconds=misfire_grace_seconds,
            server_utc_offset_hours=server_utc_offset_hours, server_clock=server_clock,
            watchdog=self.notifier.watchdog if self.notifier.enabled else None,
            watchdog_seconds=watchdog_seconds, blocking=False,
            housekeeping=self._scheduled_housekeeping,
            housekeeping_seconds=HOUSEKEEPING_SECONDS)
        self.hand_over_housekeeping()
        scheduler.start()
        try:
            while not self.stop_requested.wait(0.5):
                pass
        finally:
            scheduler.shutdown(wait=True)

    def _scheduled_housekeeping(self) -> None:
        try:
            self.housekeeping()
        except JournalError:  # halted already (``_journal_failed``): as a failed cycle
            log.exception("housekeeping_failed")
        except Exception:  # anything else is retried in a second; never kills the job
            self.stats.errors["housekeeping_error"] += 1
            log.exception("housekeeping_failed")

    def _scheduled_cycle(self) -> None:
        if self.stop_requested.is_set():
            return
        try:
            self.run_cycle(self.clock.now())
        except Exception:
            log.exception("cycle_failed")
            self.stop_requested.set()  # fail closed: stop, let systemd restart us
            raise

    # ------------------------------------------------------------------ reporting

    def summary(self) -> dict[str, Any]:
        return run_summary(self.stats, mode=self.mode, account=self.account, c=self.c,
                           journal=self.journal, broker=self.broker)
