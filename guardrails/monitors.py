"""Automatic triggers, fed by the executor after every bar. Each returns what should
happen (a trading-state change or a parameter rollback) and why; the executor journals and
applies it, so the rules stay pure and table-testable.

- Daily drawdown: equity down ``halt_pct`` % from the day's start (UTC day) -> HALTED.
- Broker errors: ``count`` errors within ``window`` -> HALTED.
- Stale or missing bars (live): no new bar for ``stale_bars`` bar lengths -> REDUCING.
- Provider classes down (a required class has no provider available) -> REDUCING.
- Reconciliation mismatch -> HALTED (reported by the reconciler, applied directly).
- Regression since the active parameter version was activated: drawdown from the
  activation equity, a veto-rate spike over the last N decisions, or an error spike ->
  automatic rollback to the last known-good version plus REDUCING, and an incident.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from guardrails.state import TradingState

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Trigger:
    name: str
    reason: str
    state: TradingState | None = None  # a trading-state change
    rollback: bool = False  # an automatic parameter rollback (with REDUCING)


class DailyDrawdownMonitor:
    def __init__(self, halt_pct: float) -> None:
        self.halt_pct = halt_pct
        self.day: datetime | None = None
        self.start_equity: float | None = None

    def seed(self, day: datetime, start_equity: float) -> None:
        """Continue a day begun elsewhere: before a restart, or under another parameter
        version. A new threshold applies to the same day's baseline; it never starts the
        day over (a loss already past the limit stays past it)."""
        self.day, self.start_equity = day, start_equity

    def observe(self, now: datetime, equity: float) -> Trigger | None:
        day = self.day
        if day is None or not day <= now < day + _DAY:  # another UTC day (asked every bar)
            self.day, self.start_equity = now.replace(hour=0, minute=0, second=0,
                                                      microsecond=0), equity
        assert self.start_equity is not None
        if self.start_equity <= 0:
            return None
        dd = (self.start_equity - equity) / self.start_equity * 100
        if dd >= self.halt_pct:
            return Trigger("daily_drawdown", f"equity {equity:,.2f} is {dd:.2f} % below the "
                           f"day's start {self.start_equity:,.2f} (limit {self.halt_pct:g} %)",
                           state=TradingState.HALTED)
        return None


class ErrorRateMonitor:
    def __init__(self, name: str, count: int, window: timedelta,
                 state: TradingState = TradingState.HALTED) -> None:
        self.name = name
        self.count = count
        self.window = window
        self.state = state
        self.times: deque[datetime] = deque()

    def seed(self, times: Sequence[datetime]) -> None:
        """Errors seen before a restart or under another parameter version still count
        within the window."""
        self.times = deque(times)

    def error(self, now: datetime) -> Trigger | None:
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        if len(self.times) >= self.count:
            return Trigger(self.name, f"{len(self.times)} errors within "
                           f"{self.window.total_seconds():.0f} s (limit {self.count})",
                           state=self.state)
        return None


class StaleFeedMonitor:
    def __init__(self, stale_bars: float, bar_seconds: int) -> None:
        self.limit = timedelta(seconds=stale_bars * bar_seconds)

    def observe(self, now: datetime, last_close: datetime | None) -> Trigger | None:
        if last_close is not None and now - last_close > self.limit:
            return Trigger("stale_bars", f"no new bar since {last_close.isoformat()} "
                           f"({(now - last_close).total_seconds():.0f} s)",
                           state=TradingState.REDUCING)
        return None


def providers_down_trigger(classes_down: tuple[str, ...],
                           required: tuple[str, ...]) -> Trigger | None:
    down = [c for c in required if c in classes_down]
    if down:
        return Trigger("providers_down", f"every provider of {', '.join(down)} is down",
                       state=TradingState.REDUCING)
    return None


def reconciliation_trigger(report_ok: bool, detail: str) -> Trigger | None:
    if report_ok:
        return None
    return Trigger("reconciliation_mismatch", detail, state=TradingState.HALTED)


class RegressionMonitor:
    """Watches the active parameter version since its activation."""

    def __init__(self, *, drawdown_pct: float | None = None, veto_rate: float | None = None,
                 veto_window: int = 20, error_count: int | None = None,
                 error_window: int = 50) -> None:
        self.drawdown_pct = drawdown_pct
        self.veto_rate = veto_rate
        self.veto_window = veto_window
        self.error_count = error_count
        self.error_window = error_window
        self.reset(None)

    def reset(self, equity: float | None) -> None:
        """A new version became active: measure from here."""
        self.activation_equity = equity
        self.vetoes: deque[bool] = deque(maxlen=self.veto_window)
        self.errors: deque[bool] = deque(maxlen=self.error_window)
        self._errors_in_window = 0  # sum(self.errors), kept in step: ``cycle`` runs per bar

    def decision(self, vetoed: bool) -> Trigger | None:
        self.vetoes.append(vetoed)
        if (self.veto_rate is not None and len(self.vetoes) == self.veto_window
                and sum(self.vetoes) / self.veto_window >= self.veto_rate):
            return Trigger("veto_spike", f"{sum(self.vetoes)} of the last {self.veto_window} "
                           f"decisions vetoed (limit {self.veto_rate:.0%})", rollback=True)
        return None

    def cycle(self, had_error: bool) -> Trigger | None:
        errors = self.errors
        if len(errors) == errors.maxlen:
            self._errors_in_window -= errors[0]  # about to fall out of the window
        errors.append(had_error)
        self._errors_in_window += had_error
        if self.error_count is not None and self._errors_in_window >= self.error_count:
            return Trigger("error_spike", f"{self._errors_in_window} errors in the last "
                           f"{len(errors)} bars (limit {self.error_count})", rollback=True)
        return None

    def equity(self, equity: float) -> Trigger | None:
        if self.activation_equity is None:
            self.activation_equity = equity
            return None
        if self.drawdown_pct is None or self.activation_equity <= 0:
            return None
        dd = (self.activation_equity - equity) / self.activation_equity * 100
        if dd >= self.drawdown_pct:
            return Trigger("drawdown_since_activation",
                           f"equity {equity:,.2f} is {dd:.2f} % below {self.activation_equity:,.2f}"
                           f" at activation (limit {self.drawdown_pct:g} %)", rollback=True)
        return None
