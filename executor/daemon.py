"""RealtimeExecutor: one cycle, end to end, for live scheduling and replay alike.

    feed.closed_bars -> BarValidator -> broker fills -> SnapshotBuilder.update
      -> TradeLogic.on_bar -> Ensemble.evaluate -> Guardrails.check -> OrderRouter.submit

Replay is not a second engine: it drives ``run_cycle`` with a simulated clock, one bar
close at a time, exactly as the scheduler drives it with the wall clock.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from ensemble.ensemble import Ensemble
from executor.brokers.base import Broker
from executor.brokers.paper import PaperBroker
from executor.feeds.base import Feed
from executor.feeds.validator import BarValidator
from executor.journal.store import Journal
from executor.router import OrderRouter
from executor.systemd import Notifier
from guardrails.base import AccountState
from guardrails.guardrails import Guardrails
from strategies.domain import (
    Bar,
    Decision,
    Direction,
    Fill,
    MarketSnapshot,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    ParameterSet,
    Proposal,
    client_order_id,
)
from strategies.logic import StrategyContext, TradeLogic
from strategies.snapshot import SnapshotBuilder

log = structlog.get_logger("dta.executor")

Stream = tuple[str, str]  # (symbol, timeframe)


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
    cycles: int = 0
    latencies_us: array[float] = field(default_factory=lambda: array("d"))
    started: float = field(default_factory=time.perf_counter)

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies_us:
            return {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0}
        data = sorted(self.latencies_us)
        return {"p50_us": _pct(data, 50), "p99_us": _pct(data, 99), "max_us": data[-1]}


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
        strategy: TradeLogic,
        strategy_params: dict[str, Any],
        builder_factory: Callable[[], SnapshotBuilder],
        validator: BarValidator,
        ensemble: Ensemble,
        guardrails: Guardrails,
        params: ParameterSet,
        settings_hash: str,
        order_volume: float,
        batch_bars: int = 1000,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.mode = mode
        self.account = account
        self.journal = journal
        self.feed = feed
        self.streams = tuple(streams)
        self.broker = broker
        self.strategy = strategy
        self.strategy_params = dict(strategy_params)
        self.builder_factory = builder_factory
        self.validator = validator
        self.ensemble = ensemble
        self.guardrails = guardrails
        self.params = params
        self.settings_hash = settings_hash
        self.order_volume = order_volume
        self.batch_bars = batch_bars
        self.clock: Clock = clock or WallClock()
        self.notifier = notifier or Notifier()
        self.router = OrderRouter(journal, broker)
        self.stats = RunStats()
        self.stop_requested = threading.Event()
        self._cycle_lock = threading.Lock()
        self._builders: dict[Stream, SnapshotBuilder] = {}
        self._last_time: dict[Stream, datetime | None] = {}
        self._started = False

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        """Open a run, rebuild state from the journal, resolve orders left in doubt."""
        self.journal.start_run(self.mode, self.account, self.settings_hash, self.params)
        for stream in self.streams:
            builder = self.builder_factory()
            last = self.journal.last_bar_time(*stream)
            warmed = 0
            for bar in self.journal.iter_bars(*stream):
                builder.update(bar)  # warm-up: state only, no strategy, no orders
                warmed += 1
            self._builders[stream] = builder
            self._last_time[stream] = last
            if last is not None:
                self.validator.restore(stream[0], stream[1], last)
            log.info("stream_resumed" if last else "stream_started", symbol=stream[0],
                     timeframe=stream[1], last_bar=last.isoformat() if last else None,
                     warmed_bars=warmed)
        fills = self.journal.fills()
        self.broker.restore(
            self.journal.orders(self.account),
            [Fill(f.client_order_id, f.fill_id, f.symbol, OrderSide(f.side), f.time, f.price,
                  f.volume, f.fee) for f in fills],
            [f.kind for f in fills])
        for order in self.router.resolve_open(self.account):
            log.warning("order_resolved_at_start", client_order_id=order.client_order_id,
                        state=order.state.value)
        self.journal.commit()
        self._started = True

    def stop(self, status: str = "stopped") -> dict[str, Any]:
        """Commit what the cycle wrote and close the run with its summary."""
        with self._cycle_lock:
            self.journal.commit()
            summary = self.summary()
            self.journal.end_run(status, summary)
            return summary

    # ------------------------------------------------------------------ the cycle

    def run_cycle(self, now: datetime | None = None) -> int:
        """Fetch and process every bar closed by ``now``. Returns bars handed to the cycle."""
        if not self._started:
            raise RuntimeError("RealtimeExecutor.start() must run before the first cycle")
        with self._cycle_lock:
            now = now or self.clock.now()
            handled = 0
            for stream in self.streams:
                bars = self.feed.closed_bars(stream[0], stream[1], self._last_time[stream], now)
                for bar in bars:
                    self._process_bar(stream, bar, now)
                    handled += 1
            self.stats.cycles += 1
            if self.journal.pending_rows >= self.batch_bars or self.mode != "paper":
                self.journal.commit()
            return handled

    def _process_bar(self, stream: Stream, bar: Bar, now: datetime) -> None:
        started = time.perf_counter_ns()
        check = self.validator.check(bar, now)
        if not check.accepted:
            reason = check.reason or "rejected"
            self.stats.bars_rejected[reason] += 1
            self.journal.record_rejection(bar, stream[0], stream[1], reason, check.detail)
            log.warning("bar_rejected", symbol=bar.symbol, time=bar.time.isoformat(),
                        reason=reason, detail=check.detail)
            return
        if check.gap_bars:
            self.stats.gaps_flagged += 1
        self.journal.record_bar(bar, check.gap_bars)
        self._last_time[stream] = bar.time
        self.stats.bars_processed += 1

        for bf in self.broker.on_bar(bar):
            self.journal.record_fill(bf.fill, bf.kind, bf.realized_pnl)
            self.stats.fills += 1
            if bf.order is not None:
                before = self.journal.get_order(bf.fill.client_order_id)
                if before is not None and before.state is not bf.order.state:
                    self.journal.update_order(before, bf.order, detail=f"{bf.kind} fill",
                                              commit=False)

        snapshot = self._builders[stream].update(bar)
        try:
            ctx = StrategyContext(self.broker.position(bar.symbol), self.strategy_params)
            proposals = self.strategy.on_bar(snapshot, ctx)
        except Exception as exc:  # noqa: BLE001 - fail closed: no order, a journaled reason
            self.stats.errors["strategy_error"] += 1
            self.journal.record_rejection(bar, stream[0], stream[1], "strategy_error",
                                          f"{exc.__class__.__name__}: {exc}")
            log.error("strategy_error", symbol=bar.symbol, error=repr(exc))
            proposals = ()
        for proposal in proposals:
            self._decide(proposal, snapshot)
        self.stats.latencies_us.append((time.perf_counter_ns() - started) / 1e3)

    def _decide(self, proposal: Proposal, snapshot: MarketSnapshot) -> None:
        self.stats.proposals += 1
        proposal_id = self.journal.record_proposal(proposal, snapshot)
        decision = self.ensemble.evaluate(proposal, snapshot)
        decision_id = self.journal.record_decision(decision, proposal_id)
        self.stats.decisions += 1
        account = AccountState(self.broker.positions(), self.order_volume)
        verdict = self.guardrails.check(decision, account)
        self.journal.record_verdict(verdict, decision_id)
        if not verdict.approved:
            for c in verdict.checks:
                if not c.passed:
                    self.stats.vetoes[c.name] += 1
            log.info("decision_vetoed", symbol=proposal.symbol, decision_id=decision_id,
                     reasons=list(verdict.reasons))
            return
        self.stats.approved += 1
        intent = self._intent(decision, decision_id)
        order = self.router.submit(intent)
        self.stats.orders[order.state.value] += 1

    def _intent(self, decision: Decision, decision_id: int) -> OrderIntent:
        p = decision.proposal
        side = OrderSide.BUY if decision.direction is Direction.LONG else OrderSide.SELL
        coid = client_order_id(self.account, p.symbol, p.bar_time,
                               f"entry:{p.strategy}:{side.value}")
        return OrderIntent(
            client_order_id=coid, account=self.account, symbol=p.symbol, side=side,
            volume=self.order_volume, order_type=OrderType.MARKET, bar_time=p.bar_time,
            stop_loss=p.stop, take_profit=p.target, params_hash=self.params.content_hash,
            decision_id=decision_id)

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
                      watchdog_seconds: float = 10.0) -> None:
        """Live driver: one APScheduler job per timeframe at bar close + settle delay, until
        ``stop_requested`` is set (SIGTERM). The cycle in progress finishes before return."""
        from executor.scheduler import build_scheduler

        self.clock = WallClock()
        scheduler = build_scheduler(
            self._scheduled_cycle, [tf for _, tf in self.streams],
            settle_seconds=settle_seconds, misfire_grace_seconds=misfire_grace_seconds,
            server_utc_offset_hours=server_utc_offset_hours,
            watchdog=self.notifier.watchdog if self.notifier.enabled else None,
            watchdog_seconds=watchdog_seconds, blocking=False)
        scheduler.start()
        try:
            while not self.stop_requested.wait(0.5):
                pass
        finally:
            scheduler.shutdown(wait=True)

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
            "params_hash": self.params.content_hash,
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
        out["journal_orders_by_state"] = self.journal.order_counts()
        out["open_orders"] = len(self.journal.orders(
            self.account, [OrderState.SUBMITTING, OrderState.ACCEPTED, OrderState.UNKNOWN,
                           OrderState.PARTIALLY_FILLED]))
        return out
