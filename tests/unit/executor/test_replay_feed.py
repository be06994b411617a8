"""ReplayFeed: closed bars only, in file order, resumable, and always terminating."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.builders import a_bar

from domain import Bar
from domain.errors import ConfigError
from executor.feeds import BarValidator, Feed, ReplayFeed, load_bars

T0 = datetime(2023, 1, 2, tzinfo=UTC)
M15 = timedelta(minutes=15)
SAMPLE = Path(__file__).resolve().parents[3] / "config" / "samples" / "EURUSD_M15.csv"


def bar(minutes: int, *, symbol: str = "EURUSD", timeframe: str = "M15") -> Bar:
    return a_bar(symbol=symbol, timeframe=timeframe, time=T0 + timedelta(minutes=minutes),
                 open=1.1, high=1.2, low=1.0, close=1.15)


def drive(feed: ReplayFeed, max_cycles: int) -> list[tuple[datetime, Bar]]:
    """The replay driver's loop: advance the clock to the next close, run one cycle."""
    released: list[tuple[datetime, Bar]] = []
    clock: datetime | None = None
    for _ in range(max_cycles):
        nxt = feed.next_close_time()
        if nxt is None:
            return released
        clock = nxt if clock is None else max(clock, nxt)
        for symbol, timeframe in feed.streams:
            released.extend((clock, b) for b in feed.closed_bars(symbol, timeframe, None, clock))
    raise AssertionError(f"replay did not finish in {max_cycles} cycles")


def test_is_a_feed() -> None:
    feed: Feed = ReplayFeed.from_bars([bar(0)])
    assert feed.closed_bars("EURUSD", "M15", None, T0 + M15) == [bar(0)]


def test_only_closed_bars_are_released() -> None:
    feed = ReplayFeed.from_bars([bar(0), bar(15), bar(30)])
    assert feed.closed_bars("EURUSD", "M15", None, T0 + timedelta(minutes=14)) == []
    assert feed.closed_bars("EURUSD", "M15", None, T0 + timedelta(minutes=29)) == [bar(0)]
    assert feed.remaining() == 2
    assert feed.closed_bars("EURUSD", "M15", None, T0 + timedelta(minutes=29)) == []
    assert feed.closed_bars("EURUSD", "M15", None, T0 + timedelta(hours=1)) == [bar(15), bar(30)]
    assert (feed.remaining(), feed.total()) == (0, 3)
    assert feed.next_close_time() is None


def test_release_stops_at_the_first_open_row() -> None:
    # Row order 00:30, 00:00: the 00:00 row is closed but waits behind the open one.
    feed = ReplayFeed.from_bars([bar(30), bar(0)])
    assert feed.closed_bars("EURUSD", "M15", None, T0 + timedelta(minutes=20)) == []
    assert feed.closed_bars("EURUSD", "M15", None, T0 + timedelta(minutes=45)) == [bar(30), bar(0)]


def test_resume_skips_rows_processed_by_a_previous_run() -> None:
    feed = ReplayFeed.from_bars([bar(0), bar(15), bar(30), bar(45)])
    late = T0 + timedelta(hours=2)
    assert feed.closed_bars("EURUSD", "M15", T0 + M15, late) == [bar(30), bar(45)]


def test_since_only_skips_leading_rows_on_the_first_call() -> None:
    feed = ReplayFeed.from_bars([bar(0), bar(15), bar(30), bar(0), bar(45)])
    assert feed.closed_bars("EURUSD", "M15", T0, T0 + timedelta(minutes=45)) == [
        bar(15),
        bar(30),
        bar(0),
    ]
    # The stale 00:00 row was delivered (the validator rejects it), and a later since
    # does not skip anything.
    assert feed.closed_bars("EURUSD", "M15", T0 + timedelta(hours=5), T0 + timedelta(hours=9)) == [
        bar(45)
    ]


def test_out_of_order_and_duplicate_rows_are_delivered_for_the_validator() -> None:
    rows = [bar(0), bar(30), bar(15), bar(30), bar(45)]
    feed = ReplayFeed.from_bars(rows)
    released = drive(feed, max_cycles=10)
    assert [b for _, b in released] == rows
    assert all(b.close_time <= clock for clock, b in released)
    v = BarValidator()
    assert [v.check(b, clock).reason for clock, b in released] == [
        None,
        None,
        "out_of_order",
        "duplicate",
        None,
    ]


def test_next_close_time_orders_multiple_streams() -> None:
    eur = [bar(m) for m in range(0, 120, 15)]
    gbp = [bar(m, symbol="GBPUSD", timeframe="H1") for m in (0, 60)]
    btc = [bar(m, symbol="BTCUSDT", timeframe="5m") for m in range(30, 60, 5)]
    feed = ReplayFeed.from_bars([*eur, *gbp, *btc])
    assert set(feed.streams) == {("EURUSD", "M15"), ("GBPUSD", "H1"), ("BTCUSDT", "M5")}
    assert feed.next_close_time() == T0 + M15
    released = drive(feed, max_cycles=100)
    assert len(released) == feed.total() == 16
    clocks = [clock for clock, _ in released]
    assert clocks == sorted(clocks)
    assert all(b.close_time == clock for clock, b in released)  # released at its close
    for stream in (eur, gbp, btc):
        assert [b for _, b in released if b.symbol == stream[0].symbol] == stream


def test_sources_for_the_same_stream_are_concatenated(tmp_path: Path) -> None:
    header = "Date,Open,High,Low,Close,Tickvol,Volume,Spread\n"
    a = tmp_path / "EURUSD_M15_a.csv"
    b = tmp_path / "EURUSD_M15_b.csv"
    a.write_text(header + "2023.01.02 00:00:00,1,1,1,1,1,0,0\n")
    b.write_text(header + "2023.01.02 00:15:00,1,1,1,1,1,0,0\n")
    feed = ReplayFeed(load_bars(a), load_bars(b))
    assert feed.streams == (("EURUSD", "M15"),)
    assert [x.time.minute for x in feed.closed_bars("EURUSD", "15m", None, T0 + 2 * M15)] == [0, 15]


def test_unknown_stream_is_a_config_error() -> None:
    feed = ReplayFeed.from_bars([bar(0)])
    with pytest.raises(ConfigError, match="no bars for GBPUSD M15; loaded: EURUSD M15"):
        feed.closed_bars("GBPUSD", "M15", None, T0)
    with pytest.raises(ConfigError):
        feed.closed_bars("EURUSD", "nonsense", None, T0)


def test_sample_replays_end_to_end_through_the_validator() -> None:
    loaded = load_bars(SAMPLE)
    feed = ReplayFeed(loaded)
    v = BarValidator()
    accepted = 0
    clock: datetime | None = None
    while (nxt := feed.next_close_time()) is not None:
        clock = nxt if clock is None else max(clock, nxt)
        for b in feed.closed_bars("EURUSD", "M15", v.last_time("EURUSD", "M15"), clock):
            accepted += v.check(b, clock).accepted
    assert accepted == len(loaded.bars) == 24_424
    assert feed.remaining() == 0


minutes = st.integers(min_value=0, max_value=24 * 60)


@settings(max_examples=200, deadline=None)
@given(
    streams=st.lists(
        st.tuples(st.sampled_from(["M1", "M5", "M15", "H1"]), st.lists(minutes, max_size=30)),
        min_size=1,
        max_size=3,
    ),
    since=st.one_of(st.none(), minutes),
)
def test_replay_always_terminates_and_releases_each_row_once(
    streams: list[tuple[str, list[int]]], since: int | None
) -> None:
    rows = [
        replace(bar(m), symbol=f"S{i}", timeframe=tf)
        for i, (tf, ms) in enumerate(streams)
        for m in ms
    ]
    feed = ReplayFeed.from_bars(rows)
    since_time = None if since is None else T0 + timedelta(minutes=since)
    released: list[tuple[datetime, Bar]] = []
    clock: datetime | None = None
    # Each cycle releases or skips at least one row, so total + 1 cycles always suffice.
    for _ in range(feed.total() + 1):
        nxt = feed.next_close_time()
        if nxt is None:
            break
        clock = nxt if clock is None else max(clock, nxt)
        before = feed.remaining()
        for symbol, timeframe in feed.streams:
            released.extend(
                (clock, b) for b in feed.closed_bars(symbol, timeframe, since_time, clock)
            )
        assert feed.remaining() < before
    assert feed.next_close_time() is None and feed.remaining() == 0
    assert all(b.close_time <= clock for clock, b in released)
    for i, (_, ms) in enumerate(streams):
        expected = [T0 + timedelta(minutes=m) for m in ms]
        if since_time is not None:  # resume skips only the leading processed rows
            while expected and expected[0] <= since_time:
                expected.pop(0)
        assert [b.time for _, b in released if b.symbol == f"S{i}"] == expected
