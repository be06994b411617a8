"""The bar cycle: every bar closed since the last one, through the pipeline, in order.

    feed.closed_bars -> BarValidator -> broker fills -> SnapshotBuilder.update
      -> TradeLogic.on_bar -> decider (ensemble -> guardrails -> router)

A cycle first picks up what changed outside it (parameter versions, hooks such as the live
order resolver, approvals), then runs each stream's new bars, then the checks a cycle can
make by itself (providers down, a silent feed), and commits by the run's cadence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError

from domain import Bar, MarketSnapshot
from domain.errors import JournalError, VenueError
from executor.brokers.base import Broker
from executor.components import Components
from executor.engine.approvals import ApprovalQueue
from executor.engine.decider import Decider
from executor.engine.housekeeping import Housekeeper
from executor.engine.protection import ProtectiveOrders
from executor.engine.stats import RunStats
from executor.engine.tracker import OrderTracker
from executor.engine.triggers import Triggers
from executor.feeds.base import Feed
from executor.feeds.validator import BarValidator
from executor.journal.store import Journal
from executor.metrics import Metrics
from executor.shadow import EaSource
from strategies.logic import StrategyContext
from strategies.snapshot import SnapshotBuilder

log = structlog.get_logger("dta.executor")

Stream = tuple[str, str]  # (symbol, timeframe)


class BarCycle:
    def __init__(self, *, mode: str, journal: Journal, feed: Feed, streams: Sequence[Stream],
                 broker: Broker, validator: BarValidator, batch_bars: int, stats: RunStats,
                 metrics: Metrics | None, tracker: OrderTracker, decider: Decider,
                 approvals: ApprovalQueue, triggers: Triggers, housekeeper: Housekeeper,
                 snapshots: dict[Stream, MarketSnapshot],
                 last_time: dict[Stream, datetime | None],
                 before_cycle: list[Callable[[datetime], object]],
                 ea_source: EaSource | None, stop_requested: threading.Event,
                 protection: ProtectiveOrders | None = None) -> None:
        self.mode = mode
        self.journal = journal
        self.feed = feed
        self.streams = streams
        self.broker = broker
        self.validator = validator
        self.batch_bars = batch_bars
        self.stats = stats
        self.metrics = metrics
        self.tracker = tracker
        self.decider = decider
        self.approvals = approvals
        self.triggers = triggers
        self.housekeeper = housekeeper
        self.builders: dict[Stream, SnapshotBuilder] = {}
        self.snapshots = snapshots  # the latest per stream (approvals re-check on them)
        self.last_time = last_time  # the last journaled bar per stream
        # Called at the start of every cycle with the cycle's time (live: the unknown-order
        # resolver). An exception is journaled as an error, never skips the cycle.
        self.before_cycle = before_cycle
        self.ea_source = ea_source
        self.ea_since: datetime | None = None
        self.stop_requested = stop_requested
        self.protection = protection
        self.c: Components  # set by the executor with every parameter version

    # ------------------------------------------------------------------ start-up

    def restore(self) -> None:
        """Start-up: each stream continues after its last journaled bar, with the snapshot
        state rebuilt from the journal's bars."""
        for stream in self.streams:
            last = self.journal.runs.last_bar_time(*stream)
            self.last_time[stream] = last
            if last is not None:
                self.validator.restore(stream[0], stream[1], last)
        self.warm_builders()

    def warm_builders(self) -> None:
        for stream in self.streams:
            builder = SnapshotBuilder(**self.c.snapshot_params)
            warmed = 0
            for bar in self.journal.runs.iter_bars(*stream):
                # warm-up: state only, no strategy, no orders
                self.snapshots[stream] = builder.update(bar)
                warmed += 1
            self.builders[stream] = builder
            log.info("stream_ready", symbol=stream[0], timeframe=stream[1], warmed_bars=warmed)

    # ------------------------------------------------------------------ the cycle

    def run(self, now: datetime) -> int:
        """Fetch and process every bar closed by ``now``. Returns bars handed to the cycle."""
        cycle_started = time.perf_counter()
        self.housekeeper.follow_param_changes()
        for hook in self.before_cycle:
            try:
                hook(now)
            except (JournalError, SQLAlchemyError):
                raise  # a journal error stops the daemon (``_halting``), hook or not
            except Exception as exc:
                self.stats.errors["before_cycle_error"] += 1
                log.error("before_cycle_failed", error=repr(exc))
        self.approvals.service(now)
        handled = 0
        for stream in self.streams:
            handled += self._run_stream(stream, now)
        self.triggers.watch(now)
        if self.ea_source is not None:
            self._read_ea(now)
        self.stats.cycles += 1
        if self.journal.pending_rows >= self.batch_bars or self.mode != "paper":
            self.journal.commit()
        self.housekeeper.after_cycle(now)
        if self.metrics is not None:
            self.metrics.cycle_seconds.observe(time.perf_counter() - cycle_started)
        return handled

    def _run_stream(self, stream: Stream, now: datetime) -> int:
        try:
            bars = self.feed.closed_bars(stream[0], stream[1], self.last_time[stream], now)
        except VenueError as exc:  # the feed is away: next cycle catches up
            self.stats.errors["feed_error"] += 1
            log.error("feed_failed", symbol=stream[0], error=str(exc))
            self.triggers.broker_error(now, "feed", f"{stream[0]}: {exc}")
            return 0
        handled = 0
        for i, bar in enumerate(bars):
            if self.stop_requested.is_set():
                # SIGTERM during a catch-up: stop between bars, not after hundreds
                # more (systemd kills a stop that outlasts TimeoutStopSec). The rest
                # is fetched again after the restart, from the last journaled bar.
                log.info("cycle_stopped_between_bars", symbol=stream[0],
                         remaining=len(bars) - i)
                break
            self.process_bar(stream, bar, now)
            handled += 1
        return handled

    def process_bar(self, stream: Stream, bar: Bar, now: datetime) -> None:
        started = time.perf_counter_ns()
        check = self.validator.check(bar, now, stream)
        if not check.accepted:
            self._reject(stream, bar, check.reason or "rejected", check.detail)
            return
        if check.gap_bars:
            self.stats.gaps_flagged += 1
        self.journal.runs.record_bar(bar, check.gap_bars)
        self.last_time[stream] = bar.time
        self.stats.bars_processed += 1
        if self.metrics is not None:
            self.metrics.bars_processed.labels(symbol=stream[0], timeframe=stream[1]).inc()
        errors_before = sum(self.stats.errors.values())

        fills = self.broker.on_bar(bar)
        self.tracker.book(fills, self.stats)
        if self.protection is not None:  # legs for new fills, the other leg of a fired one
            self.protection.after_bar(bar.symbol, fills)
            # A simulator places those legs at the bar's open: the rest of the bar may
            # fire them, as a live venue's price path does before the next close.
            later = self.protection.broker.within_bar(bar)
            if later:
                self.tracker.book(later, self.stats)
                self.protection.after_bar(bar.symbol, later)

        snapshot = self.builders[stream].update(bar)
        self.snapshots[stream] = snapshot
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
            self.decider.decide(proposal, snapshot, now)
        self.triggers.after_bar(bar, now, sum(self.stats.errors.values()) > errors_before)
        self.stats.latencies_us.append((time.perf_counter_ns() - started) / 1e3)

    def _reject(self, stream: Stream, bar: Bar, reason: str, detail: str) -> None:
        self.stats.bars_rejected[reason] += 1
        self.journal.runs.record_rejection(bar, stream[0], stream[1], reason, detail)
        log.warning("bar_rejected", symbol=stream[0], time=str(bar.time),
                    reason=reason, detail=detail)
        if self.metrics is not None:
            self.metrics.bars_rejected.labels(reason=reason).inc()

    def _read_ea(self, now: datetime) -> None:
        """Shadow mode: journal the EA's deals up to now, for pairing with our intents."""
        assert self.ea_source is not None
        try:
            deals = self.ea_source.ea_deals(self.ea_since, now)
        except Exception as exc:
            self.stats.errors["ea_read_error"] += 1
            log.error("ea_read_failed", error=repr(exc))
            return
        if deals:
            self.stats.ea_deals += self.journal.ea_deals.record_ea_deals(deals)
            self.ea_since = max(d.time for d in deals)
