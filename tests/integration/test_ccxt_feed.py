"""ccxt feed: the real ccxt.binance fetch_ohlcv against the fake exchange. The forming
candle (the last row) never comes out; after downtime the feed pages forward."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fakes.binance_fake import FakeBinance

from domain.errors import VenueError
from executor.brokers.ccxt_broker import make_exchange
from executor.brokers.config import CcxtSettings
from executor.feeds.base import Feed
from executor.feeds.ccxt_feed import CcxtFeed, ccxt_timeframe
from executor.feeds.validator import BarValidator

NOW = datetime(2024, 3, 4, 10, 7, 30, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance() as f:
        f.clock = lambda: NOW.timestamp()
        yield f


@pytest.fixture
def exchange(fake: FakeBinance) -> object:
    s = CcxtSettings(rate_limit_ms=1, timeout_ms=500)
    return make_exchange(s, api_urls=fake.api_urls())


def test_timeframe_names() -> None:
    assert [ccxt_timeframe(t) for t in ("M15", "15m", "H1", "D1", "W1")] == [
        "15m", "15m", "1h", "1d", "1w"]


def test_the_forming_candle_is_dropped(fake: FakeBinance, exchange: object) -> None:
    feed: Feed = CcxtFeed(exchange, initial_bars=20)
    raw = exchange.fetch_ohlcv("BTC/USDT", "15m", None, 5)  # type: ignore[attr-defined]
    assert raw[-1][0] == int(datetime(2024, 3, 4, 10, 0, tzinfo=UTC).timestamp() * 1000)
    bars = feed.closed_bars("BTC/USDT", "M15", None, NOW)
    assert len(bars) == 20
    assert bars[-1].time == datetime(2024, 3, 4, 9, 45, tzinfo=UTC)
    assert all(b.close_time <= NOW for b in bars)
    validator = BarValidator()
    assert all(validator.check(b, NOW).accepted for b in bars)


def test_catch_up_after_downtime_pages_forward(fake: FakeBinance, exchange: object) -> None:
    feed = CcxtFeed(exchange, limit=100)
    since = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)  # three days down: 287 bars missed
    before = fake.requests.count(("GET", "/api/v3/klines"))
    bars = feed.closed_bars("BTC/USDT", "M15", since, NOW)
    assert len(bars) == 3 * 96 - 1
    assert bars[0].time == since + timedelta(minutes=15)
    assert bars[-1].time == datetime(2024, 3, 4, 9, 45, tzinfo=UTC)
    assert [b.time for b in bars] == sorted({b.time for b in bars})
    assert fake.requests.count(("GET", "/api/v3/klines")) - before == 3
    # Up to date: nothing new until the 10:00 bar closes.
    assert feed.closed_bars("BTC/USDT", "M15", bars[-1].time, NOW) == []
    later = NOW + timedelta(minutes=8)
    fake.clock = lambda: later.timestamp()
    [new] = feed.closed_bars("BTC/USDT", "M15", bars[-1].time, later)
    assert new.time == datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def test_network_errors_are_retried_then_reported(fake: FakeBinance, exchange: object) -> None:
    feed = CcxtFeed(exchange, read_retries=2, sleep=lambda _s: None)
    fake.script("GET", "/api/v3/klines", ("drop",), ("http", 502))
    assert len(feed.closed_bars("BTC/USDT", "M15", None, NOW)) == 500
    fake.script("GET", "/api/v3/klines", ("drop",), ("drop",), ("drop",))
    with pytest.raises(VenueError) as info:
        feed.closed_bars("BTC/USDT", "M15", None, NOW)
    assert info.value.retryable is True
