"""RealtimeExecutor: one cycle, end to end, for live scheduling and replay alike.

    feed.closed_bars -> BarValidator -> broker fills -> SnapshotBuilder.update
      -> TradeLogic.on_bar -> Ensemble.evaluate -> Guardrails.check -> OrderRouter.submit

Replay is not a second engine: it drives ``run_cycle`` with a simulated clock, one bar
close at a time, exactly as the scheduler drives it with the wall clock.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError
from structlog.contextvars import bound_contextvars

from domain import (
    Bar,
    Decision,
    Direction,
    Fill,
    MarketSnapshot,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    Proposal,
    Verdict,
    client_order_id,
    timeframe_seconds,
)
from domain.errors import JournalError, MalformedApproval, VenueError
from ensemble.late import call_row
from executor.approval_request import ApprovalRequest
from executor.brokers.base import Broker, BrokerFill, VolumeRules
from executor.brokers.paper import PaperBroker
from executor.components import ComponentFactory, Components
from executor.feeds.base import Feed
from executor.feeds.validator import BarValidator
from executor.heap import release_free_heap
from executor.journal.store import Journal
from executor.metrics import Metrics
from executor.router import OrderRouter
from executor.shadow import EaSource
from executor.systemd import Notifier
from guardrails.base import AccountState
from guardrails.limits import THROTTLE_WINDOW
from guardrails.monitors import (
    DailyDrawdownMonitor,
    ErrorRateMonitor,
    RegressionMonitor,
    StaleFeedMonitor,
    Trigger,
    providers_down_trigger,
)
from guardrails.params import ParamError, active_version, ensure_registered, rollback
from guardrails.state import TradingState, set_state
from strategies.logic import StrategyContext
from strategies.snapshot import SnapshotBuilder

log = structlog.get_logger("dta.executor")

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)

# Between bar closes: journal polls and the WAL checkpoint (``RealtimeExecutor.housekeeping``).
HOUSEKEEPING_SECONDS = 1.0

Stream = tuple[str, str]  # (symbol, timeframe)
_T = TypeVar("_T")


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """Replay time: moves only forward, only when the replay driver moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(1970, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance_to(self, t: datetime) -> None:
        if t > self._now:
            self._now = t


@dataclass
class RunStats:
    """Counters of this process's run, for the summary and benchmarks."""

    bars_processed: int = 0
    bars_rejected: Counter[str] = field(default_factory=Counter)
    gaps_flagged: int = 0
    proposals: int = 0
    decisions: int = 0
    approved: int = 0
    vetoes: Counter[str] = field(default_factory=Counter)
    orders: Counter[str] = field(default_factory=Counter)
    fills: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # Reads the broker could not answer (equity): not the algorithm's errors, so they do
    # not count toward the error-spike rollback trigger that ``errors`` feeds.
    broker_read_errors: Counter[str] = field(default_factory=Counter)
    queued_for_approval: int = 0
    approvals_expired: int = 0
    approvals_executed: int = 0
    rollbacks: int = 0
    ea_deals: int = 0
    cycles: int = 0
    # The most recent per-bar latencies (a bounded window: a daemon runs for months).
    latencies_us: deque[float] = field(default_factory=lambda: deque(maxlen=50_000))
    started: float = field(default_factory=time.perf_counter)

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies_us:
            return {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0}
        data = sorted(self.latencies_us)
        return {"p50_us": _pct(data, 50), "p99_us": _pct(data, 99), "max_us": data[-1]}


def _close(resource: object) -> None:
    """Release what a component holds (the ensemble's thread pool and SDK clients)."""
    close = getattr(resource, "close", None)
    if callable(close):
        close()


def _pct(data: Sequence[float], q: float) -> float:
    k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
    return data[k]


class RealtimeExecutor:
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
        # A live feed is watched for silence (``_watch``); a replay's clock only moves to
        # the next bar, so its feed cannot fall silent.
        self.watch_feed = watch_feed
        self.fatal_error: Exception | None = None
        # Live: the account's lease (``executor.lease.AccountLease``). Checked at the start
        # of every cycle and every housekeeping second: a lease lost (its PostgreSQL session
        # died, so the advisory lock is gone and another daemon may take the account)
        # stops trading at once (``_lease_lost``).
        self.lease: Any = None
        self._equity_failure: VenueError | None = None  # the last failed equity read
        # Called at the start of every cycle with the cycle's time (live: the unknown-order
        # resolver). An exception is journaled as an error, never skips the cycle.
        self.before_cycle: list[Callable[[datetime], object]] = []
        # Journal rows other threads queued (late answers, breaker transitions): written
        # by housekeeping between bars and by ``stop``, as well as at the next cycle, so
        # none waits for the next bar close or is lost with a run's last cycle.
        self.queued_rows: list[Callable[[], object]] = []
        self._ea_since: datetime | None = None
        self.router = OrderRouter(journal, broker)
        self.stats = RunStats()
        self.stop_requested = threading.Event()
        self._cycle_lock = threading.Lock()
        self._builders: dict[Stream, SnapshotBuilder] = {}
        self._snapshots: dict[Stream, MarketSnapshot] = {}
        self._last_time: dict[Stream, datetime | None] = {}
        self._started = False
        self._param_event_id = -1
        self._provider_event_id = -1
        self._param_checked = 0.0
        self._approvals_checked = 0.0
        # How stale the journal polls may be when a cycle starts. 1 s without housekeeping
        # (replays, tests); with the live scheduler's 1 s housekeeping job the polls run
        # between bar closes and the cycle itself skips them (``housekeeping``).
        self.poll_seconds = 1.0
        self._expiries: list[tuple[datetime, int]] = []
        # Times of the orders sent within the throttle's window (older ones are dropped
        # at each decision, so the guardrail context stays small however busy the run).
        self._order_times: deque[datetime] = deque()
        self._day_opened: datetime | None = None  # midnight UTC starting the equity day
        self._heap_hour: datetime | None = None
        self._day_start_equity: float | None = None
        self._cycle_errors = 0
        self._refused_fills: set[str] = set()  # surplus fills never booked (rare)
        self._sizes: dict[str, VolumeRules | None] = {}  # the venue's order sizes
        # Can the account hold a short? A spot account cannot (``holds_shorts = False``).
        self._shorts = bool(getattr(broker, "holds_shorts", True))
        self.c: Components  # set by _apply
        self._broker_errors: ErrorRateMonitor  # set by _apply
        self._drawdown: DailyDrawdownMonitor | None

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        """Open a run, activate the parameter set, rebuild state from the journal, resolve
        orders left in doubt."""
        if self.mode == "paper":  # no order leaves the machine: no fsync per order
            self.journal.paper_durability()
        active = ensure_registered(self.journal.params, self.settings_params, author="settings",
                                   reason=f"settings file {self.settings_hash}")
        self._param_event_id = self.journal.params.latest_param_event_id()
        self._provider_event_id = self.journal.provider_calls.latest_provider_event_id()
        self._apply(active.version, active.content, warm=False)
        self.journal.runs.start_run(self.mode, self.account, self.settings_hash, self.c.params,
                                    sole_daemon=self.lease is not None)
        for stream in self.streams:
            last = self.journal.runs.last_bar_time(*stream)
            self._last_time[stream] = last
            if last is not None:
                self.validator.restore(stream[0], stream[1], last)
        self._warm_builders()
        fills = self.journal.orders.fills(account=self.account)  # another account's are not ours
        self.broker.restore(
            self.journal.orders.all(self.account),
            [Fill(f.client_order_id, f.fill_id, f.symbol, OrderSide(f.side), f.time, f.price,
                  f.volume, f.fee) for f in fills],
            [f.kind for f in fills])
        self._recover_approvals()
        self.router.rebuild(self.account)  # orders sent, not finished: count toward limits
        for order in self.router.resolve_open(self.account):
            log.warning("order_resolved_at_start", client_order_id=order.client_order_id,
                        state=order.state.value)
        # The day's baseline and the broker-error window continue from the journal: a
        # restart never starts the day's loss limits over. The active version's activation
        # is measured from here after a restart (documented approximation).
        baseline = self.journal.risk_days.day_start(self.account)
        if baseline is not None:
            self._day_opened, self._day_start_equity = baseline
            if self._drawdown is not None:
                self._drawdown.seed(*baseline)
        else:
            self._day_start_equity = self._equity()
        self._broker_errors.seed(self.journal.risk_days.broker_error_times(
            self.account, self.c.guard.broker_error_halt_count))
        self._regression.reset(self._equity())
        self.journal.commit()
        self._ea_since = self.journal.ea_deals.last_ea_deal_time()
        self._started = True

    def _warm_builders(self) -> None:
        for stream in self.streams:
            builder = SnapshotBuilder(**self.c.snapshot_params)
            warmed = 0
            for bar in self.journal.runs.iter_bars(*stream):
                # warm-up: state only, no strategy, no orders
                self._snapshots[stream] = builder.update(bar)
                warmed += 1
            self._builders[stream] = builder
            log.info("stream_ready", symbol=stream[0], timeframe=stream[1], warmed_bars=warmed)

    def _apply(self, version: int, content: dict[str, Any], *, warm: bool = True) -> None:
        """Run with another parameter version from the next decision on."""
        previous = getattr(self, "c", None)
        self.c = self.component_factory(version, content)
        self._params_hash = self.c.params.content_hash  # hashed once, not per order
        if previous is not None:
            _close(previous.ensemble)
        if warm and previous is not None and previous.snapshot_params != self.c.snapshot_params:
            self._warm_builders()
        if previous is not None and previous.version == version:
            return  # same version rebuilt (a provider toggled): keep the monitors' history
        g = self.c.guard
        self._regression = RegressionMonitor(
            drawdown_pct=g.regression.drawdown_pct, veto_rate=g.regression.veto_rate,
            veto_window=g.regression.veto_window, error_count=g.regression.error_count,
            error_window=g.regression.error_window)
        self._regression.reset(self._equity())
        # New thresholds, same day and same error window (``seed``): a version change
        # (every approval verdict makes one) must not reset the daily halts.
        self._drawdown = (DailyDrawdownMonitor(g.daily_drawdown_halt_pct)
                          if g.daily_drawdown_halt_pct else None)
        if (self._drawdown is not None and self._day_opened is not None
                and self._day_start_equity is not None):
            self._drawdown.seed(self._day_opened, self._day_start_equity)
        errors = ErrorRateMonitor(
            "broker_errors", g.broker_error_halt_count,
            timedelta(seconds=g.broker_error_window_seconds))
        if previous is not None:
            errors.seed(self._broker_errors.times)
        self._broker_errors = errors
        log.info("parameters_applied", version=version, params_hash=self._params_hash)

    def stop(self, status: str = "stopped") -> dict[str, Any]:
        """Commit what the cycle wrote and close the run with its summary."""
        with self._cycle_lock:
            if self.fatal_error is None:  # not when the journal or the lease is gone
                self._write_queued_rows()
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
        scheduler (every second, same single worker as the cycles, offset from them): pick
        up operator changes (parameter versions, provider toggles, approvals, expiries) and
        checkpoint the SQLite WAL. The cycle at bar close then finds all of it done and goes
        straight to the bars: neither the polls nor a checkpoint sit between a bar and its
        order (benchmarks/bench_latency.py)."""
        if not self._started or self.stop_requested.is_set():
            return
        with self._cycle_lock:
            self._halting(self._housekeep)

    def _housekeep(self) -> None:
        if not self._lease_held():
            return
        self._param_checked = self._approvals_checked = 0.0
        self._follow_param_changes()
        self._service_approvals(self.clock.now())
        self._write_queued_rows()
        self.journal.commit()
        self.journal.checkpoint()

    def _write_queued_rows(self) -> None:
        for write in self.queued_rows:
            try:
                write()
            except (JournalError, SQLAlchemyError):
                raise  # a journal error stops the daemon, as in a cycle
            except Exception as exc:
                self.stats.errors["queued_rows_error"] += 1
                log.error("queued_rows_failed", error=repr(exc))

    def hand_over_housekeeping(self) -> None:
        """``housekeeping`` will run between cycles (the live scheduler's job): the cycle
        polls only if it stalled for a few seconds (a missed second is jitter), and WAL
        checkpoints wait for housekeeping instead of landing on a commit."""
        self.poll_seconds = 3 * HOUSEKEEPING_SECONDS
        self.journal.manual_checkpoints()

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

    def _cycle(self, now: datetime) -> int:
        if self.stop_requested.is_set() and self.fatal_error is not None:
            return 0  # halted (journal unwritable, lease lost): not one more bar
        if not self._lease_held():
            return 0
        cycle_started = time.perf_counter()
        self._follow_param_changes()
        for hook in self.before_cycle:
            try:
                hook(now)
            except (JournalError, SQLAlchemyError):
                raise  # a journal error stops the daemon (``_halting``), hook or not
            except Exception as exc:
                self.stats.errors["before_cycle_error"] += 1
                log.error("before_cycle_failed", error=repr(exc))
        self._service_approvals(now)
        handled = 0
        for stream in self.streams:
            try:
                bars = self.feed.closed_bars(stream[0], stream[1], self._last_time[stream],
                                             now)
            except VenueError as exc:  # the feed is away: next cycle catches up
                self.stats.errors["feed_error"] += 1
                log.error("feed_failed", symbol=stream[0], error=str(exc))
                self._broker_error(now, "feed", f"{stream[0]}: {exc}")
                continue
            for i, bar in enumerate(bars):
                if self.stop_requested.is_set():
                    # SIGTERM during a catch-up: stop between bars, not after hundreds
                    # more (systemd kills a stop that outlasts TimeoutStopSec). The rest
                    # is fetched again after the restart, from the last journaled bar.
                    log.info("cycle_stopped_between_bars", symbol=stream[0],
                             remaining=len(bars) - i)
                    break
                self._process_bar(stream, bar, now)
                handled += 1
        self._watch(now)
        if self.ea_source is not None:
            self._read_ea(now)
        self.stats.cycles += 1
        if self.journal.pending_rows >= self.batch_bars or self.mode != "paper":
            self.journal.commit()
        if self.journal.checkpoint_due():  # no housekeeping ran: bound the WAL here,
            self.journal.checkpoint()      # after this cycle's orders went out
        hour = self._heap_hour
        if hour is None or not hour <= now < hour + _HOUR:  # a new market hour:
            self._heap_hour = now.replace(minute=0, second=0, microsecond=0)
            release_free_heap()                              # return the free heap
        if self.metrics is not None:
            self.metrics.cycle_seconds.observe(time.perf_counter() - cycle_started)
        return handled

    def _watch(self, now: datetime) -> None:
        """The automatic triggers a cycle itself can see: a required provider class with
        every provider down, and (a live feed only) a stream whose feed went silent, with
        no error and no bar for ``stale_after_bars`` bar lengths. Each sets REDUCING with
        an incident (``_fire``: once, while the state holds)."""
        g = self.c.guard
        if g.required_provider_classes:
            trigger = providers_down_trigger(self._classes_down(),
                                             tuple(g.required_provider_classes))
            if trigger is not None:
                self._fire(trigger)
        if not self.watch_feed or g.stale_after_bars is None:
            return
        for stream in self.streams:
            last = self._last_time[stream]
            if last is None:
                continue
            tf = timeframe_seconds(stream[1])
            trigger = StaleFeedMonitor(g.stale_after_bars, tf).observe(
                now, last + timedelta(seconds=tf))
            if trigger is not None:
                self._fire(replace(trigger, reason=f"{stream[0]} {stream[1]}: "
                                                   f"{trigger.reason}"))

    def _read_ea(self, now: datetime) -> None:
        """Shadow mode: journal the EA's deals up to now, for pairing with our intents."""
        assert self.ea_source is not None
        try:
            deals = self.ea_source.ea_deals(self._ea_since, now)
        except Exception as exc:
            self.stats.errors["ea_read_error"] += 1
            log.error("ea_read_failed", error=repr(exc))
            return
        if deals:
            self.stats.ea_deals += self.journal.ea_deals.record_ea_deals(deals)
            self._ea_since = max(d.time for d in deals)

    def _follow_param_changes(self) -> None:
        """Pick up an operator's `dta params activate|rollback` or an approval's weight
        update. Checked at most once a second of wall time: cheap in replays, prompt live."""
        mono = time.monotonic()
        if mono - self._param_checked < self.poll_seconds:
            return
        self._param_checked = mono
        if self.metrics is not None:
            self.metrics.set_state(self.journal.trading_state.trading_state().state)
        latest = self.journal.params.latest_param_event_id()
        providers = self.journal.provider_calls.latest_provider_event_id()
        if latest == self._param_event_id and providers == self._provider_event_id:
            return
        rebuild = providers != self._provider_event_id  # an operator (dis|en)abled one
        self._param_event_id, self._provider_event_id = latest, providers
        active = active_version(self.journal.params)
        if active is not None and (rebuild or active.version != self.c.version):
            self._apply(active.version, active.content)

    def _process_bar(self, stream: Stream, bar: Bar, now: datetime) -> None:
        started = time.perf_counter_ns()
        check = self.validator.check(bar, now, stream)
        if not check.accepted:
            reason = check.reason or "rejected"
            self.stats.bars_rejected[reason] += 1
            self.journal.runs.record_rejection(bar, stream[0], stream[1], reason, check.detail)
            log.warning("bar_rejected", symbol=stream[0], time=str(bar.time),
                        reason=reason, detail=check.detail)
            if self.metrics is not None:
                self.metrics.bars_rejected.labels(reason=reason).inc()
            return
        if check.gap_bars:
            self.stats.gaps_flagged += 1
        self.journal.runs.record_bar(bar, check.gap_bars)
        self._last_time[stream] = bar.time
        self.stats.bars_processed += 1
        if self.metrics is not None:
            self.metrics.bars_processed.labels(symbol=stream[0], timeframe=stream[1]).inc()
        errors_before = sum(self.stats.errors.values())

        for bf in self.broker.on_bar(bar):
            if self._surplus_fill(bf):
                continue
            self.journal.orders.record_fill(bf.fill, bf.kind, bf.realized_pnl)
            self.stats.fills += 1
            if bf.order is not None:
                before = self.journal.orders.order_state(bf.fill.client_order_id)
                if before is not None and before is not bf.order.state:
                    self.journal.orders.set_order_state(before, bf.order, detail=f"{bf.kind} fill",
                                                        commit=False)
            # A filled order stops counting as working; a live broker's fill (no order
            # attached) moves the order's row here, from the fills seen.
            known = self.router.working.get(bf.fill.client_order_id)
            moved = self.router.observe_fill(bf)
            if moved is not None and known is not None:
                self.journal.orders.set_order_state(known.state, moved, detail=f"{bf.kind} fill",
                                                    commit=False)
        self.router.refresh()  # states the resolver journaled (no read when none working)

        snapshot = self._builders[stream].update(bar)
        self._snapshots[stream] = snapshot
        try:
            ctx = StrategyContext(self.broker.position(bar.symbol), self.c.strategy_params)
            proposals = self.c.strategy.on_bar(snapshot, ctx)
        except Exception as exc:
            self.stats.errors["strategy_error"] += 1
            self.journal.runs.record_rejection(bar, stream[0], stream[1], "strategy_error",
                                               f"{exc.__class__.__name__}: {exc}")
            log.error("strategy_error", symbol=bar.symbol, error=repr(exc))
            proposals = ()
        for proposal in proposals:
            self._decide(proposal, snapshot, now)
        self._after_bar(bar, now, sum(self.stats.errors.values()) > errors_before)
        self.stats.latencies_us.append((time.perf_counter_ns() - started) / 1e3)

    def _surplus_fill(self, bf: BrokerFill) -> bool:
        """A fill beyond its order's volume is never booked as ours: it is an incident and
        trading halts until a person has looked (``OrderRouter.surplus``)."""
        f = bf.fill
        if bf.kind == "fee" and f.fill_id.removesuffix(":fee") in self._refused_fills:
            return True  # the commission of a refused trade is not ours either
        extra = self.router.surplus(bf)
        if extra <= 0:
            return False
        self._refused_fills.add(f.fill_id)
        message = (f"fill {f.fill_id} of {f.volume:g} {f.symbol} under our client id "
                   f"{f.client_order_id} exceeds what we sent by {extra:g}: another "
                   "sender used the id (a second daemon or journal on this account?); not "
                   "booked, trading halted")
        log.critical("fill_surplus", client_order_id=f.client_order_id, fill_id=f.fill_id,
                     volume=f.volume, surplus=extra)
        self.journal.incidents.open_incident("critical", "fill_surplus", message, {
            "client_order_id": f.client_order_id, "fill_id": f.fill_id,
            "volume": f.volume, "surplus": extra, "side": f.side.value})
        set_state(self.journal.trading_state, TradingState.HALTED, operator="system",
                  reason=message, trigger="fill_surplus")
        return True

    def _context(self, snapshot: MarketSnapshot, now: datetime,
                 volume: float) -> AccountState:
        return AccountState(
            positions=self.broker.positions(), order_volume=volume, now=now,
            snapshot=snapshot, equity=self._equity(), day_start_equity=self._day_start_equity,
            contract_size=self.contract_size, point=self._point(snapshot.symbol),
            recent_order_times=self._recent_order_times(now),
            classes_down=self._classes_down(), working=self.router.working_exposure(),
            volume_min=rules.min if (rules := self._volume_rules(snapshot.symbol)) else None,
            shorts=self._shorts)

    def _recent_order_times(self, now: datetime) -> tuple[datetime, ...]:
        """The order times the throttle can still count at ``now``; older ones are dropped
        (times come in order; one out of order only stays a little longer)."""
        times = self._order_times
        horizon = now - THROTTLE_WINDOW
        while times and times[0] <= horizon:
            times.popleft()
        return tuple(times)

    def _point(self, symbol: str) -> float | None:
        """The symbol's point (price tick): from the bar file in a replay, else asked once
        of the venue (MT5 ``symbol_info().point``, the ccxt market's price precision).
        Unknown stays ``None``, and a configured ``min_stop_points`` then fails closed."""
        point = self.points.get(symbol)
        if point is not None:
            return point
        ask = getattr(self.broker, "point", None)
        if not callable(ask):
            return None
        try:
            point = ask(symbol)
        except VenueError as exc:
            log.error("point_read_failed", symbol=symbol, error=str(exc))
            return None
        if point is not None and point > 0:
            self.points[symbol] = float(point)
            return float(point)
        return None

    def _classes_down(self) -> tuple[str, ...]:
        health = getattr(self.c.ensemble, "classes_down", None)
        if not callable(health):
            return ()
        return tuple(health(self.c.guard.required_provider_classes))

    def _decide(self, proposal: Proposal, snapshot: MarketSnapshot, now: datetime) -> None:
        self.stats.proposals += 1
        proposal_id = self.journal.decisions.record_proposal(proposal, snapshot)
        decision = self.c.ensemble.evaluate(proposal, snapshot)
        decision_id = self.journal.decisions.record_decision(decision, proposal_id)
        with bound_contextvars(decision_id=decision_id, symbol=proposal.symbol):
            self._record_calls(decision, decision_id)
            self.stats.decisions += 1
            verdict = self.c.guardrails.check(
                decision, self._context(snapshot, now, self._volume(decision)))
            self.journal.decisions.record_verdict(verdict, decision_id)
            if self.metrics is not None:
                self.metrics.decisions.inc()
                for c in verdict.checks:
                    if not c.passed:
                        self.metrics.vetoes.labels(check=c.name).inc()
            self._act(decision, decision_id, verdict, now)

    def _act(self, decision: Decision, decision_id: int, verdict: Verdict,
             now: datetime) -> None:
        proposal = decision.proposal
        # A veto counts against the parameter set only when a check faulted the decision
        # itself; one that says the moment is wrong (halted, stale, providers down, equity
        # unknown) is no evidence for rolling the parameters back.
        trigger = self._regression.decision(
            not verdict.approved
            and any(not c.passed and not c.environmental for c in verdict.checks))
        if verdict.approved:
            self.stats.approved += 1
            self._submit(self._intent(decision, decision_id), now)
        else:
            for c in verdict.checks:
                if not c.passed:
                    self.stats.vetoes[c.name] += 1
            if verdict.needs_approval:
                self._queue_for_approval(decision, decision_id, verdict, now)
            log.info("decision_vetoed", symbol=proposal.symbol, decision_id=decision_id,
                     reasons=list(verdict.reasons), queued=verdict.needs_approval)
        if trigger is not None:
            self._fire(trigger)

    def _record_calls(self, decision: Decision, decision_id: int) -> None:
        for call in decision.calls:
            if self.metrics is not None:
                self.metrics.provider_call(call)
            self.journal.provider_calls.record_provider_call(call_row(call, decision_id))

    def _submit(self, intent: OrderIntent, now: datetime) -> Order:
        with bound_contextvars(client_order_id=intent.client_order_id):
            order = self.router.submit(intent)
        self.stats.orders[order.state.value] += 1
        if self.metrics is not None:
            self.metrics.orders.labels(state=order.state.value).inc()
        self._order_times.append(now)
        if order.state in (OrderState.UNKNOWN, OrderState.REJECTED):
            self._broker_error(now, f"order_{order.state.value}",
                               f"{order.client_order_id}: {order.reason}")
        return order

    def _volume(self, decision: Decision) -> float:
        """The configured volume, scaled down by the risk stage's size factor (a reviewer
        that said "resize to 0.5" gets half) and rounded down to the venue's step: the
        guardrails judge the volume the venue would take (``OrderVolumeCheck`` vetoes one
        that rounds to nothing or below the venue's minimum)."""
        factor = decision.size_factor
        volume = (self.c.order_volume if factor >= 1.0
                  else round(self.c.order_volume * max(factor, 0.0), 8))
        rules = self._volume_rules(decision.proposal.symbol)
        return rules.round_down(volume) if rules is not None else volume

    def _volume_rules(self, symbol: str) -> VolumeRules | None:
        """The venue's step and minimum for ``symbol``, asked once (None: unknown)."""
        if symbol in self._sizes:
            return self._sizes[symbol]
        ask = getattr(self.broker, "volume_rules", None)
        rules: VolumeRules | None = None
        if callable(ask):
            try:
                rules = ask(symbol)
            except VenueError as exc:
                log.error("volume_rules_read_failed", symbol=symbol, error=str(exc))
                return None  # asked again next time
        self._sizes[symbol] = rules
        return rules

    def _intent(self, decision: Decision, decision_id: int,
                direction: Direction | None = None) -> OrderIntent:
        """The order for ``decision`` (in ``direction``: the decision's own by default)."""
        p = decision.proposal
        side = OrderSide.BUY if (direction or decision.direction) is Direction.LONG \
            else OrderSide.SELL
        coid = client_order_id(self.account, p.symbol, p.bar_time,
                               f"entry:{p.strategy}:{side.value}")
        return OrderIntent(
            client_order_id=coid, account=self.account, symbol=p.symbol, side=side,
            volume=self._volume(decision), order_type=OrderType.MARKET, bar_time=p.bar_time,
            stop_loss=p.stop, take_profit=p.target, params_hash=self._params_hash,
            decision_id=decision_id)

    # ------------------------------------------------------------------ approvals

    def _queue_for_approval(self, decision: Decision, decision_id: int, verdict: Verdict,
                            now: datetime) -> None:
        """Queue the strategy's own trade for a human: on a conflict the ensemble opposed
        it, and the person approving overrides that opposition (``ApprovalRequest``)."""
        intent = self._intent(decision, decision_id, decision.proposal.direction)
        clock = "replay" if isinstance(self.clock, SimulatedClock) else "wall"
        try:
            request = ApprovalRequest.of(intent, decision, clock=clock)
        except MalformedApproval as exc:
            self.stats.vetoes["approval_malformed"] += 1
            log.error("approval_not_queued", decision_id=decision_id, error=str(exc))
            return
        p = decision.proposal
        ttl = timedelta(seconds=self.c.guard.approval_ttl_seconds)
        approval_id = self.journal.approvals.create_approval(
            decision_id=decision_id, account=self.account, symbol=p.symbol,
            direction=request.direction.value, intent=request.payload(),
            why="; ".join(verdict.reasons), created_at=now, expires_at=now + ttl)
        self.stats.queued_for_approval += 1
        heapq.heappush(self._expiries, (now + ttl, approval_id))
        log.info("approval_queued", approval_id=approval_id, decision_id=decision_id)

    def _service_approvals(self, now: datetime) -> None:
        """Expire what waited too long (never executed late); send what a human approved in
        time, after re-checking every hard limit against the market as it is now.

        Requests this process queued expire exactly at their deadline (in replay time too);
        the journal is polled for approvals from `dta approvals` at most once a wall second.
        """
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, approval_id = heapq.heappop(self._expiries)
            if self.journal.approvals.set_approval_status(
                    approval_id, "expired", expected="pending", decided_at=expires_at):
                self.stats.approvals_expired += 1
        mono = time.monotonic()
        if mono - self._approvals_checked < self.poll_seconds:
            return
        self._approvals_checked = mono
        for a in self.journal.approvals.all("pending"):
            if a.expires_at <= now and self.journal.approvals.set_approval_status(
                    a.id or 0, "expired", expected="pending", decided_at=a.expires_at):
                self.stats.approvals_expired += 1
        for a in self.journal.approvals.all("approved"):
            if a.account == self.account:
                self._execute_approved(a, now)

    def _execute_approved(self, a: Any, now: datetime) -> None:
        """Send exactly the order the request showed, re-checked as exactly that order.
        The request's ``executed`` mark and the order's row commit in one transaction: a
        failure or a crash between them cannot leave an approval marked executed with no
        order behind it."""
        late = a.decided_at is None or a.decided_at > a.expires_at or now > a.expires_at
        if late:
            self.journal.approvals.set_approval_status(a.id, "expired", expected="approved",
                                                       note="approved after its time-to-live")
            self.stats.approvals_expired += 1
            return
        try:
            request = ApprovalRequest.from_payload(a.intent)
        except MalformedApproval as exc:
            self.journal.approvals.set_approval_status(a.id, "rejected", expected="approved",
                                                       note=f"not executed: {exc}")
            self.journal.incidents.open_incident("high", "approval_malformed",
                                                 f"approval #{a.id}: {exc}")
            return
        stream = (a.symbol, request.timeframe)
        if stream not in self._snapshots:
            return  # no bar of that stream yet in this process: wait for the next one
        verdict = self.c.guardrails.hard_checks_pass(
            request.decision(a.symbol),
            self._context(self._snapshots[stream], now, request.volume))
        if not verdict.approved:
            self.journal.approvals.set_approval_status(a.id, "rejected", expected="approved",
                                                       note="hard limits failed at execution: "
                                                  + "; ".join(verdict.reasons))
            return
        intent = request.intent(self.account, a.symbol, a.decision_id)
        if self.journal.approvals.set_approval_status(a.id, "executed", expected="approved",
                                                      client_order_id=intent.client_order_id,
                                                      commit=False):
            self._submit(intent, now)  # commits the mark with the order's row
            self.stats.approvals_executed += 1

    def _recover_approvals(self) -> None:
        """Start-up: a request marked ``executed`` whose order row never committed (a
        journal written before the mark and the row shared one transaction) is approved
        again, so the next cycle sends it or expires it; never silently forgotten."""
        for a in self.journal.approvals.all("executed"):
            if a.account != self.account or (
                    a.client_order_id and self.journal.orders.order_state(a.client_order_id)):
                continue
            if self.journal.approvals.set_approval_status(
                    a.id or 0, "approved", expected="executed",
                    note="marked executed without an order: approved again at start-up"):
                self.journal.incidents.open_incident(
                    "high", "approval_without_order",
                    f"approval #{a.id} was marked executed but its order "
                    f"{a.client_order_id} was never journaled; it is approved again and "
                    "will be sent if still in time")

    # ------------------------------------------------------------------ triggers

    def _equity(self) -> float | None:
        """The broker's account equity; ``None`` when the broker keeps none or cannot tell
        now. A read error never crashes the cycle: ``None`` fails closed (``max_daily_loss``
        vetoes entries with "equity unknown") and the drawdown monitors skip the reading.
        A live broker raises a failed read again for a moment instead of asking again
        (``EquityCache``), as the same exception object: each failure is counted and
        logged once."""
        equity = getattr(self.broker, "equity", None)
        if not callable(equity):
            return None
        try:
            return float(equity())
        except VenueError as exc:
            if exc is not self._equity_failure:
                self._equity_failure = exc
                self.stats.broker_read_errors["equity"] += 1
                log.error("equity_read_failed", broker=getattr(self.broker, "name", "?"),
                          error=str(exc), retryable=exc.retryable)
            return None

    def _after_bar(self, bar: Bar, now: datetime, had_error: bool) -> None:
        equity = self._equity()
        closed = bar.close_time
        start = self._day_opened
        if start is None or not start <= closed < start + _DAY:  # another UTC day
            self._open_day(closed.replace(hour=0, minute=0, second=0, microsecond=0), equity)
        elif self._day_start_equity is None and equity is not None:
            # The broker could not tell equity at the day's first bar: the day starts at its
            # first reading, instead of max_daily_loss vetoing every entry until tomorrow.
            self._open_day(start, equity)
            log.warning("day_start_equity_late", day=str(start.date()), equity=equity)
        triggers = [self._regression.cycle(had_error)]
        if equity is not None:
            triggers.append(self._regression.equity(equity))
            if self._drawdown is not None:
                triggers.append(self._drawdown.observe(closed, equity))
        for trigger in triggers:
            if trigger is not None:
                self._fire(trigger)

    def _open_day(self, day: datetime, equity: float | None) -> None:
        """The day's baseline (journaled once per day: the first reading stands)."""
        self._day_opened, self._day_start_equity = day, equity
        if equity is not None:
            self.journal.risk_days.record_day_start(self.account, day, equity)
            if self._drawdown is not None:
                self._drawdown.seed(day, equity)

    def _broker_error(self, now: datetime, kind: str, detail: str) -> None:
        """Count a broker error toward the halt, journaled so the window survives."""
        self.journal.risk_days.record_broker_error(self.account, now, kind, detail)
        trigger = self._broker_errors.error(now)
        if trigger is not None:
            self._fire(trigger)

    def _fire(self, trigger: Trigger) -> None:
        """Apply an automatic trigger: journal it, change state or roll back, open an
        incident. A trigger never relaxes the trading state."""
        if trigger.rollback:
            try:
                target = rollback(self.journal.params, operator="system", reason=trigger.reason,
                                  automatic=True, trigger=trigger.name)
            except ParamError as exc:
                self.journal.incidents.open_incident("high", f"rollback_failed:{trigger.name}",
                                                     f"{trigger.reason}; {exc}")
                set_state(self.journal.trading_state, TradingState.HALTED, operator="system",
                          reason=f"{trigger.reason}; no version to roll back to",
                          trigger=trigger.name)
                self._regression.reset(self._equity())
                return
            self._param_event_id = self.journal.params.latest_param_event_id()
            self._apply(target.version, target.content)
            set_state(self.journal.trading_state, TradingState.REDUCING, operator="system",
                      reason=f"automatic rollback to v{target.version}: {trigger.reason}",
                      trigger=trigger.name)
            self.journal.incidents.open_incident(
                "high", f"auto_rollback:{trigger.name}",
                f"rolled back to version {target.version}: {trigger.reason}",
                {"to_version": target.version})
            self.stats.rollbacks += 1
            log.warning("auto_rollback", trigger=trigger.name, to_version=target.version,
                        reason=trigger.reason)
            return
        if trigger.state is not None and set_state(
                self.journal.trading_state, trigger.state, operator="system", reason=trigger.reason,
                trigger=trigger.name):
            severity = "critical" if trigger.state is TradingState.HALTED else "high"
            self.journal.incidents.open_incident(
                severity, f"{trigger.state.value.lower()}:{trigger.name}", trigger.reason)
            log.warning("trading_state_changed", state=trigger.state.value,
                        trigger=trigger.name, reason=trigger.reason)

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
        elapsed = time.perf_counter() - self.stats.started
        s = self.stats
        out: dict[str, Any] = {
            "mode": self.mode,
            "account": self.account,
            "params_hash": self.c.params.content_hash,
            "params_version": self.c.version,
            "bars_processed": s.bars_processed,
            "bars_rejected": dict(s.bars_rejected),
            "gaps_flagged": s.gaps_flagged,
            "proposals": s.proposals,
            "decisions": s.decisions,
            "approved": s.approved,
            "vetoes": dict(s.vetoes),
            "orders": dict(s.orders),
            "fills": s.fills,
            "errors": dict(s.errors),
            "broker_read_errors": dict(s.broker_read_errors),
            "approvals": {"queued": s.queued_for_approval, "expired": s.approvals_expired,
                          "executed": s.approvals_executed},
            "rollbacks": s.rollbacks,
            "ea_deals": s.ea_deals,
            "trading_state": self.journal.trading_state.trading_state().state,
            "elapsed_s": round(elapsed, 3),
            "bars_per_s": round(s.bars_processed / elapsed, 1) if elapsed > 0 else 0.0,
            "latency": {k: round(v, 1) for k, v in s.latency_percentiles().items()},
            "positions": {sym: {"volume": p.volume, "avg_price": p.avg_price}
                          for sym, p in self.broker.positions().items()},
        }
        if isinstance(self.broker, PaperBroker):
            out["pnl"] = {
                "realized": round(self.broker.realized_pnl, 2),
                "unrealized": round(self.broker.unrealized_pnl(), 2),
                "equity": round(self.broker.equity(), 2),
                "initial_balance": self.broker.initial_balance,
            }
        out["journal_orders_by_state"] = self.journal.queries.order_counts()
        out["open_orders"] = len(self.journal.orders.all(
            self.account, [OrderState.SUBMITTING, OrderState.ACCEPTED, OrderState.UNKNOWN,
                           OrderState.PARTIALLY_FILLED]))
        return out
