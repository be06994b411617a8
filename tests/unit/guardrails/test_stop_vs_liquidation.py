"""``StopBeforeLiquidationCheck``: an entry on a leveraged account whose stop lies beyond,
or too close to, the estimated liquidation price of the position it opens is vetoed; one
boundary per test.

Numbers: BTCUSDT bracket 1 (maintenance rate 0.4 %, amount 0), isolated, leverage 20,
0.01 BTC at 30,000: LP = (15 + 0 - 300) / (0.01 x 0.004 - 0.01) = 28,614.4578 for the
long, (15 + 300) / (0.01 x 0.004 + 0.01) = 31,374.5020 for the short (Binance's one-way
formula, "How to Calculate Liquidation Price of USDⓈ-M Contracts"). With a 10 % buffer
the long's stop must be at or above LP + 0.1 x (30,000 - LP) = 28,753.0120, the short's
at or below LP - 0.1 x (LP - 30,000) = 31,237.0518."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.builders import a_bar, a_decision, a_position, a_proposal, a_snapshot

from domain import Direction
from domain.margin import UNKNOWN_TERMS, MarginTerms, tiers_from
from guardrails.base import AccountState, WorkingExposure
from guardrails.limits import StopBeforeLiquidationCheck

T = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
TERMS = MarginTerms(20, True, tiers_from([(0.0, 50_000.0, 0.004), (50_000.0, 500_000.0, 0.005)]))
LONG_FLOOR = 28_753.0120
SHORT_FLOOR = 31_237.0518
CHECK = StopBeforeLiquidationCheck(0.1)


def judge(direction: Direction, stop: float, *, margin: MarginTerms | None = TERMS,
          close: float = 30_000.0, volume: float = 0.01, **account: object) -> tuple[bool, str]:
    target = close * (1.02 if direction is Direction.LONG else 0.98)
    p = a_proposal(symbol=BTC, timeframe="1m", bar_time=T, direction=direction, entry=close,
                   stop=stop, target=target)
    snap = a_snapshot(bar=a_bar(symbol=BTC, timeframe="1m", time=T, open=close, high=close,
                                low=close, close=close))
    state = AccountState(order_volume=volume, now=T, snapshot=snap, margin=margin,
                         **account)  # type: ignore[arg-type]
    r = CHECK.check(a_decision(proposal=p), state)
    assert not r.escalate  # a hard limit: nobody can approve past the exchange
    return r.passed, r.reason


@pytest.mark.parametrize(("stop", "passed"), [
    (LONG_FLOOR + 0.001, True), (LONG_FLOOR - 0.001, False)])
def test_a_long_stop_at_the_buffer_boundary(stop: float, passed: bool) -> None:
    ok, reason = judge(Direction.LONG, stop)
    assert ok is passed
    assert "28614.5" in reason  # the estimate is shown either way


@pytest.mark.parametrize(("stop", "passed"), [
    (SHORT_FLOOR - 0.001, True), (SHORT_FLOOR + 0.001, False)])
def test_a_short_stop_at_the_buffer_boundary(stop: float, passed: bool) -> None:
    ok, reason = judge(Direction.SHORT, stop)
    assert ok is passed
    assert "31374.5" in reason


def test_a_stop_beyond_the_liquidation_price_says_so() -> None:
    ok, reason = judge(Direction.LONG, 28_600.0)
    assert not ok and "beyond the liquidation price" in reason and "above 28753" in reason
    ok, reason = judge(Direction.LONG, 28_700.0)
    assert not ok and "too close to the liquidation price" in reason


def test_cross_margin_is_judged_by_the_isolated_estimate_and_says_so() -> None:
    cross = MarginTerms(20, False, TERMS.tiers)
    assert judge(Direction.LONG, LONG_FLOOR - 0.001, margin=cross)[0] is False
    ok, reason = judge(Direction.LONG, LONG_FLOOR + 0.001, margin=cross)
    assert ok and "isolated estimate, cross bound" in reason


def test_an_account_without_margin_is_not_judged() -> None:
    assert judge(Direction.LONG, 1.0, margin=None)[0] is True


def test_unknown_margin_terms_fail_closed_as_environmental() -> None:
    p = a_proposal(symbol=BTC, direction=Direction.LONG, entry=30_000.0, stop=29_700.0,
                   target=30_600.0)
    r = CHECK.check(a_decision(proposal=p), AccountState(order_volume=0.01,
                                                         margin=UNKNOWN_TERMS))
    assert not r.passed and r.environmental and "margin terms" in r.reason


def test_an_order_that_only_reduces_a_position_is_not_judged() -> None:
    short = {BTC: a_position(symbol=BTC, volume=-0.05, avg_price=30_000.0)}
    assert judge(Direction.LONG, 1.0, positions=short)[0] is True


def test_the_position_it_grows_is_judged_at_its_average_entry() -> None:
    """0.01 held at 31,000 and 0.01 bought at 29,000: 0.02 at 30,000 - the same liquidation
    price as 0.01 at 30,000 (the formula scales with size inside one bracket)."""
    held = {BTC: a_position(symbol=BTC, volume=0.01, avg_price=31_000.0)}
    ok, reason = judge(Direction.LONG, LONG_FLOOR - 0.01, close=29_000.0, positions=held)
    assert not ok and "long 0.02 at 30000" in reason
    assert judge(Direction.LONG, LONG_FLOOR + 0.01, close=29_000.0, positions=held)[0]


def test_working_orders_on_the_side_count_toward_the_size() -> None:
    """1.7 working plus 0.01: 1.71 BTC at 30,000 is 51,300 notional, bracket 2 at entry."""
    _, reason = judge(Direction.LONG, LONG_FLOOR + 0.01,
                      working={BTC: WorkingExposure(buy=1.7)})
    assert "long 1.71" in reason


def test_a_long_without_a_liquidation_price_passes() -> None:
    assert judge(Direction.LONG, 10.0, margin=MarginTerms(1, True, TERMS.tiers))[0] is True


def test_the_buffer_must_be_a_fraction_below_one() -> None:
    with pytest.raises(ValueError):
        StopBeforeLiquidationCheck(1.0)
    with pytest.raises(ValueError):
        StopBeforeLiquidationCheck(-0.1)
