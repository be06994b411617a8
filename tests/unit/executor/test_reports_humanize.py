"""Numbers formatted for people in the replay report (executor/reports/humanize.py), the
A/B verdict sentence (executor/reports/ab_verdict.py) and the header's key figures."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from executor.reports.ab import ABDesign, ABResult, DiffCI
from executor.reports.ab_verdict import metric_verdict, verdict
from executor.reports.humanize import (
    count,
    money,
    pct,
    price,
    price_digits,
    quote_currency,
    r_multiple,
    ratio,
)
from executor.reports.key_figures import key_figures
from executor.reports.metrics import compute_metrics


@pytest.mark.parametrize(("share", "kw", "text"), [
    (0.123, {}, "12.3 %"), (0.5, {"digits": 0}, "50 %"), (-0.0161, {"digits": 2}, "−1.61 %"),
    (0.05, {"signed": True}, "+5.0 %"), (-0.00001, {}, "0.0 %"), (12.5, {}, "1,250.0 %"),
    (None, {}, "–"), (math.nan, {}, "–"), (math.inf, {}, "–"),
])
def test_percentages(share: float | None, kw: dict[str, object], text: str) -> None:
    assert pct(share, **kw) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(("amount", "currency", "signed", "text"), [
    (-1234.5, "USD", False, "−1,234.50 USD"), (134.424, "USD", True, "+134.42 USD"),
    (9865.58, "", False, "9,865.58"), (-0.004, "EUR", True, "0.00 EUR"),
    (0.0, "USD", True, "0.00 USD"), (None, "USD", False, "–"), (math.nan, "USD", False, "–"),
    (1_250_000.0, "USDT", False, "1,250,000.00 USDT"),
])
def test_money_has_two_decimals_separators_and_its_currency(
        amount: float | None, currency: str, signed: bool, text: str) -> None:
    assert money(amount, currency, signed=signed) == text


def test_prices_round_to_the_symbols_digits() -> None:
    assert price(0.973301, 5) == "0.97330"
    assert price(151.2349, 3) == "151.235"
    assert price(27123.456, 2) == "27,123.46"
    assert price(None, 5) == "–" and price(math.inf, 5) == "–"
    assert price(1.5, 12) == "1.50000000"  # at most 8 digits


def test_price_digits_from_the_point_or_the_prices() -> None:
    assert price_digits([], point=0.00001) == 5
    assert price_digits([], point=0.001) == 3
    assert price_digits([1.0568, 1.05681, 1.057]) == 5  # MT5 drops trailing zeros
    assert price_digits([151.23, 151.2]) == 2
    assert price_digits([27000.0, 27001.0]) == 0
    assert price_digits([1e-9]) == 8


def test_r_multiples_and_ratios() -> None:
    assert r_multiple(1.5) == "+1.50 R" and r_multiple(-1.0) == "−1.00 R"
    assert r_multiple(0.0) == "0.00 R" and r_multiple(None) == "–"
    assert ratio(0.8812) == "0.88" and ratio(-0.41) == "−0.41" and ratio(None) == "–"
    assert count(24424) == "24,424" and count(None) == "–"


@pytest.mark.parametrize(("symbol", "quote"), [
    ("EURUSD", "USD"), ("USDJPY", "JPY"), ("XAUUSD", "USD"), ("BTC/USDT", "USDT"),
    ("BTC/USDT:USDT", "USDT"), ("BTCUSDT", "USDT"), ("ETHBTC", "BTC"), ("ethusdc", "USDC"),
    ("US500", ""), ("", ""),
])
def test_pnl_currency_is_the_quote_currency(symbol: str, quote: str) -> None:
    assert quote_currency(symbol) == quote


def _result(diffs: tuple[DiffCI, ...]) -> ABResult:
    return ABResult(ABDesign(seed=1), {}, diffs, ())


def test_ab_verdict_names_the_winner_only_when_the_interval_excludes_zero() -> None:
    win = DiffCI("mean_r", 0.12, 0.03, 0.21, 2000, 0.99)
    assert verdict(_result((win,))) == (
        "Enhanced (the ensemble) wins on mean R at 95 %: enhanced - baseline +0.120, "
        "95 % interval [+0.030, +0.210].")
    lose = DiffCI("mean_r", -0.3, -0.5, -0.1, 2000, 0.0)
    assert verdict(_result((lose,))).startswith("Baseline (rules only) wins on mean R")
    tie = DiffCI("mean_r", -0.603, -1.393, 0.084, 2000, 0.05)
    assert verdict(_result((tie,))) == (
        "No difference at 95 % on mean R: enhanced - baseline −0.603, 95 % interval "
        "[−1.393, +0.084].")
    none = DiffCI("mean_r", None, None, None, 0, None)
    assert "not enough trades" in verdict(_result((none,)))


def test_a_larger_drawdown_is_a_loss_and_win_rates_differ_in_points() -> None:
    deeper = DiffCI("max_drawdown_r", 4.0, 1.0, 7.0, 2000, 1.0)
    assert metric_verdict(deeper, 0.95).startswith("baseline wins on max drawdown (R)")
    rate = DiffCI("win_rate", -0.05, -0.184, 0.084, 2000, 0.2)
    assert metric_verdict(rate, 0.9) == (
        "no difference at 90 % on win rate: enhanced - baseline −5.0 pts, 90 % interval "
        "[−18.4 pts, +8.4 pts]")


def test_key_figures_of_a_run_without_trades_read_as_dashes_not_nan() -> None:
    m = compute_metrics([], initial_balance=10_000.0,
                        bar_times=[datetime(2023, 1, 2, tzinfo=UTC)])
    figures = {f.key: f.value for f in key_figures(m, "USD")}
    assert figures == {"net_pnl": "0.00 USD", "return": "0.00 %", "max_drawdown": "0.00 USD",
                       "sharpe": "–", "trades": "0", "win_rate": "–", "profit_factor": "–",
                       "exposure": "0.0 %"}
