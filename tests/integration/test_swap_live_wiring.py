"""`live` mode on a perpetual-swap account, wired end to end against the loopback USD-M fake:
``broker.ccxt.exchange = "binanceusdm"`` builds the swap broker, which sets the account up
(one-way mode, margin mode, leverage) before anything trades, and the daemon opens a short,
which a spot account cannot hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.binance_usdm import FakeBinanceUsdm
from support.daemon_helpers import cleared_journal, live_settings
from support.doubles import AlwaysLong

from domain.errors import ConfigError
from executor.engine.startup import start_live
from executor.settings import Settings
from executor.wiring import build_daemon
from strategies.registry import STRATEGIES

BTC = "BTC/USDT:USDT"


@pytest.fixture
def always_long() -> object:
    STRATEGIES[AlwaysLong.name] = AlwaysLong
    yield AlwaysLong
    STRATEGIES.pop(AlwaysLong.name, None)


def swap_settings(url: str, fake: FakeBinanceUsdm, **swap: Any) -> Settings:
    return live_settings(url, fake, AlwaysLong.name, lots=0.01, broker={
        "kind": "ccxt", "symbols": [BTC], "timeframe": "1m", "ccxt_api_urls": fake.api_urls(),
        "ccxt": {"exchange": "binanceusdm", "timeout_ms": 2000, "rate_limit_ms": 1},
        "swap": {"margin_mode": "isolated", "leverage": 3, **swap}})


def a_falling_minute(fake: FakeBinanceUsdm) -> datetime:
    """A moment whose newest closed 1m bar closes below the mean of the last 20 (the fake's
    candles follow an 11-minute cycle), the fake's clock moved there: momentum says short."""
    now = datetime.now(UTC)
    for minutes in range(11):
        t = now + timedelta(minutes=minutes)
        newest = int(t.timestamp() // 60) * 60_000 - 60_000
        closes = [float(fake.kline("BTCUSDT", newest - i * 60_000, 1)[4]) for i in range(20)]
        if closes[0] < sum(closes) / len(closes):
            fake.time_offset_ms = minutes * 60_000
            return t
    raise AssertionError("no falling minute in the fake's 11-minute cycle")


def test_live_swap_sets_the_account_up_and_opens_a_short(tmp_path: Path,
                                                         always_long: object) -> None:
    url = f"sqlite:///{tmp_path / 'swap.sqlite'}"
    with FakeBinanceUsdm() as fake:
        settings = swap_settings(url, fake)
        journal = cleared_journal(url, AlwaysLong.name)
        daemon = build_daemon(settings, journal)
        try:
            assert (fake.margin_type["BTCUSDT"], fake.leverage["BTCUSDT"]) == ("ISOLATED", 3)
            executor = daemon.executor
            executor.start()
            start_live(settings, daemon, journal)
            executor.run_cycle(a_falling_minute(fake))
            executor.stop()
        finally:
            daemon.live.lease.release()
        orders = journal.orders.all("bn-live")
        journal.close()
        amt = fake.positions["BTCUSDT"]["amt"]
    assert len(orders) == 1 and orders[0].intent.side.value == "sell"
    assert [o["clientOrderId"] for o in fake.orders] == [orders[0].client_order_id]
    assert amt == pytest.approx(-0.01)  # a short at the exchange


def test_a_hedge_mode_account_never_starts(tmp_path: Path, always_long: object) -> None:
    url = f"sqlite:///{tmp_path / 'swap.sqlite'}"
    with FakeBinanceUsdm() as fake:
        fake.dual_side = True
        journal = cleared_journal(url, AlwaysLong.name)
        with pytest.raises(ConfigError, match="hedge position mode"):
            build_daemon(swap_settings(url, fake), journal)
        # The lease was released: a corrected start is not refused as a second daemon.
        fake.dual_side = False
        daemon = build_daemon(swap_settings(url, fake), journal)
        daemon.live.lease.release()
        journal.close()
    assert fake.orders == []
