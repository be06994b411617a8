"""Automatic triggers: what the monitors see turned into the trading state, a rollback of
the parameter set, or an incident.

The monitors watch the run's equity (the day's drawdown, the regression since the active
version), its decisions and errors, the broker's error rate, the providers and (live) the
feed. A trigger never relaxes the trading state: only an operator does that.

The day's equity baseline and the broker-error window live here too: both are journaled,
so a restart continues the day instead of starting its loss limits over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from domain import Bar, timeframe_seconds
from domain.errors import VenueError
from executor.brokers.base import Broker
from executor.components import Components
from executor.engine.stats import RunStats
from executor.journal.store import Journal
from executor.settings import GuardrailSettings
from guardrails.monitors import (
    DailyDrawdownMonitor,
    ErrorRateMonitor,
    RegressionMonitor,
    StaleFeedMonitor,
    Trigger,
    providers_down_trigger,
)
from guardrails.params import ParamError, ParamVersion, rollback
from guardrails.state import TradingState, set_state

log = structlog.get_logger("dta.executor")

_DAY = timedelta(days=1)

Stream = tuple[str, str]  # (symbol, timeframe)


def classes_down(c: Components) -> tuple[str, ...]:
    """The required provider classes with every provider down (the ensemble's health)."""
    health = getattr(c.ensemble, "classes_down", None)
    if not callable(health):
        return ()
    return tuple(health(c.guard.required_provider_classes))


class Triggers:
    def __init__(self, *, journal: Journal, broker: Broker, account: str, stats: RunStats,
                 streams: Sequence[Stream], last_time: Mapping[Stream, datetime | None],
                 watch_feed: bool, on_rollback: Callable[[ParamVersion], None]) -> None:
        self.journal = journal
        self.broker = broker
        self.account = account
        self.stats = stats
        self.streams = streams
        self.last_time = last_time  # the cycle's: the last bar time per stream
        # A live feed is watched for silence (``watch``); a replay's clock only moves to
        # the next bar, so its feed cannot fall silent.
        self.watch_feed = watch_feed
        self.on_rollback = on_rollback  # runs the rolled-back-to version from now on
        self.c: Components  # set by the executor with every parameter version
        self._equity_failure: VenueError | None = None  # the last failed equity read
        self.day_opened: datetime | None = None  # midnight UTC starting the equity day
        self.day_start_equity: float | None = None
        self.regression: RegressionMonitor
        self.drawdown: DailyDrawdownMonitor | None = None
        self.broker_errors: ErrorRateMonitor

    # ------------------------------------------------------------------ set-up

    def new_thresholds(self, g: GuardrailSettings, *, keep_errors: bool) -> None:
        """Monitors with another parameter version's thresholds. Same day and same error
        window (``seed``): a version change (every approval verdict makes one) must not
        reset the daily halts."""
        self.regression = RegressionMonitor(
            drawdown_pct=g.regression.drawdown_pct, veto_rate=g.regression.veto_rate,
            veto_window=g.regression.veto_window, error_count=g.regression.error_count,
            error_window=g.regression.error_window)
        self.regression.reset(self.equity())
        self.drawdown = (DailyDrawdownMonitor(g.daily_drawdown_halt_pct)
                         if g.daily_drawdown_halt_pct else None)
        if (self.drawdown is not None and self.day_opened is not None
                and self.day_start_equity is not None):
            self.drawdown.seed(self.day_opened, self.day_start_equity)
        errors = ErrorRateMonitor(
            "broker_errors", g.broker_error_halt_count,
            timedelta(seconds=g.broker_error_window_seconds))
        if keep_errors:
            errors.seed(self.broker_errors.times)
        self.broker_errors = errors

    def restore(self) -> None:
        """Start-up: the day's baseline and the broker-error window continue from the
        journal, so a restart never starts the day's loss limits over. The active version's
        activation is measured from here after a restart (documented approximation)."""
        baseline = self.journal.risk_days.day_start(self.account)
        if baseline is not None:
            self.day_opened, self.day_start_equity = baseline
            if self.drawdown is not None:
                self.drawdown.seed(*baseline)
        else:
            self.day_start_equity = self.equity()
        self.broker_errors.seed(self.journal.risk_days.broker_error_times(
            self.account, self.c.guard.broker_error_halt_count))
        self.regression.reset(self.equity())

    # ------------------------------------------------------------------ readings

    def equity(self) -> float | None:
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

    def after_bar(self, bar: Bar, now: datetime, had_error: bool) -> None:
        equity = self.equity()
        closed = bar.close_time
        start = self.day_opened
        if start is None or not start <= closed < start + _DAY:  # another UTC day
            self._open_day(closed.replace(hour=0, minute=0, second=0, microsecond=0), equity)
        elif self.day_start_equity is None and equity is not None:
            # The broker could not tell equity at the day's first bar: the day starts at its
            # first reading, instead of max_daily_loss vetoing every entry until tomorrow.
            self._open_day(start, equity)
            log.warning("day_start_equity_late", day=str(start.date()), equity=equity)
        triggers = [self.regression.cycle(had_error)]
        if equity is not None:
            triggers.append(self.regression.equity(equity))
            if self.drawdown is not None:
                triggers.append(self.drawdown.observe(closed, equity))
        for trigger in triggers:
            if trigger is not None:
                self.fire(trigger)

    def _open_day(self, day: datetime, equity: float | None) -> None:
        """The day's baseline (journaled once per day: the first reading stands)."""
        self.day_opened, self.day_start_equity = day, equity
        if equity is not None:
            self.journal.risk_days.record_day_start(self.account, day, equity)
            if self.drawdown is not None:
                self.drawdown.seed(day, equity)

    def broker_error(self, now: datetime, kind: str, detail: str) -> None:
        """Count a broker error toward the halt, journaled so the window survives."""
        self.journal.risk_days.record_broker_error(self.account, now, kind, detail)
        trigger = self.broker_errors.error(now)
        if trigger is not None:
            self.fire(trigger)

    def watch(self, now: datetime) -> None:
        """The automatic triggers a cycle itself can see: a required provider class with
        every provider down, and (a live feed only) a stream whose feed went silent, with
        no error and no bar for ``stale_after_bars`` bar lengths. Each sets REDUCING with
        an incident (``fire``: once, while the state holds)."""
        g = self.c.guard
        if g.required_provider_classes:
            trigger = providers_down_trigger(classes_down(self.c),
                                             tuple(g.required_provider_classes))
            if trigger is not None:
                self.fire(trigger)
        if not self.watch_feed or g.stale_after_bars is None:
            return
        for stream in self.streams:
            last = self.last_time[stream]
            if last is None:
                continue
            tf = timeframe_seconds(stream[1])
            trigger = StaleFeedMonitor(g.stale_after_bars, tf).observe(
                now, last + timedelta(seconds=tf))
            if trigger is not None:
                self.fire(replace(trigger, reason=f"{stream[0]} {stream[1]}: "
                                                  f"{trigger.reason}"))

    # ------------------------------------------------------------------ acting

    def fire(self, trigger: Trigger) -> None:
        """Apply an automatic trigger: journal it, change state or roll back, open an
        incident. A trigger never relaxes the trading state."""
        if trigger.rollback:
            self._roll_back(trigger)
            return
        if trigger.state is not None and set_state(
                self.journal.trading_state, trigger.state, operator="system", reason=trigger.reason,
                trigger=trigger.name):
            severity = "critical" if trigger.state is TradingState.HALTED else "high"
            self.journal.incidents.open_incident(
                severity, f"{trigger.state.value.lower()}:{trigger.name}", trigger.reason)
            log.warning("trading_state_changed", state=trigger.state.value,
                        trigger=trigger.name, reason=trigger.reason)

    def _roll_back(self, trigger: Trigger) -> None:
        try:
            target = rollback(self.journal.params, operator="system", reason=trigger.reason,
                              automatic=True, trigger=trigger.name)
        except ParamError as exc:
            self.journal.incidents.open_incident("high", f"rollback_failed:{trigger.name}",
                                                 f"{trigger.reason}; {exc}")
            set_state(self.journal.trading_state, TradingState.HALTED, operator="system",
                      reason=f"{trigger.reason}; no version to roll back to",
                      trigger=trigger.name)
            self.regression.reset(self.equity())
            return
        self.on_rollback(target)
        set_state(self.journal.trading_state, TradingState.REDUCING, operator="system",
                  reason=f"automatic rollback to v{target.version}: {trigger.reason}",
                  trigger=trigger.name)
        self.journal.incidents.open_incident("high", f"auto_rollback:{trigger.name}",
                                             f"rolled back to version {target.version}: "
                                             f"{trigger.reason}", {"to_version": target.version})
        self.stats.rollbacks += 1
        log.warning("auto_rollback", trigger=trigger.name, to_version=target.version,
                    reason=trigger.reason)
