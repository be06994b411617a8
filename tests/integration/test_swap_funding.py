"""Funding payments of a live perpetual-swap account journaled as costs, through the daemon
as `dta run` starts it, with the real ``ccxt.binanceusdm`` against the loopback USD-M
fake.

Binance settles funding every 8 hours (00:00, 08:00, 16:00 UTC) and books each payment
in the income history ("Get Income History", ``GET /fapi/v1/income``, FUNDING_FEE): a
short pays when the rate is negative. The daemon reads that history once after each
settlement (not every bar), records each payment once by its exchange id, tries a failed
read again at the next cycle, and after a restart reads from the newest payment it
journaled; the payment counts in the day's figures and in the equity the daily limits
read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.binance_usdm import FakeBinanceUsdm
from support.daemon_helpers import a_falling_minute, live_daemon, registered, swap_settings
from support.doubles import AlwaysLong

from executor.engine.funding import FundingPoller
from executor.journal.day_figures import day_figures
from executor.journal.store import Journal
from executor.notify.summary import summary_notice

INCOME = ("GET", "/fapi/v1/income")
EIGHT_H_MS = 8 * 3_600_000


@pytest.fixture
def always_long() -> Iterator[type[AlwaysLong]]:
    yield from registered(AlwaysLong)


def at(fake: FakeBinanceUsdm, moment: datetime) -> datetime:
    """The fake's clock moved to ``moment`` (the daemon's cycle time)."""
    fake.time_offset_ms = int(moment.timestamp() * 1000 - time.time() * 1000) + 1  # not before
    return moment


def poller(daemon: Any) -> FundingPoller:
    [found] = [h for h in daemon.executor.before_cycle if isinstance(h, FundingPoller)]
    return found


def costs(url: str) -> list[Any]:
    reader = Journal.open(url)  # a fresh session: what the daemon committed
    try:
        return reader.costs.costs("bn-live")
    finally:
        reader.close()


def test_funding_is_journaled_once_per_settlement_and_counts_in_the_day(
        tmp_path: Path, always_long: type[AlwaysLong]) -> None:
    url = f"sqlite:///{tmp_path / 'swap.sqlite'}"
    with FakeBinanceUsdm() as fake:
        settings = swap_settings(url, fake, AlwaysLong.name,
                                 ccxt={"read_retries": 1, "read_backoff_seconds": 0.0})
        with live_daemon(url, fake, AlwaysLong.name, settings=settings) as daemon:
            ex, funding = daemon.executor, poller(daemon)
            ex.run_cycle(a_falling_minute(fake))  # a short opens; funding read once
            assert fake.positions["BTCUSDT"]["amt"] == pytest.approx(-0.01)
            assert funding.reads == 1
            equity_before = ex.triggers.equity()
            # The next settlement: the short pays at a negative rate.
            now_ms = fake.now_ms()
            settlement = datetime.fromtimestamp(
                (now_ms - now_ms % EIGHT_H_MS + EIGHT_H_MS) / 1000, UTC)
            at(fake, settlement)
            paid = fake.charge_funding("BTCUSDT", -0.0005)
            assert paid == pytest.approx(-0.15)
            # The exchange is away when the daemon first reads it: nothing recorded,
            # nothing lost, the cycle goes on.
            fake.script(*INCOME, ("http", 503), ("http", 503))
            ex.run_cycle(at(fake, settlement + timedelta(minutes=2)))
            assert fake.faults[INCOME] == deque() and funding.reads == 1
            assert costs(url) == []
            ex.run_cycle(at(fake, settlement + timedelta(minutes=3)))  # tried again
            assert funding.reads == 2
            [cost] = costs(url)
            requests = fake.requests.count(INCOME)
            for minute in (4, 5, 6):  # until the next settlement: no read at all
                ex.run_cycle(at(fake, settlement + timedelta(minutes=minute)))
            assert fake.requests.count(INCOME) == requests and funding.reads == 2
            time.sleep(1.1)  # the broker's equity is read at most once a second
            equity_after = ex.triggers.equity()
            ex.stop("stopped")
        # A restart reads from the newest payment journaled: the same payment comes
        # back and is not recorded again.
        with live_daemon(url, fake, AlwaysLong.name, settings=settings) as daemon:
            daemon.executor.run_cycle(at(fake, settlement + timedelta(minutes=7)))
            assert poller(daemon).reads == 1
            daemon.executor.stop("stopped")
        tran_id = [r["tranId"] for r in fake.income if r["incomeType"] == "FUNDING_FEE"]
    assert costs(url) == [cost]
    assert (cost.cost_id, cost.kind, cost.symbol, cost.currency) == (
        f"binanceusdm:funding:{tran_id[0]}", "funding", "BTC/USDT:USDT", "USDT")
    assert cost.amount == pytest.approx(-0.15)
    assert timedelta(0) <= cost.time - settlement < timedelta(seconds=5)
    # The equity the daily limits read (the exchange's margin balance) paid it too.
    assert equity_after - equity_before == pytest.approx(-0.15, abs=1e-6)
    day = cost.time.replace(hour=0, minute=0, second=0, microsecond=0)
    reader = Journal.open(url)
    try:
        figures = day_figures(reader.uow, "bn-live", day, day + timedelta(days=1))
    finally:
        reader.close()
    assert figures.funding == pytest.approx(-0.15)
    assert figures.net_pnl == pytest.approx(figures.realised_pnl - figures.fees - 0.15)
    assert "funding -0.15" in summary_notice("bn-live", figures, "").body
