"""Live account equity: ``CcxtBroker.equity`` through the real ccxt client against the fake
Binance, ``Mt5Broker.equity`` through the real rpyc client and our bridge against the fake
MetaTrader5 module; the short cache and what drops it (an order, a fill); read errors as
``VenueError`` and, in the daemon, as unknown equity (fail closed, counted and logged
once); and a live daemon with ``max_daily_loss`` that trades, then vetoes an entry once the
account lost more than the limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import mt5_fake as M
from fakes.binance_fake import MINUTE_MS, FakeBinance, _fmt
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge
from support.builders import a_bar, an_intent, an_order
from support.daemon_helpers import (
    AlwaysBuy,
    cleared_journal,
    live_settings,
    registered_always_buy,
    settings_for,
)

import executor.engine.decider as decider_module
import executor.engine.triggers as triggers_module
from domain import (
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from domain.errors import PermanentVenueError, TemporaryVenueError, VenueError
from executor.brokers.ccxt_broker import CcxtBroker, make_exchange
from executor.brokers.config import CcxtSettings
from executor.brokers.mt5 import Mt5Broker
from executor.brokers.mt5_client import Mt5Client
from executor.engine.startup import start_live
from executor.engine.stats import RunStats
from executor.engine.triggers import Triggers
from executor.journal.store import Journal
from executor.wiring import build_daemon

NOW = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


class Mono:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    """Stands in for a module's structlog logger: every call, by level."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **kw: Any) -> None:
            self.calls.append((level, event, kw))
        return record

    def events(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.calls if e == event]


def submitting(i: OrderIntent) -> Order:
    return an_order(intent=i).transition(OrderState.SUBMITTING)


# --------------------------------------------------------------------------- ccxt


def ccxt_broker(fake: FakeBinance, mono: Mono | None = None, *,
                symbols: tuple[str, ...] = ("BTC/USDT",), clock: Any = None,
                **overrides: Any) -> CcxtBroker:
    values: dict[str, Any] = dict(symbols=symbols, timeout_ms=1000, rate_limit_ms=1,
                                  read_retries=0, read_backoff_seconds=0.01)
    values.update(overrides)
    s = CcxtSettings(**values)
    ex = make_exchange(s, api_key=fake.api_key, secret=fake.secret, api_urls=fake.api_urls())
    return CcxtBroker(ex, s, sleep=lambda _s: None, clock=clock,
                      monotonic=mono or time.monotonic)


def account_reads(fake: FakeBinance) -> int:
    return fake.requests.count(("GET", "/api/v3/account"))


def ticker_reads(fake: FakeBinance) -> int:
    return fake.requests.count(("GET", "/api/v3/ticker/24hr"))


@pytest.fixture
def binance() -> Iterator[FakeBinance]:
    with FakeBinance(balances={"USDT": 50_000.0, "BTC": 2.0, "ETH": 5.0}) as f:
        yield f


def test_ccxt_equity_is_the_quote_balance_plus_traded_bases_at_the_ticker(
        binance: FakeBinance) -> None:
    broker = ccxt_broker(binance)
    assert broker.equity_currency() == "USDT"
    # ETH is held but not traded here: not this daemon's risk, left out.
    assert broker.equity() == pytest.approx(50_000.0 + 2.0 * 30_000.0)
    assert account_reads(binance) == 1 and ticker_reads(binance) == 1
    both = ccxt_broker(binance, symbols=("BTC/USDT", "ETH/USDT"))
    assert both.equity() == pytest.approx(50_000.0 + 2.0 * 30_000.0 + 5.0 * 2_000.0)


def test_ccxt_equity_marks_at_a_fresh_bar_close_and_asks_the_ticker_for_an_old_one(
        binance: FakeBinance) -> None:
    broker = ccxt_broker(binance, clock=lambda: NOW)
    fresh = a_bar(symbol="BTC/USDT", timeframe="M1", time=NOW - timedelta(seconds=65),
                  open=30_900.0, high=31_100.0, low=30_800.0, close=31_000.0)
    broker.on_bar(fresh)  # closed 5 s ago: as fresh as a ticker, and free
    before = ticker_reads(binance)
    assert broker.equity() == pytest.approx(50_000.0 + 2.0 * 31_000.0)
    assert ticker_reads(binance) == before

    old = ccxt_broker(binance, clock=lambda: NOW)
    # a catch-up bar: today's balances at its close would lie
    old.on_bar(a_bar(symbol="BTC/USDT", timeframe="M1", time=NOW - timedelta(hours=3),
                     open=25_000.0, high=25_100.0, low=24_900.0, close=25_000.0))
    assert old.equity() == pytest.approx(50_000.0 + 2.0 * 30_000.0)
    assert ticker_reads(binance) == before + 1


def test_ccxt_equity_is_cached_and_dropped_by_an_order_or_a_fill(binance: FakeBinance) -> None:
    mono = Mono()
    broker = ccxt_broker(binance, mono)
    first = broker.equity()
    mono.t += 0.5
    assert broker.equity() == first and account_reads(binance) == 1  # within the second

    coid = client_order_id("bn", "BTC/USDT", NOW, "buy")
    buy = an_intent(client_order_id=coid, account="bn", symbol="BTC/USDT", side=OrderSide.BUY,
                    volume=0.01, order_type=OrderType.MARKET, bar_time=NOW)
    assert broker.submit(submitting(buy)).state is OrderState.FILLED
    after_fill = broker.equity()  # read afresh at once: the fill moved the balances
    assert account_reads(binance) == 2
    assert after_fill == pytest.approx(first - 0.01 * 30_000.0 * 0.001)  # the taker fee

    mono.t += 1.5
    broker.equity()
    assert account_reads(binance) == 3  # the second is over

    coid2 = client_order_id("bn", "BTC/USDT", NOW, "limit")
    limit = an_intent(client_order_id=coid2, account="bn", symbol="BTC/USDT", side=OrderSide.BUY,
                      volume=0.01, order_type=OrderType.LIMIT, bar_time=NOW, price=29_000.0)
    assert broker.submit(submitting(limit)).state is OrderState.ACCEPTED
    broker.equity()
    assert account_reads(binance) == 4
    binance.fill_resting(coid2)  # fills at the exchange; the next bar's poll reports it
    bar = a_bar(symbol="BTC/USDT", timeframe="M1", time=NOW, open=30_000.0, high=30_000.0,
                low=30_000.0, close=30_000.0)
    assert coid2 in [f.fill.client_order_id for f in broker.on_bar(bar)]
    broker.equity()
    assert account_reads(binance) == 5


def test_ccxt_equity_errors_are_broker_errors_raised_again_for_the_ttl(
        binance: FakeBinance) -> None:
    mono = Mono()
    broker = ccxt_broker(binance, mono)
    broker.ensure_markets()
    binance.script("GET", "/api/v3/account", ("http", 503))
    with pytest.raises(VenueError) as first:
        broker.equity()
    assert first.value.retryable  # 503: the exchange is away, a later read may work
    with pytest.raises(VenueError) as again:
        broker.equity()
    assert again.value is first.value and account_reads(binance) == 1  # not asked again
    mono.t += 1.1
    assert broker.equity() == pytest.approx(110_000.0)

    broker.exchange.secret = "not-the-secret"  # -1022: asking again will not help
    mono.t += 1.1
    with pytest.raises(VenueError) as denied:
        broker.equity()
    assert not denied.value.retryable and "-1022" in str(denied.value)
    assert "not-the-secret" not in str(denied.value)


def test_ccxt_equity_refuses_symbols_quoted_in_different_currencies(
        binance: FakeBinance) -> None:
    binance.symbols["ETHBTC"] = dict(base="ETH", quote="BTC", tick="0.00001", step="0.0001",
                                     min_qty="0.0001", min_notional="0.0001", price=0.066)
    broker = ccxt_broker(binance, symbols=("BTC/USDT", "ETH/BTC"))
    with pytest.raises(VenueError, match="one currency") as refused:
        broker.equity()
    assert not refused.value.retryable
    assert "USDT: BTC/USDT" in str(refused.value) and "BTC: ETH/BTC" in str(refused.value)


# --------------------------------------------------------------------------- MT5


class Mt5Env:
    def __init__(self, mono: Mono, ttl: float = 1.0, **settings: Any) -> None:
        self.fake = FakeMetaTrader5()
        self.bridge = start_bridge(self.fake)
        self.settings = client_settings(self.fake, self.bridge.port, **settings)
        self.client = Mt5Client(self.settings, password=self.fake.account_password,
                                bridge_secret=SECRET)
        self.broker = Mt5Broker(self.client, self.settings, equity_ttl_seconds=ttl,
                                monotonic=mono)
        self.reads = 0
        original = self.fake.account_info

        def counted() -> Any:
            self.reads += 1
            return original()

        self.fake.account_info = counted  # type: ignore[method-assign]

    def close(self) -> None:
        self.client.close()
        self.bridge.close()


@pytest.fixture
def mono() -> Mono:
    return Mono()


@pytest.fixture
def mt5(mono: Mono) -> Iterator[Mt5Env]:
    e = Mt5Env(mono)
    yield e
    e.close()


def mt5_intent(n: int = 1, volume: float = 1.0) -> OrderIntent:
    coid = client_order_id("mt5-acct", "EURUSD", NOW + timedelta(minutes=n), "eq")
    return an_intent(client_order_id=coid, account="mt5-acct", symbol="EURUSD", side=OrderSide.BUY,
                     volume=volume, order_type=OrderType.MARKET, bar_time=NOW, stop_loss=1.09,
                     take_profit=1.12)


def test_mt5_account_info_crosses_the_bridge_in_the_documented_shape(mt5: Mt5Env) -> None:
    info = mt5.client.account_info()
    assert info is not None and info["currency"] == "USD"
    assert info["equity"] == pytest.approx(info["balance"] + info["credit"] + info["profit"])
    assert mt5.broker.equity() == pytest.approx(10_000.0)


def test_mt5_equity_follows_the_floating_profit_after_the_cache(mt5: Mt5Env,
                                                                mono: Mono) -> None:
    mt5.broker.margin_mode()  # read once, before trading (check_terminal at start)
    mt5.reads = 0  # equity reads from here
    assert mt5.broker.equity() == pytest.approx(10_000.0)
    order = mt5.broker.submit(submitting(mt5_intent()))
    assert order.state is OrderState.FILLED
    # The order dropped the cached reading: bought at the ask, valued at the bid.
    assert mt5.broker.equity() == pytest.approx(10_000.0 - 10.0)
    assert mt5.reads == 2
    mt5.fake.move_price("EURUSD", 0.0020)
    mono.t += 0.5
    assert mt5.broker.equity() == pytest.approx(9_990.0) and mt5.reads == 2  # cached
    mono.t += 0.6
    assert mt5.broker.equity() == pytest.approx(10_000.0 - 10.0 + 200.0)
    assert mt5.reads == 3


def test_mt5_fill_reported_by_on_bar_drops_the_cached_equity(mt5: Mt5Env) -> None:
    order = mt5.broker.submit(submitting(mt5_intent()))
    assert mt5.broker.equity() == pytest.approx(9_990.0)
    mt5.fake.hit_protection(int(order.broker_order_id or 0), "sl")  # closed at 1.09
    bar = a_bar(symbol="EURUSD", timeframe="M15", time=NOW, open=1.1, high=1.1, low=1.1, close=1.1)
    assert "stop_loss" in [f.kind for f in mt5.broker.on_bar(bar)]
    reads = mt5.reads
    assert mt5.broker.equity() == pytest.approx(mt5.fake.balance)
    assert mt5.fake.balance < 10_000.0 and mt5.reads == reads + 1


def test_mt5_equity_read_failures_are_broker_errors() -> None:
    env = Mt5Env(Mono(), ttl=0.0, reconnect_attempts=2)
    try:
        def refused() -> Any:
            env.fake._set_error(M.RES_E_FAIL, "Generic fail")
            return None

        env.fake.account_info = refused  # type: ignore[method-assign]
        with pytest.raises(VenueError, match="account_info failed") as none:
            env.broker.equity()
        assert none.value.retryable
        env.bridge.close()  # the terminal side goes away
        with pytest.raises(VenueError) as lost:
            env.broker.equity()
        assert lost.value.retryable
    finally:
        env.client.close()


# --------------------------------------------------------------------------- daemon


def test_daemon_equity_error_is_unknown_equity_counted_and_logged_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(triggers_module, "log", recorder)
    outage = TemporaryVenueError("ccxt:binance fetch_balance failed: 503")
    answers: list[Any] = [outage, outage, 1234.5, PermanentVenueError("denied")]

    def equity() -> float:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return float(answer)

    host = SimpleNamespace(broker=SimpleNamespace(name="ccxt:binance", equity=equity),
                           stats=RunStats(), _equity_failure=None)
    assert Triggers.equity(host) is None  # type: ignore[arg-type]
    assert Triggers.equity(host) is None  # type: ignore[arg-type]  # same failure
    assert Triggers.equity(host) == 1234.5  # type: ignore[arg-type]
    assert Triggers.equity(host) is None  # type: ignore[arg-type]  # a new one
    assert host.stats.broker_read_errors["equity"] == 2
    logged = recorder.events("equity_read_failed")
    assert [e["retryable"] for e in logged] == [True, False]
    assert logged[0]["broker"] == "ccxt:binance"
    no_equity = SimpleNamespace(broker=SimpleNamespace(), stats=RunStats(), _equity_failure=None)
    assert Triggers.equity(no_equity) is None  # type: ignore[arg-type]


class TrendingBinance(FakeBinance):
    """Closes rise a little every minute, so the momentum provider agrees with every long
    (the base fake's closes oscillate: a later bar could vote short)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.k0 = int(time.time() * 1000) // MINUTE_MS - 5_000

    def kline(self, sid: str, open_ms: int, minutes: int) -> list[Any]:
        j = open_ms // (minutes * MINUTE_MS) - self.k0
        o = self.symbols[sid]["price"] + 0.5 * j
        c = o + 0.5
        close_ms = open_ms + minutes * MINUTE_MS - 1
        return [open_ms, _fmt(o, 2), _fmt(c + 1.0, 2), _fmt(o - 1.0, 2), _fmt(c, 2),
                _fmt(1.5), close_ms, _fmt(o * 1.5, 2), 100, _fmt(0.7), _fmt(o * 0.7, 2), "0"]


@pytest.fixture
def always_buy() -> Iterator[object]:
    yield from registered_always_buy()


def test_live_daemon_with_max_daily_loss_trades_then_vetoes_after_a_loss(
        tmp_path: Path, always_buy: object, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(triggers_module, "log", recorder)  # equity reads
    monkeypatch.setattr(decider_module, "log", recorder)  # vetoes
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with TrendingBinance(balances={"USDT": 100_000.0, "BTC": 0.0}) as fake:
        settings = live_settings(url, fake, AlwaysBuy.name, max_daily_loss=500.0,
                                 ccxt={"read_retries": 0})
        assert settings.guardrails.max_daily_loss == 500.0
        journal = cleared_journal(url, AlwaysBuy.name)
        daemon = build_daemon(settings, journal)
        exchange = daemon.live.broker.exchange

        def next_minute(minutes: int) -> datetime:
            """The exchange (and the bars) move on; ccxt keeps its requests in its window."""
            fake.clock = lambda: time.time() + 60 * minutes
            exchange.load_time_difference()
            return datetime.now(UTC) + timedelta(minutes=minutes)

        try:
            executor = daemon.executor
            executor.start()
            start_live(settings, daemon, journal)
            executor.run_cycle(datetime.now(UTC))
            placed = len(fake.orders)
            assert placed >= 1  # equity known: max_daily_loss no longer vetoes everything
            daily_vetoes = executor.stats.vetoes["max_daily_loss"]

            fake.balances["USDT"] -= 800.0  # the account loses more than the 500 limit
            assert executor.run_cycle(next_minute(1)) >= 1
            assert len(fake.orders) == placed  # the entry was vetoed
            assert executor.stats.vetoes["max_daily_loss"] > daily_vetoes
            reasons = [r for e in recorder.events("decision_vetoed") for r in e["reasons"]]
            assert any("daily loss" in r and "reached limit 500.00" in r for r in reasons)

            # The exchange stops answering balance reads: the cycle goes on, entries are
            # vetoed as "equity unknown", the failure is counted.
            fake.script("GET", "/api/v3/account", *[("http", 503)] * 30)
            daemon.live.broker._account_changed()  # as a second later: no cached reading
            errors, failures = (executor.stats.broker_read_errors["equity"],
                                len(recorder.events("equity_read_failed")))
            assert executor.run_cycle(next_minute(2)) >= 1
            assert len(fake.orders) == placed
            assert executor.stats.broker_read_errors["equity"] > errors
            assert len(recorder.events("equity_read_failed")) > failures
            reasons = [r for e in recorder.events("decision_vetoed") for r in e["reasons"]]
            assert any("equity unknown" in r for r in reasons)
            executor.stop()
        finally:
            daemon.live.lease.release()
            journal.close()


def test_a_day_whose_first_equity_read_failed_starts_at_its_first_reading(
        tmp_path: Path) -> None:
    """Equity unknown at the day's first bar (broker away) must not leave the day without
    a start: max_daily_loss would veto every entry until the next UTC day."""
    from support.samples import write_sample_head

    from executor.engine.clock import SimulatedClock
    from executor.wiring import build_daemon

    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    journal = Journal.open(url)
    daemon = build_daemon(settings_for(url), journal,
                          data=write_sample_head(tmp_path / "EURUSD_M15.csv", 200))
    ex = daemon.executor
    paper_equity = ex.broker.equity  # type: ignore[attr-defined]
    failing = {"left": 5}

    def equity() -> float:
        if failing["left"]:
            failing["left"] -= 1
            raise TemporaryVenueError("balance endpoint away")
        return float(paper_equity())

    ex.broker.equity = equity  # type: ignore[attr-defined]
    ex.start()  # start-up's reading fails: the day has no start yet
    assert ex.triggers.day_start_equity is None
    clock = SimulatedClock()
    ex.clock = clock
    for _ in range(10):
        t = daemon.feed.next_close_time()
        assert t is not None
        clock.advance_to(t)
        ex.run_cycle(clock.now())
    assert ex.triggers.day_start_equity == pytest.approx(paper_equity())
    assert ex.stats.broker_read_errors["equity"] >= 1
    ex.stop("completed")
    journal.close()
