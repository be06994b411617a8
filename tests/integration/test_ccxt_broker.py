"""The real ``ccxt.binance`` class against the fake Binance spot server on 127.0.0.1:
client ids, precision and limits, error mapping, and the faults that must end with exactly
one order (accepted then timed out, accepted then dropped) or with none, never re-sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes.binance_fake import FakeBinance
from support.builders import a_bar, an_intent, an_order

from domain import (
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from domain.errors import VenueError
from executor.brokers.ccxt_broker import CcxtBroker, exchange_code, make_exchange
from executor.brokers.config import CcxtSettings, ResolverSettings
from executor.engine.resolver import OrderResolver
from executor.engine.router import OrderRouter
from executor.journal.store import Journal

BAR = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
ACCOUNT = "bn-acct"


def settings(**overrides: Any) -> CcxtSettings:
    values: dict[str, Any] = dict(symbols=("BTC/USDT",), timeout_ms=500, rate_limit_ms=1,
                                  read_retries=2, read_backoff_seconds=0.01)
    values.update(overrides)
    return CcxtSettings(**values)


def intent(n: int = 1, *, side: OrderSide = OrderSide.BUY, volume: float = 0.01,
           order_type: OrderType = OrderType.MARKET, price: float | None = None,
           symbol: str = "BTC/USDT") -> OrderIntent:
    coid = client_order_id(ACCOUNT, symbol, BAR + timedelta(minutes=15 * n), f"i{n}")
    return an_intent(client_order_id=coid, account=ACCOUNT, symbol=symbol, side=side, volume=volume,
                     order_type=order_type, bar_time=BAR, price=price, stop_loss=29_000.0)


def submitting(i: OrderIntent) -> Order:
    return an_order(intent=i).transition(OrderState.SUBMITTING)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance() as f:
        yield f


def make_broker(fake: FakeBinance, secret: str | None = None, **overrides: Any) -> CcxtBroker:
    s = settings(**overrides)
    ex = make_exchange(s, api_key=fake.api_key, secret=secret or fake.secret,
                       api_urls=fake.api_urls())
    return CcxtBroker(ex, s, sleep=lambda _s: None)


@pytest.fixture
def broker(fake: FakeBinance) -> CcxtBroker:
    return make_broker(fake)


@pytest.fixture
def journal(sqlite_url: str) -> Iterator[Journal]:
    j = Journal.open(sqlite_url)
    yield j
    j.close()


def posts(fake: FakeBinance) -> int:
    return fake.requests.count(("POST", "/api/v3/order"))


# --------------------------------------------------------------------------- basics


def test_markets_load_once_from_the_spot_endpoint_only(fake: FakeBinance,
                                                       broker: CcxtBroker) -> None:
    broker.ensure_markets()
    broker.ensure_markets()
    broker.submit(submitting(intent()))
    broker.lookup(intent().client_order_id)
    paths = [p for _, p in fake.requests]
    assert paths.count("/api/v3/exchangeInfo") == 1
    assert not [p for p in paths if "/sapi/" in p or "/fapi/" in p or "/dapi/" in p]
    assert broker.exchange.enableRateLimit is True


def test_market_order_carries_our_client_id_and_is_rounded(fake: FakeBinance,
                                                           broker: CcxtBroker) -> None:
    i = intent(volume=0.0123456)
    result = broker.submit(submitting(i))
    assert result.state is OrderState.FILLED
    assert result.filled_volume == pytest.approx(0.01234)
    assert result.avg_fill_price == pytest.approx(30_000.0)
    assert result.reason == ""  # its stop goes out as an order of its own (place_protection)
    [order] = fake.orders_by_client_id(i.client_order_id)
    assert order["origQty"] == "0.01234000" and order["type"] == "MARKET"
    assert result.broker_order_id == str(order["orderId"])


def test_limit_order_price_rounded_accepted_and_listed(fake: FakeBinance,
                                                       broker: CcxtBroker) -> None:
    i = intent(order_type=OrderType.LIMIT, price=29_000.123)
    result = broker.submit(submitting(i))
    assert result.state is OrderState.ACCEPTED
    [order] = fake.orders_by_client_id(i.client_order_id)
    assert order["price"] == "29000.12000000"
    [working] = broker.open_orders()
    assert working.client_order_id == i.client_order_id and working.ours
    assert broker.lookup(i.client_order_id).state is OrderState.ACCEPTED  # type: ignore[union-attr]


def test_below_the_market_minimums_is_rejected_without_sending(fake: FakeBinance,
                                                               broker: CcxtBroker) -> None:
    broker.on_bar(a_bar(symbol="BTC/USDT", timeframe="M15", time=BAR, open=30_000, high=30_000,
                        low=30_000, close=30_000))
    tiny = broker.submit(submitting(intent(1, volume=0.0001)))  # 3 USDT < 5 minNotional
    assert tiny.state is OrderState.REJECTED and "notional" in tiny.reason
    dust = broker.submit(submitting(intent(2, volume=0.000001)))  # below amount precision
    assert dust.state is OrderState.REJECTED and "not sent" in dust.reason
    assert posts(fake) == 0


@pytest.mark.parametrize(("step", "words"), [
    (("reject", -2010, "Account has insufficient balance for requested action."),
     "InsufficientFunds"),
    (("reject", -1013, "Filter failure: NOTIONAL"), "Filter failure"),
    (("reject", -1013, "Filter failure: LOT_SIZE"), "InvalidOrder"),
])
def test_exchange_rejections_are_rejections(fake: FakeBinance, broker: CcxtBroker,
                                            step: tuple[Any, ...], words: str) -> None:
    fake.script("POST", "/api/v3/order", step)
    result = broker.submit(submitting(intent()))
    assert result.state is OrderState.REJECTED and words in result.reason
    assert posts(fake) == 1


def test_real_insufficient_balance_and_bad_key(fake: FakeBinance) -> None:
    broker = make_broker(fake)
    fake.balances["USDT"] = 10.0
    result = broker.submit(submitting(intent(volume=0.01)))
    assert result.state is OrderState.REJECTED and "insufficient balance" in result.reason
    bad = make_broker(fake, secret="not-the-secret")
    result = bad.submit(submitting(intent(2)))
    assert result.state is OrderState.REJECTED and "AuthenticationError" in result.reason
    assert exchange_code(Exception('binance {"code":-1022,"msg":"x"}')) == -1022


def test_partial_fills(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.script("POST", "/api/v3/order", ("partial", 0.5), ("partial", 0.4))
    market = broker.submit(submitting(intent(1, volume=0.01)))
    assert market.state is OrderState.CANCELLED  # Binance: EXPIRED with a partial fill
    assert market.filled_volume == pytest.approx(0.005) and "partial" in market.reason
    limit = broker.submit(submitting(intent(2, volume=0.01, order_type=OrderType.LIMIT,
                                            price=31_000.0)))
    assert limit.state is OrderState.PARTIALLY_FILLED
    assert limit.filled_volume == pytest.approx(0.004)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("step", [("accept_then_sleep", 1.2), ("accept_then_drop",)])
def test_accepted_then_timed_out_or_dropped_ends_with_exactly_one_order(
        fake: FakeBinance, broker: CcxtBroker, journal: Journal,
        step: tuple[Any, ...]) -> None:
    router = OrderRouter(journal, broker)
    i = intent()
    fake.script("POST", "/api/v3/order", step)
    first = router.submit(i)
    assert first.state is OrderState.UNKNOWN and "outcome unknown" in first.reason
    again = router.submit(i)  # the same cycle re-run: resolved by lookup, never re-sent
    assert again.state is OrderState.FILLED
    assert posts(fake) == 1
    assert len(fake.orders_by_client_id(i.client_order_id)) == 1
    events = [e["to_state"] for e in journal.queries.trace(i.client_order_id)["order_events"]]  # type: ignore[index]
    assert events == ["new", "submitting", "unknown", "filled"]


def test_dropped_before_processing_is_lost_after_the_grace_never_resent(
        fake: FakeBinance, broker: CcxtBroker, journal: Journal) -> None:
    router = OrderRouter(journal, broker)
    i = intent()
    fake.script("POST", "/api/v3/order", ("drop",))
    assert router.submit(i).state is OrderState.UNKNOWN
    resolver = OrderResolver(journal, broker, ResolverSettings(
        grace_lookups=3, grace_seconds=0.0, backoff_seconds=0.01))
    assert resolver.settle(ACCOUNT, max_seconds=5) == []
    lost = journal.orders.get_order(i.client_order_id)
    assert lost is not None and lost.state is OrderState.REJECTED
    assert "never re-sent" in lost.reason
    assert posts(fake) == 1 and fake.orders_by_client_id(i.client_order_id) == []


def test_stale_timestamp_resyncs_time_and_resends_the_same_id_once(fake: FakeBinance,
                                                                   broker: CcxtBroker) -> None:
    fake.time_offset_ms = -30_000  # the exchange's clock is 30 s behind ours
    i = intent()
    result = broker.submit(submitting(i))
    assert result.state is OrderState.FILLED
    assert posts(fake) == 2 and ("GET", "/api/v3/time") in fake.requests
    assert len(fake.orders_by_client_id(i.client_order_id)) == 1
    fake.script("POST", "/api/v3/order", ("timestamp",), ("timestamp",))
    stuck = broker.submit(submitting(intent(2)))
    assert stuck.state is OrderState.REJECTED and "recvWindow" in stuck.reason


def test_duplicate_client_id_is_adopted_not_rejected(fake: FakeBinance, broker: CcxtBroker,
                                                     journal: Journal) -> None:
    i = intent(order_type=OrderType.LIMIT, price=29_000.0)
    assert broker.submit(submitting(i)).state is OrderState.ACCEPTED
    # A second send with the same id (what the router never does) meets -2010 Duplicate:
    again = broker.submit(submitting(i))
    assert again.state is OrderState.UNKNOWN and "duplicate" in again.reason
    assert broker.lookup(i.client_order_id).state is OrderState.ACCEPTED  # type: ignore[union-attr]
    assert len(fake.orders_by_client_id(i.client_order_id)) == 1


def test_reads_are_retried_on_network_errors(fake: FakeBinance, broker: CcxtBroker) -> None:
    i = intent()
    broker.submit(submitting(i))
    fake.script("GET", "/api/v3/order", ("drop",), ("http", 503))
    assert broker.lookup(i.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]
    fake.script("GET", "/api/v3/order", ("drop",), ("drop",), ("drop",))
    with pytest.raises(VenueError) as info:
        broker.lookup(i.client_order_id)
    assert info.value.retryable is True


def test_submit_is_never_retried_on_network_errors(fake: FakeBinance,
                                                   broker: CcxtBroker) -> None:
    fake.script("POST", "/api/v3/order", ("http", 503))
    result = broker.submit(submitting(intent()))
    assert result.state is OrderState.UNKNOWN
    assert posts(fake) == 1


# --------------------------------------------------------------------------- fills, positions


def test_fills_positions_and_foreign_orders(fake: FakeBinance, broker: CcxtBroker) -> None:
    a, b = intent(1, volume=0.02), intent(2, side=OrderSide.SELL, volume=0.005)
    broker.submit(submitting(a))
    broker.submit(submitting(b))
    # Someone trades the same account by hand (no client id of ours).
    fake.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                    "quantity": "0.1", "newClientOrderId": "web_manual_1"}, None)
    broker.on_bar(a_bar(symbol="BTC/USDT", timeframe="M15", time=BAR, open=1, high=1, low=1,
                        close=1))  # the book follows polled fills
    fills = broker.recent_fills(datetime.now(UTC) - timedelta(minutes=5))
    # Buys pay their fee in BTC: each has a "fee" fill after its entry.
    assert [(f.fill.client_order_id, f.kind) for f in fills] == [
        (a.client_order_id, "entry"), (a.client_order_id, "fee"),
        (b.client_order_id, "entry"), ("web_manual_1", "entry"), ("web_manual_1", "fee")]
    assert fills[0].fill.fill_id.startswith("binance:BTC/USDT:")
    assert fills[0].fill.fee == pytest.approx(0.02 * 30_000 * 0.001)  # its quote value
    assert fills[1].fill.volume == pytest.approx(0.02 * 0.001)  # the BTC it took
    assert fills[2].fill.fee == pytest.approx(0.005 * 30_000 * 0.001)  # a sell pays USDT
    ours = 0.02 * 0.999 - 0.005
    assert broker.positions()["BTC/USDT"].volume == pytest.approx(ours)  # ours only
    assert fake.balances["BTC"] == pytest.approx(ours + 0.1 * 0.999)
    bar = a_bar(symbol="BTC/USDT", timeframe="M15", time=BAR, open=1, high=1, low=1, close=1)
    fresh = CcxtBroker(broker.exchange, broker.settings)
    assert [f.fill.client_order_id for f in fresh.on_bar(bar)] == [
        a.client_order_id, a.client_order_id, b.client_order_id]
    assert fresh.on_bar(bar) == []


def test_fake_answers_cancel_and_account_in_binance_shapes(fake: FakeBinance,
                                                          broker: CcxtBroker) -> None:
    i = intent(order_type=OrderType.LIMIT, price=29_000.0)
    placed = broker.submit(submitting(i))
    ex = broker.exchange
    cancelled = ex.cancel_order(placed.broker_order_id, "BTC/USDT")
    assert cancelled["status"] == "canceled" and cancelled["clientOrderId"] == i.client_order_id
    assert broker.lookup(i.client_order_id).state is OrderState.CANCELLED  # type: ignore[union-attr]
    import ccxt

    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(placed.broker_order_id, "BTC/USDT")
    balance = ex.fetch_balance()
    assert balance["USDT"]["free"] == pytest.approx(1_000_000.0)
    assert "BTC" not in balance  # a new account: no base asset


# --------------------------------------------------------------------------- point


def test_point_is_the_markets_price_tick(fake: FakeBinance) -> None:
    """``min_stop_points`` needs the venue's point: Binance's PRICE_FILTER tickSize, which
    ccxt (precisionMode TICK_SIZE) gives as ``precision['price']``."""
    import ccxt

    fake.symbols["ETHUSDT"]["tick"] = "0.05"
    broker = make_broker(fake)
    assert broker.point("BTC/USDT") == pytest.approx(0.01)
    assert broker.point("ETH/USDT") == pytest.approx(0.05)
    assert broker.point("NOPE/USDT") is None
    # An exchange class that counts decimals: 2 decimals is a tick of 0.01.
    broker.exchange.precisionMode = ccxt.DECIMAL_PLACES
    broker.exchange.markets["BTC/USDT"]["precision"]["price"] = 2
    assert broker.point("BTC/USDT") == pytest.approx(0.01)
    broker.exchange.precisionMode = ccxt.SIGNIFICANT_DIGITS  # tick depends on the price
    assert broker.point("BTC/USDT") is None


# --------------------------------------------------------------------------- catch-up


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_catch_up_polls_fills_once_per_interval_not_once_per_bar(fake: FakeBinance) -> None:
    """Issue 15 #21: a catch-up of many closed bars in one cycle must not spend one
    rate-limited myTrades request per bar."""
    s = settings()  # catchup_poll_seconds: 10 by default
    mono = Mono()
    broker = CcxtBroker(make_exchange(s, api_key=fake.api_key, secret=fake.secret,
                                      api_urls=fake.api_urls()), s, sleep=lambda _s: None,
                        monotonic=mono)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # all closed before the first poll
    bars = [a_bar(symbol="BTC/USDT", timeframe="M1", time=now - timedelta(minutes=1000 - k),
                  open=30_000, high=30_000, low=30_000, close=30_000) for k in range(990)]

    def trades_requests() -> int:
        return fake.requests.count(("GET", "/api/v3/myTrades"))

    for bar in bars[:400]:
        assert broker.on_bar(bar) == []
    assert trades_requests() == 1
    # An order sent mid catch-up: its fill shows at the very next bar.
    i = intent(1)
    assert broker.submit(submitting(i)).state is OrderState.FILLED
    assert [(f.fill.client_order_id, f.kind) for f in broker.on_bar(bars[400])] == [
        (i.client_order_id, "entry"), (i.client_order_id, "fee")]
    for bar in bars[401:800]:
        broker.on_bar(bar)
    assert trades_requests() == 2
    # A resting order that fills while the catch-up goes on shows after the interval.
    resting = intent(2, order_type=OrderType.LIMIT, price=29_000.0)
    broker.submit(submitting(resting))
    broker.on_bar(bars[800])
    fake.fill_resting(resting.client_order_id)
    assert broker.on_bar(bars[801]) == []
    mono.t += 10.0
    assert {f.fill.client_order_id for f in broker.on_bar(bars[802])} == {
        resting.client_order_id}
    assert trades_requests() == 4
    # Live: a bar that closed after the last poll is polled at once.
    live = a_bar(symbol="BTC/USDT", timeframe="M1", time=datetime.now(UTC), open=30_000,
                 high=30_000, low=30_000, close=30_000)
    broker.on_bar(live)
    assert trades_requests() == 5
