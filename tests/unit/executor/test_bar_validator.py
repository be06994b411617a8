"""BarValidator: every rejection reason, gaps, resume, and properties over arbitrary bars."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.builders import a_bar

from domain import Bar
from executor.feeds.validator import REJECTION_REASONS, BarValidator

T0 = datetime(2023, 1, 2, 0, 0, tzinfo=UTC)
M15 = timedelta(minutes=15)
NAN = float("nan")
INF = float("inf")


def bar(i: int = 0, **changes: Any) -> Bar:
    """The i-th good M15 bar from T0; ``changes`` make it bad."""
    base = a_bar(symbol="EURUSD", timeframe="M15", time=T0 + i * M15, open=1.1, high=1.2, low=1.0,
                 close=1.15, volume=100.0, spread=0.0001)
    return replace(base, **changes)


# (reason, bad bar, now). The bad bar sits at index 1 of a run 0, bad, 2, 3.
CASES: list[tuple[str, Bar, datetime | None]] = [
    ("non_finite", bar(1, open=NAN), None),
    ("non_finite", bar(1, high=INF), None),
    ("non_finite", bar(1, low=-INF), None),
    ("non_finite", bar(1, close=NAN), None),
    ("non_finite", bar(1, volume=NAN), None),
    ("non_finite", bar(1, spread=INF), None),
    ("non_positive_price", bar(1, low=0.0, open=0.0), None),
    ("non_positive_price", bar(1, open=-1.1, high=-1.0, low=-1.2, close=-1.1), None),
    ("negative_volume", bar(1, volume=-1.0), None),
    ("negative_spread", bar(1, spread=-0.0001), None),
    ("high_below_low", bar(1, high=0.9), None),
    ("open_outside_range", bar(1, open=1.25), None),
    ("open_outside_range", bar(1, open=0.95), None),
    ("close_outside_range", bar(1, close=1.3), None),
    ("close_outside_range", bar(1, close=0.99), None),
    ("duplicate", bar(0), None),
    ("out_of_order", bar(-1), None),
    ("misaligned", bar(1, time=T0 + M15 + timedelta(minutes=1)), None),
    ("misaligned", bar(1, time=T0 + M15 + timedelta(microseconds=1)), None),
    ("not_closed", bar(1), T0 + 2 * M15 - timedelta(seconds=1)),
    ("invalid_time", bar(1, time=datetime(2023, 1, 2, 0, 15)), None),
    ("unknown_timeframe", bar(1, timeframe="fortnight"), None),
]


@pytest.mark.parametrize(("reason", "bad", "now"), CASES, ids=[c[0] for c in CASES])
def test_each_rejection_reason_and_the_stream_goes_on(
    reason: str, bad: Bar, now: datetime | None
) -> None:
    v = BarValidator()
    assert v.check(bar(0)).accepted
    result = v.check(bad, now)
    assert not result.accepted
    assert result.reason == reason
    assert result.detail.startswith(f"{bad.symbol} {bad.timeframe}: ")
    # The bad bar changes nothing: the next good bars are accepted without a gap flag
    # beyond the slot the bad bar would have filled.
    later = v.check(bar(2))
    assert later.accepted and later.gap_bars == 1
    assert v.check(bar(3)).accepted
    counts = v.counts()
    assert counts["accepted"] == 3
    assert counts[reason] == 1
    assert sum(counts[r] for r in REJECTION_REASONS) == 1


def test_stale_only_when_configured() -> None:
    now = T0 + timedelta(hours=5)
    assert BarValidator().check(bar(0), now).accepted
    strict = BarValidator(stale_after=timedelta(hours=1))
    result = strict.check(bar(0), now)
    assert (result.accepted, result.reason) == (False, "stale")
    fresh = bar(18)  # closes at 04:45, 15 minutes before now
    assert strict.check(fresh, now).accepted


def test_forming_bar_never_passes_even_without_stale_check() -> None:
    v = BarValidator(check_alignment=False)
    forming = bar(4)
    assert v.check(forming, forming.time + timedelta(minutes=14, seconds=59)).reason == (
        "not_closed"
    )
    assert v.check(forming, forming.close_time).accepted  # closed exactly at its close


def test_alignment_can_be_disabled_and_skips_daily_bars() -> None:
    odd = bar(1, time=T0 + timedelta(minutes=7))
    assert BarValidator(check_alignment=False).check(odd).accepted
    # D1 and H4 bars open at broker midnight, which a UTC offset shifts: not checked.
    daily = a_bar(symbol="EURUSD", timeframe="D1", time=datetime(2023, 1, 2, 21, tzinfo=UTC),
                  open=1, high=1, low=1, close=1)
    h4 = a_bar(symbol="EURUSD", timeframe="H4", time=datetime(2023, 1, 2, 21, tzinfo=UTC), open=1,
               high=1, low=1, close=1)
    v = BarValidator()
    assert v.check(daily).accepted and v.check(h4).accepted


def test_gaps_are_counted_and_flagged_not_rejected() -> None:
    v = BarValidator()
    friday = datetime(2023, 1, 6, 21, 45, tzinfo=UTC)
    assert v.check(bar(time=friday)).gap_bars == 0
    monday = v.check(bar(time=friday + timedelta(hours=48, minutes=15)))
    assert monday.accepted and monday.gap and monday.gap_bars == 192
    assert "192 bar(s) missing" in monday.detail
    nxt = v.check(bar(time=friday + timedelta(hours=48, minutes=30)))
    assert nxt.accepted and not nxt.gap and nxt.detail == ""
    assert v.gaps == 1


def test_restore_resumes_ordering_after_restart() -> None:
    v = BarValidator()
    assert v.last_time("EURUSD", "M15") is None
    v.restore("EURUSD", "M15", T0 + M15)
    assert v.check(bar(1)).reason == "duplicate"
    assert v.check(bar(0)).reason == "out_of_order"
    assert v.check(bar(2)).accepted
    assert v.last_time("EURUSD", "M15") == T0 + 2 * M15
    with pytest.raises(ValueError, match="naive"):
        v.restore("EURUSD", "M15", datetime(2023, 1, 1))


def test_a_bar_of_another_stream_is_rejected_before_it_touches_any_state() -> None:
    v = BarValidator()
    stream = ("EURUSD", "M15")
    assert v.check(bar(0, timeframe="15m"), stream=stream).accepted  # an alias is the same
    foreign = v.check(bar(1, symbol="GBPUSD"), stream=stream)
    assert foreign.reason == "wrong_stream" and "EURUSD M15" in foreign.detail
    assert v.check(bar(1, timeframe="M5"), stream=stream).reason == "wrong_stream"
    assert v.check(bar(1, timeframe="fortnightly"), stream=stream).reason == "unknown_timeframe"
    assert v.last_time("GBPUSD", "M15") is None  # the foreign bar left no trace ...
    assert v.check(bar(1, symbol="GBPUSD"), stream=("GBPUSD", "M15")).accepted  # ... so
    assert v.check(bar(1), stream=stream).accepted  # neither stream's bar is a duplicate


@pytest.mark.parametrize("cast", [str, complex])
def test_values_of_a_non_real_type_are_rejected_not_raised(cast: Any) -> None:
    b = bar(0)
    odd = replace(b, **{f: cast(getattr(b, f)) for f in
                        ("open", "high", "low", "close", "volume", "spread")})
    assert BarValidator().check(odd).reason == "non_finite"


def test_timeframe_aliases_share_state_and_streams_are_independent() -> None:
    v = BarValidator()
    assert v.check(bar(0)).accepted
    assert v.check(bar(0, timeframe="15m")).reason == "duplicate"
    assert v.last_time("EURUSD", "15m") == T0
    assert v.check(bar(0, symbol="GBPUSD")).accepted
    assert v.check(bar(0, timeframe="M5")).accepted


def test_non_utc_aware_times_are_compared_as_instants() -> None:
    v = BarValidator()
    plus3 = timezone(timedelta(hours=3))
    assert v.check(bar(0)).accepted
    assert v.check(bar(time=T0.astimezone(plus3))).reason == "duplicate"
    assert v.check(bar(time=(T0 + M15).astimezone(plus3))).accepted


def test_counts_lists_every_reason() -> None:
    counts = BarValidator().counts()
    assert set(counts) == {"accepted", *REJECTION_REASONS}
    assert all(n == 0 for n in counts.values())


def test_edge_of_datetime_range_is_rejected_not_raised() -> None:
    far = datetime.max.replace(tzinfo=UTC) - timedelta(minutes=14, microseconds=999999)
    result = BarValidator(check_alignment=False).check(bar(time=far), now=T0)
    assert (result.accepted, result.reason) == (False, "invalid_time")


# --------------------------------------------------------------------------- properties

prices = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.5, max_value=2.0),
    st.sampled_from([0.0, -0.0, 1.0, 1e308, -1e308]),
)
times = st.builds(
    lambda minutes, seconds: (
        datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes, seconds=seconds)
    ),
    st.integers(min_value=0, max_value=2_000),
    st.sampled_from([0, 0, 0, 0, 1, 30]),
)
bars_strategy = st.builds(
    Bar,
    symbol=st.sampled_from(["EURUSD", "GBPUSD"]),
    timeframe=st.sampled_from(["M1", "M15", "15m", "H1", "D1"]),
    time=times,
    open=prices,
    high=prices,
    low=prices,
    close=prices,
    volume=st.one_of(st.floats(), st.floats(min_value=0, max_value=1e6)),
    spread=st.one_of(st.floats(), st.just(0.0)),
)


@settings(max_examples=300, deadline=None)
@given(
    bars=st.lists(bars_strategy, max_size=40),
    now=st.one_of(st.none(), times),
    stale=st.one_of(st.none(), st.integers(min_value=0, max_value=600)),
    align=st.booleans(),
)
def test_validator_properties(
    bars: list[Bar], now: datetime | None, stale: int | None, align: bool
) -> None:
    v = BarValidator(
        stale_after=None if stale is None else timedelta(minutes=stale),
        check_alignment=align,
    )
    last: dict[tuple[str, int], datetime] = {}
    for b in bars:
        result = v.check(b, now)  # never raises
        assert result.accepted == (result.reason is None)
        assert result.reason is None or result.reason in REJECTION_REASONS
        if not result.accepted:
            assert result.gap_bars == 0
            continue
        assert all(math.isfinite(x) for x in (b.open, b.high, b.low, b.close, b.volume))
        assert math.isfinite(b.spread) and b.spread >= 0
        assert min(b.open, b.high, b.low, b.close) > 0
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume >= 0
        assert result.gap_bars >= 0
        if now is not None:
            assert b.close_time <= now
        key = (b.symbol, int(b.close_time.timestamp() - b.time.timestamp()))
        if key in last:
            assert b.time > last[key]
        last[key] = b.time
    counts = v.counts()
    assert sum(counts.values()) == len(bars)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), max_size=60))
def test_accepted_times_strictly_increase_over_shuffled_streams(offsets: list[int]) -> None:
    v = BarValidator()
    accepted = [b.time for b in map(bar, offsets) if v.check(b).accepted]
    assert accepted == sorted(set(accepted))
    # Exactly the running maxima of the input are accepted.
    expected, high = [], -1
    for i in offsets:
        if i > high:
            expected.append(T0 + i * M15)
            high = i
    assert accepted == expected
