"""Build and drive the real daemon (same wiring as `dta run`) inside a test."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from domain import Direction, MarketSnapshot, Proposal
from executor.engine.clock import SimulatedClock
from executor.journal.store import Journal
from executor.settings import Settings, load_settings
from executor.wiring import Daemon, build_daemon
from strategies.logic import StrategyContext
from support.builders import a_proposal

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "dta.example.toml"


def settings_for(url: str, **overrides: Any) -> Settings:
    journal = {"url": url, **overrides.pop("journal", {})}
    return load_settings(EXAMPLE, journal=journal, **overrides)


def replay(url: str, data: Path, *, stop_after: int | None = None,
           **overrides: Any) -> dict[str, Any]:
    """Run a replay of ``data`` into the journal at ``url``; stop cleanly after
    ``stop_after`` cycles when given. Returns the run summary."""
    settings = settings_for(url, **overrides)
    journal = Journal.open(settings.journal.url)
    try:
        daemon = build_daemon(settings, journal, data=data)
        return drive(daemon, stop_after)
    finally:
        journal.close()


def drive(daemon: Daemon, stop_after: int | None = None) -> dict[str, Any]:
    executor = daemon.executor
    executor.start()
    calls = 0

    def next_close() -> Any:
        nonlocal calls
        calls += 1
        if stop_after is not None and calls > stop_after:
            return None
        return daemon.feed.next_close_time()

    executor.run_replay(SimulatedClock(), next_close)
    return executor.stop("stopped" if stop_after else "completed")


class AlwaysBuy:
    """Test strategy: a long on every bar, flat or not (each one adds exposure)."""

    name = "test_always_buy"

    def __init__(self, **_params: object) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        c = snapshot.bar.close
        return (a_proposal(strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
                           bar_time=snapshot.bar.time, direction=Direction.LONG, entry=c,
                           stop=c * 0.99, target=c * 1.02, reason="test", tags=("bos_bullish",)),)


class AlwaysLongOnDown:
    """A long on every bar that closed below its open: the momentum provider, reading the
    same falling market, votes short, so every proposal is a conflict for the queue."""

    name = "test_long_into_weakness"

    def __init__(self, **_params: object) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        b = snapshot.bar
        if b.close >= b.open:
            return ()
        return (a_proposal(strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
                           bar_time=b.time, direction=Direction.LONG, entry=b.close,
                           stop=b.close - 0.0030, target=b.close + 0.0060, reason="test"),)


def conflict_overrides(ttl_seconds: float = 30 * 86400) -> dict[str, Any]:
    """Settings under which ``AlwaysLongOnDown`` queues every proposal for approval (the
    momentum provider against it), with requests that wait ``ttl_seconds``."""
    return dict(
        strategy={"name": AlwaysLongOnDown.name, "params": {}},
        ensemble={"providers": [{"name": "momentum", "kind": "momentum",
                                 "params": {"period": 5}}]},
        guardrails={"approval_ttl_seconds": ttl_seconds, "max_position_lots": 100.0,
                    "max_gross_exposure_lots": 100.0,
                    "max_order_notional": 1e9, "max_orders_per_minute": 1000,
                    "min_stop_atr": None, "max_spread": None,
                    "max_daily_loss": None, "daily_drawdown_halt_pct": None,
                    "consensus": {"rule": "either", "min_agreement": 1,
                                  "min_confidence": 0.0, "conflict_margin": 1.0}})


def registered_always_buy() -> Iterator[type[AlwaysBuy]]:
    """For a fixture: ``AlwaysBuy`` buildable by name while the test runs."""
    from strategies.registry import STRATEGIES

    STRATEGIES[AlwaysBuy.name] = AlwaysBuy
    try:
        yield AlwaysBuy
    finally:
        STRATEGIES.pop(AlwaysBuy.name, None)


def live_settings(url: str, fake: Any, strategy: str, *, max_daily_loss: float | None = None,
                  ccxt: dict[str, Any] | None = None, broker: dict[str, Any] | None = None,
                  lots: float = 0.001) -> Settings:
    """Live on the loopback ccxt exchange ``fake`` (tests/fakes/binance_fake.py), account
    ``bn-live``, one BTC/USDT 1m stream (``broker`` replaces that section: another venue),
    ``strategy`` with the momentum provider, consensus of one, and limits sized for
    orders of ``lots``."""
    return settings_for(
        url, mode="live", account="bn-live",
        exchange_api_key=fake.api_key, exchange_api_secret=fake.secret,
        strategy={"name": strategy, "params": {}},
        ensemble={"providers": [{"name": "momentum", "kind": "momentum",
                                 "params": {"period": 20}}]},
        paper={"contract_size": 1.0, "order_volume_lots": lots},
        guardrails={"stale_after_bars": 1.5, "max_position_lots": lots * 10,
                    "max_order_notional": 1000.0, "max_spread": None,
                    "min_stop_atr": None, "max_daily_loss": max_daily_loss,
                    "consensus": {"rule": "either", "min_agreement": 1,
                                  "min_confidence": 0.0, "conflict_margin": 1.0}},
        broker=broker or {"kind": "ccxt", "symbols": ["BTC/USDT"], "timeframe": "1m",
                          "ccxt_api_urls": fake.api_urls(),
                          "ccxt": {"timeout_ms": 2000, "rate_limit_ms": 1, **(ccxt or {})}})


def swap_settings(url: str, fake: Any, strategy: str, *, ccxt: dict[str, Any] | None = None,
                  **swap: Any) -> Settings:
    """``live_settings`` on the loopback USD-M fake (tests/fakes/binance_usdm): one
    BTC/USDT:USDT 1m stream, orders of 0.01, isolated at leverage 3 unless ``swap`` says
    otherwise; ``ccxt`` entries over the exchange section's."""
    return live_settings(url, fake, strategy, lots=0.01, broker={
        "kind": "ccxt", "symbols": ["BTC/USDT:USDT"], "timeframe": "1m",
        "ccxt_api_urls": fake.api_urls(),
        "ccxt": {"exchange": "binanceusdm", "timeout_ms": 2000, "rate_limit_ms": 1,
                 **(ccxt or {})},
        "swap": {"margin_mode": "isolated", "leverage": 3, **swap}})


def cleared_journal(url: str, strategy: str) -> Journal:
    """The journal with the desk's clearance of ``strategy`` for live on ``bn-live``."""
    journal = Journal.open(url)
    journal.clearances.record_clearance(account="bn-live", strategy=strategy, action="promote",
                                        mode="live", person="desk", note="test")
    return journal


def registered(strategy: type[Any]) -> Iterator[type[Any]]:
    """For a fixture: ``strategy`` buildable by its ``name`` while the test runs."""
    from strategies.registry import STRATEGIES

    STRATEGIES[strategy.name] = strategy
    try:  # also when the block it serves raises (it is used as a context manager too)
        yield strategy
    finally:
        STRATEGIES.pop(strategy.name, None)


# A new Binance account holds only its quote currency; strategies that also sell need base
# asset the account already holds, so their accounts start with some.
FUNDED = {"USDT": 1_000_000.0, "BTC": 10.0}


@contextmanager
def live_daemon(url: str, fake: Any, strategy: str, *,
                settings: Settings | None = None) -> Iterator[Daemon]:
    """The live daemon on the loopback exchange ``fake`` as `dta run` starts it: cleared
    for live, started, reconciled; the lease released and the journal closed after."""
    from executor.engine.startup import start_live

    settings = settings or live_settings(url, fake, strategy)
    journal = cleared_journal(url, strategy)
    daemon = build_daemon(settings, journal)
    try:
        daemon.executor.start()
        start_live(settings, daemon, journal)
        yield daemon
    finally:
        daemon.live.lease.release()
        journal.close()


def a_rising_minute(fake: Any, symbol_id: str = "BTCUSDT") -> datetime:
    """A moment, at most ten minutes ahead, whose newest closed 1m bar on ``fake`` closes
    above the mean of the last 20 closes (the fake's candles follow an 11-minute cycle), with
    the fake's clock moved there. Tests whose strategy follows momentum get a long there: a
    spot account holds no shorts, so a falling minute would give them no order at all."""
    from datetime import UTC, timedelta

    now = datetime.now(UTC)
    for minutes in range(11):
        t = now + timedelta(minutes=minutes)
        newest = int(t.timestamp() // 60) * 60_000 - 60_000
        closes = [float(fake.kline(symbol_id, newest - i * 60_000, 1)[4]) for i in range(20)]
        if closes[0] > sum(closes) / len(closes):
            fake.time_offset_ms = minutes * 60_000
            return t
    raise AssertionError("no rising minute in the fake's 11-minute cycle")


def a_falling_minute(fake: Any) -> datetime:
    """A moment whose newest closed 1m bar on the USD-M ``fake`` closes below the mean of
    the last 20 (the fake's candles follow an 11-minute cycle), and so do the bars a
    minute either side (a minute boundary crossed while the test runs changes nothing),
    the fake's clock moved there: momentum says short."""
    from datetime import UTC, timedelta

    def falling(newest: int) -> bool:
        closes = [float(fake.kline("BTCUSDT", newest - i * 60_000, 1)[4]) for i in range(20)]
        return closes[0] < sum(closes) / len(closes)

    now = datetime.now(UTC)
    for minutes in range(12):
        t = now + timedelta(minutes=minutes)
        newest = int(t.timestamp() // 60) * 60_000 - 60_000
        if all(falling(newest + d * 60_000) for d in (-1, 0, 1, 2)):
            fake.time_offset_ms = minutes * 60_000
            return t
    raise AssertionError("no falling minutes in the fake's 11-minute cycle")
