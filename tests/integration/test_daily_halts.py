"""The day's loss limits hold across parameter versions and restarts (issue 15, defect 3).

A desk's daily limits are about the trading day, not about a process or a parameter set:
- the daily drawdown halt measures equity against the day's start equity;
- ``max_daily_loss`` blocks new exposure once the day's loss reaches the limit;
- the broker-error halt counts errors within its window.
Every approval verdict makes a parameter version, and systemd restarts the daemon after a
crash; neither may start the day (or the error window) over. Thresholds may change with a
version: the new threshold applies to the same day's baseline.

The venue here is a paper account whose equity the test scripts bar by bar (the account's
equity is all these limits read), on the real daemon wired as `dta run` wires it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon_helpers import registered_always_buy, settings_for
from support.samples import write_sample_head

from domain.errors import TemporaryVenueError
from executor.daemon import RealtimeExecutor
from executor.engine.clock import SimulatedClock
from executor.journal.store import Journal
from executor.wiring import Daemon, build_daemon
from guardrails.params import activate, active_version, propose
from guardrails.state import TradingState, current_state


@pytest.fixture
def always_buy() -> Iterator[object]:
    yield from registered_always_buy()


class Session:
    """One daemon process over the journal at ``url``: scripted equity, bar by bar."""

    def __init__(self, url: str, data: Path, equity: Callable[[int], float],
                 **overrides: Any) -> None:
        self.journal = Journal.open(url)
        self.daemon: Daemon = build_daemon(settings_for(url, **overrides), self.journal,
                                           data=data)
        self.ex: RealtimeExecutor = self.daemon.executor
        self.ex.poll_seconds = 0.0  # follow operator changes at every cycle
        self.clock = SimulatedClock()
        self.ex.clock = self.clock
        self.ex.broker.equity = lambda: equity(self.ex.stats.bars_processed)  # type: ignore
        self.ex.start()

    def bars(self, n: int) -> None:
        for _ in range(n):
            t = self.daemon.feed.next_close_time()  # type: ignore[union-attr]
            assert t is not None
            self.clock.advance_to(t)
            self.ex.run_cycle(self.clock.now())

    def state(self) -> TradingState:
        return current_state(self.journal.trading_state)

    def close(self) -> None:
        self.ex.stop("stopped")
        self.journal.close()


def _halts(**guardrails: Any) -> dict[str, Any]:
    base = {"max_daily_loss": None, "daily_drawdown_halt_pct": None, "min_stop_atr": None,
            "max_spread": None}
    return {"guardrails": {**base, **guardrails}}


def test_daily_drawdown_survives_a_new_parameter_version(journal_url: str,
                                                          tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    # 10,000 at the day's first bar, -3 % by bar 3, -6 % from bar 6 on.
    s = Session(journal_url, data, lambda n: 10_000.0 if n <= 1 else 9_700.0 if n <= 5
                else 9_400.0, **_halts(daily_drawdown_halt_pct=5.0))
    try:
        s.bars(4)
        assert s.state() is TradingState.ACTIVE
        # An operator activates a version with a looser threshold (5.5 %) mid-day.
        active = active_version(s.journal.params)
        assert active is not None
        content = dict(active.content)
        content["guardrails"] = {**content["guardrails"], "daily_drawdown_halt_pct": 5.5}
        v = propose(s.journal.params, content, author="ops", reason="looser halt")
        activate(s.journal.params, v.version, operator="ops", reason="test")
        s.bars(4)
        assert s.ex.c.version == v.version  # the daemon runs the new version
        assert s.state() is TradingState.HALTED  # 6 % down from the day's 10,000
    finally:
        s.close()


def test_daily_drawdown_survives_a_restart(journal_url: str, tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    s = Session(journal_url, data, lambda n: 10_000.0 if n <= 1 else 9_700.0,
                **_halts(daily_drawdown_halt_pct=5.0))
    try:
        s.bars(4)
        assert s.state() is TradingState.ACTIVE
    finally:
        s.close()
    s = Session(journal_url, data, lambda n: 9_400.0, **_halts(daily_drawdown_halt_pct=5.0))
    try:
        s.bars(2)
        assert s.state() is TradingState.HALTED
    finally:
        s.close()


def test_max_daily_loss_keeps_the_day_start_across_a_restart(
        journal_url: str, tmp_path: Path, always_buy: object) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    limits = _halts(max_daily_loss=500.0, max_position_lots=100.0,
                    max_gross_exposure_lots=100.0, max_order_notional=1e12)
    strategy = {"strategy": {"name": "test_always_buy", "params": {}},
                "ensemble": {"providers": [{"name": "momentum", "kind": "momentum",
                                            "params": {"period": 5}}]}}
    s = Session(journal_url, data, lambda n: 10_000.0 if n <= 1 else 9_600.0,
                **limits, **strategy)
    try:
        s.bars(4)
    finally:
        s.close()
    s = Session(journal_url, data, lambda n: 9_450.0, **limits, **strategy)
    try:
        s.bars(3)
        assert s.ex.stats.vetoes["max_daily_loss"] >= 1  # 550 lost today, limit 500
        assert s.ex.triggers.day_start_equity == 10_000.0
    finally:
        s.close()


def test_broker_error_window_survives_a_restart_and_a_new_version(
        journal_url: str, tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    limits = _halts(broker_error_halt_count=3, broker_error_window_seconds=86_400.0)

    def failing(s: Session, cycles: set[int]) -> None:
        real = s.ex.feed.closed_bars
        count = {"n": 0}

        def closed_bars(*args: Any) -> Any:
            count["n"] += 1
            if count["n"] in cycles:
                raise TemporaryVenueError("feed away: connection reset")
            return real(*args)

        s.ex.feed.closed_bars = closed_bars  # type: ignore[method-assign]

    s = Session(journal_url, data, lambda n: 10_000.0, **limits)
    try:
        failing(s, {2})
        s.bars(3)
        active = active_version(s.journal.params)
        assert active is not None
        content = dict(active.content)
        content["guardrails"] = {**content["guardrails"], "broker_error_halt_count": 3,
                                 "max_orders_per_minute": 9}
        v = propose(s.journal.params, content, author="ops", reason="another version")
        activate(s.journal.params, v.version, operator="ops", reason="test")
        failing(s, {1})  # the first cycle after the new version's poll
        s.bars(2)
        assert s.ex.c.version == v.version
        assert s.state() is TradingState.ACTIVE  # two errors so far
    finally:
        s.close()
    s = Session(journal_url, data, lambda n: 10_000.0, **limits)
    try:
        failing(s, {1})
        s.bars(2)
        assert s.state() is TradingState.HALTED  # the third error in the window
    finally:
        s.close()


def test_a_trigger_right_after_a_release_elsewhere_still_halts(sqlite_url: str) -> None:
    """The daemon reads the trading state through a 0.25 s cache. An operator's release in
    another process, then a daily-drawdown trigger in the daemon within that quarter second:
    the trigger must see the release (ACTIVE) and halt again, not the cached HALTED, which
    made it write nothing and left trading ACTIVE until the next bar."""
    from guardrails.state import set_state

    daemon_journal, operator_journal = Journal.open(sqlite_url), Journal.open(sqlite_url)
    try:
        set_state(daemon_journal.trading_state, TradingState.HALTED, operator="system",
                  reason="daily drawdown", trigger="daily_drawdown")
        assert current_state(daemon_journal.trading_state) is TradingState.HALTED  # now cached
        set_state(operator_journal.trading_state, TradingState.ACTIVE, operator="ann",
                  reason="reviewed")
        assert set_state(daemon_journal.trading_state, TradingState.HALTED, operator="system",
                         reason="still 6 % down", trigger="daily_drawdown")
        assert current_state(operator_journal.trading_state, fresh=True) is TradingState.HALTED
    finally:
        daemon_journal.close()
        operator_journal.close()
