"""MT5 feed through the real bridge: the forming bar (position 0, the LAST row of
copy_rates_from_pos(.., 0, n)) never comes out, server time becomes UTC, symbol_select
runs before use, and a restart catches up by paging backwards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fakes import mt5_fake as M
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge

from executor.brokers.mt5_client import Mt5Client
from executor.feeds.base import Feed
from executor.feeds.mt5 import Mt5Feed
from executor.feeds.validator import BarValidator

NOW = datetime(2024, 3, 4, 10, 7, 30, tzinfo=UTC)  # 7.5 minutes into the 10:00 M15 bar


@pytest.fixture
def fake() -> FakeMetaTrader5:
    f = FakeMetaTrader5(server_offset_hours=2.0)
    f.generate_rates("EURUSD", M.TIMEFRAME_M15, 300, now_utc=NOW.timestamp())
    return f


@pytest.fixture
def client(fake: FakeMetaTrader5) -> Iterator[Mt5Client]:
    server = start_bridge(fake)
    c = Mt5Client(client_settings(fake, server.port), password=fake.account_password,
                  bridge_secret=SECRET)
    yield c
    c.close()
    server.close()


def test_the_forming_bar_is_the_last_row_and_is_dropped(fake: FakeMetaTrader5,
                                                       client: Mt5Client) -> None:
    feed: Feed = Mt5Feed(client, server_utc_offset_hours=2.0, initial_bars=50)
    bars = feed.closed_bars("EURUSD", "M15", None, NOW)
    assert len(bars) == 50
    # The fake's newest row opens at 10:00 UTC (12:00 server time) and is still forming.
    forming_server = fake.rates[("EURUSD", M.TIMEFRAME_M15)][-1][0]
    assert datetime.fromtimestamp(forming_server, UTC) == NOW.replace(minute=0, second=0) + \
        timedelta(hours=2)
    assert bars[-1].time == datetime(2024, 3, 4, 9, 45, tzinfo=UTC)  # UTC, closed at 10:00
    assert all(b.close_time <= NOW for b in bars)
    assert [b.time for b in bars] == sorted(b.time for b in bars)
    assert bars[-1].spread == pytest.approx(10 * 1e-5)  # points x point
    validator = BarValidator()
    assert all(validator.check(b, NOW).accepted for b in bars)


def test_symbol_select_runs_before_the_first_request(fake: FakeMetaTrader5,
                                                     client: Mt5Client) -> None:
    assert fake.symbols["EURUSD"]["select"] is False
    Mt5Feed(client, server_utc_offset_hours=2.0).closed_bars("EURUSD", "M15", None, NOW)
    assert fake.symbols["EURUSD"]["select"] is True


def test_incremental_and_catch_up_after_downtime(fake: FakeMetaTrader5,
                                                 client: Mt5Client) -> None:
    feed = Mt5Feed(client, server_utc_offset_hours=2.0, max_bars=40)
    last = datetime(2024, 3, 4, 9, 15, tzinfo=UTC)
    assert [b.time for b in feed.closed_bars("EURUSD", "M15", last, NOW)] == [
        datetime(2024, 3, 4, 9, 30, tzinfo=UTC), datetime(2024, 3, 4, 9, 45, tzinfo=UTC)]
    # Down for 2 days: 192 bars missed, fetched in pages of 40 backwards from the present.
    since = NOW.replace(minute=0, second=0) - timedelta(days=2)
    calls = fake.calls.count("copy_rates_from_pos")
    bars = feed.closed_bars("EURUSD", "M15", since, NOW)
    assert len(bars) == 4 * 48 - 1
    assert bars[0].time == since + timedelta(minutes=15) and bars[-1].time.hour == 9
    assert fake.calls.count("copy_rates_from_pos") - calls == 5
    assert len({b.time for b in bars}) == len(bars)


def test_a_bar_whose_successor_has_no_tick_yet_waits(fake: FakeMetaTrader5,
                                                     client: Mt5Client) -> None:
    # No tick since 09:45's bar opened: that bar is still position 0, so it is held back
    # even though its period is over at NOW (it could still take a late tick).
    rows = fake.rates[("EURUSD", M.TIMEFRAME_M15)][:-1]
    fake.set_rates("EURUSD", M.TIMEFRAME_M15, rows)
    bars = Mt5Feed(client, server_utc_offset_hours=2.0).closed_bars(
        "EURUSD", "M15", datetime(2024, 3, 4, 9, 0, tzinfo=UTC), NOW)
    assert [b.time.minute for b in bars] == [15, 30]
