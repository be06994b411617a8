"""MT5 server time with daylight saving, through the real bridge: a server on the New York
close convention (UTC+2 in winter, UTC+3 in summer, switching with the US calendar) gives
bars and deals in UTC all year with ``server_timezone``; a fixed offset that disagrees with
the terminal is refused at start (issue 15, defect 12)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import mt5_fake as M
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge
from support.builders import an_intent, an_order

from domain import OrderSide, OrderState, OrderType
from domain.errors import ConfigError
from executor.brokers.config import Mt5Settings
from executor.brokers.mt5 import Mt5Broker
from executor.brokers.mt5_client import Mt5Client
from executor.brokers.server_time import ServerClock
from executor.feeds.mt5 import Mt5Feed
from executor.scheduler import bar_close_trigger

WINTER = datetime(2024, 1, 15, 10, 7, 30, tzinfo=UTC)  # server UTC+2
SUMMER = datetime(2024, 7, 15, 10, 7, 30, tzinfo=UTC)  # server UTC+3
# Between the US (10 March) and EU (31 March) changes: New York close servers are at +3
# already, EU-calendar ones still at +2.
GAP = datetime(2024, 3, 20, 10, 7, 30, tzinfo=UTC)
NY_CLOSE = {"server_timezone": "America/New_York", "server_timezone_shift_hours": 7.0}


class Env:
    def __init__(self, now: datetime, **settings: Any) -> None:
        self.fake = FakeMetaTrader5(server_timezone="America/New_York",
                                    server_timezone_shift_hours=7)
        self.fake.clock = now.timestamp
        self.fake.generate_rates("EURUSD", M.TIMEFRAME_H1, 50, now_utc=now.timestamp())
        self.bridge = start_bridge(self.fake)
        self.settings = client_settings(self.fake, self.bridge.port, **settings)
        self.client = Mt5Client(self.settings, password=self.fake.account_password,
                                bridge_secret=SECRET)
        self.broker = Mt5Broker(self.client, self.settings, clock=lambda: now)

    def close(self) -> None:
        self.client.close()
        self.bridge.close()


@pytest.fixture
def envs() -> Iterator[list[Env]]:
    made: list[Env] = []
    yield made
    for e in made:
        e.close()


@pytest.mark.parametrize("now", [WINTER, SUMMER, GAP])
def test_bars_and_deals_are_utc_all_year_with_a_time_zone(envs: list[Env],
                                                          now: datetime) -> None:
    env = Env(now)
    envs.append(env)
    feed = Mt5Feed(env.client, server_clock=ServerClock.from_settings(env.settings))
    bars = feed.closed_bars("EURUSD", "H1", None, now)
    # The last closed H1 bar opened at 09:00 UTC, whatever the season: not held back as
    # not closed, not stamped an hour early.
    assert bars[-1].time == now.replace(minute=0, second=0) - timedelta(hours=1)
    assert env.broker.check_terminal(["EURUSD"]).startswith("MT5 account hedging")
    i = an_intent(client_order_id="dta-tz-1", account="a", symbol="EURUSD", side=OrderSide.BUY,
                  volume=0.1, order_type=OrderType.MARKET, bar_time=now)
    env.broker.submit(an_order(intent=i).transition(OrderState.SUBMITTING))
    [fill] = env.broker.recent_fills(now - timedelta(hours=1))
    assert fill.fill.time == now.replace(microsecond=0)


def test_a_fixed_offset_that_disagrees_with_the_terminal_is_refused(envs: list[Env]) -> None:
    summer = Env(SUMMER, server_timezone=None, server_timezone_shift_hours=0.0,
                 server_utc_offset_hours=2.0)
    envs.append(summer)
    with pytest.raises(ConfigError, match=r"newest tick says UTC\+3.*says UTC\+2"):
        summer.broker.check_terminal(["EURUSD"])
    winter = Env(WINTER, server_timezone=None, server_timezone_shift_hours=0.0,
                 server_utc_offset_hours=2.0)
    envs.append(winter)
    assert "agrees" in winter.broker.check_server_time(["EURUSD"])


def test_an_eu_calendar_zone_is_refused_in_the_weeks_the_calendars_differ(
        envs: list[Env]) -> None:
    env = Env(GAP, server_timezone="Europe/Athens", server_timezone_shift_hours=0.0)
    envs.append(env)
    with pytest.raises(ConfigError, match="disagrees"):
        env.broker.check_server_time(["EURUSD"])


def test_a_stale_tick_proves_nothing() -> None:
    clock = ServerClock(timezone="America/New_York", shift_hours=7)
    closed = SUMMER.timestamp() + 3 * 3600 - 2 * 86_400 - 1234  # Friday's last tick
    assert clock.check_offset(closed, SUMMER) is None
    assert clock.check_offset(SUMMER.timestamp() + 4 * 3600, SUMMER) is not None  # future


def test_settings_take_a_zone_or_an_offset() -> None:
    assert Mt5Settings(**NY_CLOSE).server_timezone == "America/New_York"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown time zone"):
        Mt5Settings(server_timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="not both"):
        Mt5Settings(server_timezone="Europe/Athens", server_utc_offset_hours=2)


@pytest.mark.parametrize(("now", "close"), [
    (WINTER, datetime(2024, 1, 15, 22, 0, 5, tzinfo=UTC)),  # server midnight at UTC+2
    (SUMMER, datetime(2024, 7, 15, 21, 0, 5, tzinfo=UTC)),  # ... and at UTC+3
])
def test_daily_bars_close_at_server_midnight_in_both_seasons(now: datetime,
                                                            close: datetime) -> None:
    clock = ServerClock(timezone="America/New_York", shift_hours=7)
    trigger = bar_close_trigger("D1", 5, server_clock=clock)
    first = trigger.get_next_fire_time(None, now)
    assert first == close
    assert trigger.get_next_fire_time(first, first) == close + timedelta(days=1)
