"""The liquidation price estimate (``domain.margin``) against Binance's documented formula
and brackets ("How to Calculate Liquidation Price of USDⓈ-M Contracts"; "Notional and
Leverage Brackets": cum_n = cum_{n-1} + floor_n x (mmr_n - mmr_{n-1}))."""

from __future__ import annotations

import pytest

from domain.margin import MaintenanceTier, MarginTerms, liquidation_price, tiers_from

# BTCUSDT's first brackets as Binance published them (notional cap, maintenance margin
# rate; the maintenance amounts 0 / 50 / 1,300 / 16,300 are derived, not given here).
BTC_BRACKETS = [(0.0, 50_000.0, 0.004), (50_000.0, 250_000.0, 0.005),
                (250_000.0, 1_000_000.0, 0.01), (1_000_000.0, 10_000_000.0, 0.025)]


def terms(leverage: float, *, isolated: bool = True) -> MarginTerms:
    return MarginTerms(leverage, isolated, tiers_from(BTC_BRACKETS))


def test_maintenance_amounts_follow_the_documented_recurrence() -> None:
    assert [t.amount for t in tiers_from(BTC_BRACKETS)] == pytest.approx(
        [0.0, 50.0, 1_300.0, 16_300.0])
    assert terms(10).tier(49_999.0).rate == 0.004
    assert terms(10).tier(50_000.0).rate == 0.005  # a cap belongs to the next bracket
    assert terms(10).tier(1e12).rate == 0.025  # above every cap: the last


def test_isolated_long_and_short_by_the_formula() -> None:
    # WB = |Q| x EP / L = 0.1 x 60,000 / 10 = 600; long: (600 + 0 - 6,000) / (0.1 x 0.004
    # - 0.1) = 54,216.87; short: (600 + 6,000) / (0.1 x 0.004 + 0.1) = 65,737.05.
    assert liquidation_price(terms(10), 1, 0.1, 60_000.0) == pytest.approx(54_216.867, abs=1e-3)
    assert liquidation_price(terms(10), -1, 0.1, 60_000.0) == pytest.approx(65_737.052, abs=1e-3)


def test_the_bracket_at_the_liquidation_price_counts_when_it_is_nearer() -> None:
    """1.7 BTC at 30,000 is 51,000 notional (bracket 2, cum 50); at its liquidation price
    the notional is below 50,000 (bracket 1): the FAQ says recompute there, and of the two
    the price nearer the entry is kept (a long: the higher)."""
    t = terms(10)
    at_entry = (5_100.0 + 50.0 - 51_000.0) / (1.7 * 0.005 - 1.7)
    at_liq = (5_100.0 - 51_000.0) / (1.7 * 0.004 - 1.7)
    assert at_liq > at_entry
    assert liquidation_price(t, 1, 1.7, 30_000.0) == pytest.approx(at_liq)


def test_a_long_at_leverage_one_is_never_liquidated() -> None:
    assert liquidation_price(terms(1), 1, 0.1, 60_000.0) == 0.0
    assert liquidation_price(terms(1), -1, 0.1, 60_000.0) > 100_000.0


@pytest.mark.parametrize("bad", [
    dict(terms=MarginTerms(0.0, True, ())), dict(size=0.0), dict(entry=0.0), dict(side=0)])
def test_the_estimate_refuses_what_it_cannot_judge(bad: dict[str, object]) -> None:
    args: dict[str, object] = dict(terms=terms(10), side=1, size=0.1, entry=60_000.0) | bad
    with pytest.raises(ValueError):
        liquidation_price(**args)  # type: ignore[arg-type]


def test_terms_without_tiers_are_not_known() -> None:
    assert not MarginTerms(10, True, ()).known
    assert not MarginTerms(0, True, (MaintenanceTier(0, 1e9, 0.004, 0.0),)).known
    assert terms(10).known
