"""The swap broker (``CcxtSwapBroker``) with the real ``ccxt.binanceusdm`` against the
loopback USD-M fake: the account set up at start and verified, positions read from the
exchange, closes sent reduce-only, and the exchange's refusals ending as refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes.binance_usdm import FakeBinanceUsdm
from support.builders import a_bar, an_intent, an_order

from domain import Order, OrderIntent, OrderSide, OrderState, client_order_id
from domain.errors import ConfigError
from executor.brokers.ccxt_swap import CcxtSwapBroker, make_swap_exchange
from executor.brokers.config import CcxtSettings, SwapSettings

BTC = "BTC/USDT:USDT"
BAR = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
ACCOUNT = "swap-acct"


def make_broker(fake: FakeBinanceUsdm, **swap: Any) -> CcxtSwapBroker:
    s = CcxtSettings(exchange="binanceusdm", symbols=(BTC,), timeout_ms=2000,
                     rate_limit_ms=1, read_retries=1, read_backoff_seconds=0.0,
                     catchup_poll_seconds=0.0)  # every bar polls the trades
    ex = make_swap_exchange(s, api_key=fake.api_key, secret=fake.secret,
                            api_urls=fake.api_urls())
    return CcxtSwapBroker(ex, s, SwapSettings(**{"leverage": 3, **swap}),
                          sleep=lambda _s: None)


def intent(n: int, side: OrderSide, volume: float = 0.01, *,
           reduce_only: bool = False) -> OrderIntent:
    coid = client_order_id(ACCOUNT, BTC, BAR + timedelta(minutes=15 * n), f"s{n}")
    return an_intent(client_order_id=coid, account=ACCOUNT, symbol=BTC, side=side,
                     volume=volume, bar_time=BAR, reduce_only=reduce_only,
                     stop_loss=31_000.0 if side is OrderSide.SELL else None)


def submitting(i: OrderIntent) -> Order:
    return an_order(intent=i).transition(OrderState.SUBMITTING)


@pytest.fixture
def fake() -> Iterator[FakeBinanceUsdm]:
    with FakeBinanceUsdm() as f:
        yield f


@pytest.fixture
def broker(fake: FakeBinanceUsdm) -> CcxtSwapBroker:
    b = make_broker(fake)
    b.configure()
    return b


# ---------------------------------------------------------------------- start-up


def test_configure_sets_margin_mode_and_leverage_and_reads_them_back(
        fake: FakeBinanceUsdm) -> None:
    b = make_broker(fake, margin_mode="isolated", leverage=3)
    line = b.configure()
    assert (fake.margin_type["BTCUSDT"], fake.leverage["BTCUSDT"]) == ("ISOLATED", 3)
    assert "one-way" in line and "isolated" in line and "leverage 3" in line
    # Again: the exchange answers -4046 "No need to change margin type.": success.
    make_broker(fake, margin_mode="isolated", leverage=3).configure()
    assert fake.requests.count(("POST", "/fapi/v1/marginType")) == 2
    assert fake.requests.count(("GET", "/fapi/v1/symbolConfig")) == 4  # read back, twice


def test_a_hedge_mode_account_is_refused_not_switched(fake: FakeBinanceUsdm) -> None:
    fake.dual_side = True
    with pytest.raises(ConfigError, match="hedge position mode"):
        make_broker(fake).configure()
    assert fake.dual_side is True
    assert not any(m == "POST" for m, _ in fake.requests)


def test_a_position_in_the_other_margin_mode_refuses_to_start(fake: FakeBinanceUsdm) -> None:
    cross = make_broker(fake, margin_mode="cross")
    cross.configure()
    cross.submit(submitting(intent(1, OrderSide.BUY)))
    with pytest.raises(ConfigError) as info:
        make_broker(fake, margin_mode="isolated").configure()
    message = str(info.value)
    assert "margin mode is cross" in message and "asks isolated" in message
    assert "-4048" in message  # the exchange's refusal, quoted
    assert fake.margin_type["BTCUSDT"] == "CROSSED"


def test_a_leverage_the_exchange_did_not_take_refuses_to_start(fake: FakeBinanceUsdm) -> None:
    fake.set_leverage = lambda q: (200, {"leverage": int(q["leverage"]),  # type: ignore[method-assign]
                                         "maxNotionalValue": "50000", "symbol": q["symbol"]})
    with pytest.raises(ConfigError, match=r"leverage is 20, .* asks 3"):
        make_broker(fake).configure()


# ---------------------------------------------------------------------- positions, closes


def test_a_short_is_read_from_the_exchange(fake: FakeBinanceUsdm,
                                           broker: CcxtSwapBroker) -> None:
    opened = broker.submit(submitting(intent(1, OrderSide.SELL)))
    assert (opened.state, opened.filled_volume, opened.avg_fill_price) == (
        OrderState.FILLED, 0.01, 30_000.0)
    assert fake.orders[0]["reduceOnly"] is False
    pos = broker.position(BTC)
    assert (pos.volume, pos.avg_price) == (-0.01, 30_000.0)
    assert broker.positions() == {BTC: pos}
    liq = broker.liquidation_price(BTC)
    assert liq is not None and liq > 30_000.0
    assert ("GET", "/fapi/v3/positionRisk") in fake.requests


def test_positions_are_read_once_per_second_and_afresh_after_an_order(
        fake: FakeBinanceUsdm) -> None:
    """The strategy's context, the protective orders and each decision ask for the
    position within one bar: one ``positionRisk`` request (weight 5) serves them for a
    second, and an order or a fill makes the next read go to the exchange."""
    clock = [0.0]
    broker = make_broker(fake)
    broker._monotonic = lambda: clock[0]  # the test's clock
    broker.configure()

    def reads() -> int:
        return sum(1 for r in fake.requests if r == ("GET", "/fapi/v3/positionRisk"))

    before = reads()
    assert broker.position(BTC).is_flat and broker.positions() == {}
    assert reads() == before + 1
    broker.submit(submitting(intent(1, OrderSide.SELL)))  # reads it itself, uncached
    sent = reads()
    assert broker.position(BTC).volume == pytest.approx(-0.01)
    assert broker.position(BTC).volume == pytest.approx(-0.01)
    assert reads() == sent + 1
    clock[0] += 1.5
    broker.positions()
    assert reads() == sent + 2


def test_a_close_goes_reduce_only_and_flattens(fake: FakeBinanceUsdm,
                                               broker: CcxtSwapBroker) -> None:
    broker.submit(submitting(intent(1, OrderSide.SELL)))
    closed = broker.submit(submitting(intent(2, OrderSide.BUY)))
    assert closed.state is OrderState.FILLED
    assert fake.orders[-1]["reduceOnly"] is True
    assert broker.position(BTC).is_flat


def test_a_reduce_only_intent_is_cut_to_the_position(fake: FakeBinanceUsdm,
                                                     broker: CcxtSwapBroker) -> None:
    broker.submit(submitting(intent(1, OrderSide.BUY, 0.02)))
    cut = broker.submit(submitting(intent(2, OrderSide.SELL, 0.05, reduce_only=True)))
    assert (cut.state, cut.filled_volume) == (OrderState.FILLED, 0.02)
    assert "cut from 0.05 to the position 0.02" in cut.reason
    assert fake.orders[-1]["reduceOnly"] is True and broker.position(BTC).is_flat


def test_a_reduce_only_intent_with_nothing_to_reduce_is_not_sent(
        fake: FakeBinanceUsdm, broker: CcxtSwapBroker) -> None:
    result = broker.submit(submitting(intent(1, OrderSide.BUY, reduce_only=True)))
    assert result.state is OrderState.REJECTED and "not sent" in result.reason
    assert "no BTC/USDT:USDT position against a buy" in result.reason
    assert fake.orders == []


def test_a_reversal_larger_than_the_position_is_sent_plain(fake: FakeBinanceUsdm,
                                                           broker: CcxtSwapBroker) -> None:
    broker.submit(submitting(intent(1, OrderSide.BUY)))
    broker.submit(submitting(intent(2, OrderSide.SELL, 0.02)))
    assert fake.orders[-1]["reduceOnly"] is False
    assert broker.position(BTC).volume == pytest.approx(-0.01)


def test_an_unreadable_position_sends_nothing(fake: FakeBinanceUsdm,
                                              broker: CcxtSwapBroker) -> None:
    fake.script("GET", "/fapi/v3/positionRisk", ("reject", -1003, "Too many requests.", 429))
    result = broker.submit(submitting(intent(1, OrderSide.BUY)))
    assert result.state is OrderState.REJECTED and "cannot be read" in result.reason
    assert fake.orders == []


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("volume", "step", "code"), [
    (100.0, None, -2019),  # margin: 3M notional at 3x
    (0.001, None, -4164),  # 30 USDT < 100 (no bar seen: the exchange judges it)
    (0.01, ("reject", -2022, "ReduceOnly Order is rejected."), -2022),
])
def test_futures_refusals_end_rejected_not_unknown(fake: FakeBinanceUsdm,
                                                   broker: CcxtSwapBroker, volume: float,
                                                   step: tuple[Any, ...] | None,
                                                   code: int) -> None:
    """Against the loopback URL ccxt raises a plain ExchangeError for these; before the
    USD-M codes were read they ended ``unknown`` (looked up, never refused)."""
    if step is not None:
        fake.script("POST", "/fapi/v1/order", step)
    result = broker.submit(submitting(intent(1, OrderSide.BUY, volume)))
    assert result.state is OrderState.REJECTED and str(code) in result.reason
    assert fake.orders == []


def test_below_the_minimum_notional_is_refused_before_sending(
        fake: FakeBinanceUsdm, broker: CcxtSwapBroker) -> None:
    broker.on_bar(a_bar(symbol=BTC, timeframe="M15", time=BAR, open=30_000, high=30_000,
                        low=30_000, close=30_000))
    result = broker.submit(submitting(intent(1, OrderSide.BUY, 0.001)))
    assert result.state is OrderState.REJECTED and "notional" in result.reason
    assert ("POST", "/fapi/v1/order") not in fake.requests


# ---------------------------------------------------------------------- lookup, fills, equity


def test_lookup_fills_and_equity(fake: FakeBinanceUsdm, broker: CcxtSwapBroker) -> None:
    i = intent(1, OrderSide.SELL)
    broker.submit(submitting(i))
    found = broker.lookup(i.client_order_id)
    assert found is not None and found.state is OrderState.FILLED
    bar = a_bar(symbol=BTC, timeframe="M15", time=BAR, open=30_000, high=30_000,
                low=30_000, close=30_000)
    [fill] = broker.on_bar(bar)
    assert (fill.fill.client_order_id, fill.fill.side, fill.fill.volume) == (
        i.client_order_id, OrderSide.SELL, 0.01)
    assert fill.fill.fee == pytest.approx(0.01 * 30_000.0 * 0.0005)  # USDT, no fee fill
    assert broker.on_bar(bar) == []  # reported once
    restarted = make_broker(fake)  # after a restart, a journaled fill is not news either
    restarted.restore([], [fill.fill], ["entry"])
    assert restarted.on_bar(bar) == []
    fake.set_price("BTCUSDT", 29_000.0)
    broker._account_changed()
    assert broker.equity_currency() == "USDT"
    assert broker.equity() == pytest.approx(10_000.0 - 0.15 + 0.01 * 1_000.0)


def test_funding_paid_and_received_with_exchange_ids(fake: FakeBinanceUsdm,
                                                     broker: CcxtSwapBroker) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    assert broker.funding(start) == []
    broker.submit(submitting(intent(1, OrderSide.BUY)))
    fake.charge_funding("BTCUSDT", 0.0001)  # a long pays a positive rate
    fake.charge_funding("BTCUSDT", -0.0002)  # and receives a negative one
    paid, received = broker.funding(start)
    assert (paid.symbol, paid.currency) == (BTC, "USDT")
    assert (paid.amount, received.amount) == (pytest.approx(-0.03), pytest.approx(0.06))
    assert paid.payment_id != received.payment_id
    assert [p.payment_id for p in broker.funding(start)] == [paid.payment_id,
                                                             received.payment_id]


def test_a_closing_fill_carries_the_pnl_the_exchange_realised(
        fake: FakeBinanceUsdm, broker: CcxtSwapBroker) -> None:
    """USD-M trades state their realised PnL (userTrades ``realizedPnl``): the journal books
    it with the fill, as it does MT5's deal profit."""
    bar = a_bar(symbol=BTC, timeframe="M15", time=BAR, open=30_000, high=30_000,
                low=30_000, close=30_000)
    broker.submit(submitting(intent(1, OrderSide.SELL)))
    fake.set_price("BTCUSDT", 29_500.0)
    broker.submit(submitting(intent(2, OrderSide.BUY)))
    opened, closed = broker.on_bar(bar)
    assert (opened.realized_pnl, closed.realized_pnl) == (0.0, pytest.approx(5.0))
