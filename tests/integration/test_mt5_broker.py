"""MT5 broker through the real rpyc bridge and client against the fake MetaTrader5 module:
order requests, retcode mapping, requotes, partial fills, EA isolation, and the faults that
must end with exactly one order (accept then time out, dropped bridge)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import mt5_fake as M
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge
from support.builders import a_bar, an_intent, an_order

from domain import (
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from executor.brokers.config import ResolverSettings
from executor.brokers.mt5 import Mt5Broker, choose_filling, comment_token, round_volume
from executor.brokers.mt5_client import Mt5Client
from executor.engine.resolver import OrderResolver
from executor.engine.router import OrderRouter
from executor.journal.store import Journal

BAR = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
MAGIC = 770_001


def intent(n: int = 1, *, side: OrderSide = OrderSide.BUY, volume: float = 0.1,
           order_type: OrderType = OrderType.MARKET, price: float | None = None,
           sl: float | None = 1.09, tp: float | None = 1.12,
           reduce_only: bool = False) -> OrderIntent:
    coid = client_order_id("mt5-acct", "EURUSD", BAR + timedelta(minutes=15 * n), f"i{n}")
    return an_intent(client_order_id=coid, account="mt5-acct", symbol="EURUSD", side=side,
                     volume=volume, order_type=order_type, bar_time=BAR, price=price, stop_loss=sl,
                     take_profit=tp, reduce_only=reduce_only)


def submitting(i: OrderIntent) -> Order:
    return an_order(intent=i).transition(OrderState.SUBMITTING)


class Env:
    def __init__(self, **settings: Any) -> None:
        self.fake = FakeMetaTrader5()
        self.bridge = start_bridge(self.fake)
        self.settings = client_settings(self.fake, self.bridge.port, **settings)
        self.client = Mt5Client(self.settings, password=self.fake.account_password,
                                bridge_secret=SECRET)
        self.broker = Mt5Broker(self.client, self.settings)

    def close(self) -> None:
        self.client.close()
        self.bridge.close()

    def sends(self) -> int:
        return self.fake.calls.count("order_send")


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()


@pytest.fixture
def journal(sqlite_url: str) -> Iterator[Journal]:
    j = Journal.open(sqlite_url)
    yield j
    j.close()


# --------------------------------------------------------------------------- requests


def test_market_order_request_carries_magic_token_stops_filling_and_deviation(env: Env) -> None:
    i = intent(volume=0.1234)
    result = env.broker.submit(submitting(i))
    assert result.state is OrderState.FILLED
    assert result.filled_volume == pytest.approx(0.12)
    assert result.broker_order_id is not None
    req = env.fake.sent_requests[-1]
    assert req["action"] == M.TRADE_ACTION_DEAL and req["type"] == M.ORDER_TYPE_BUY
    assert req["magic"] == MAGIC and req["comment"] == i.client_order_id
    assert len(req["comment"]) <= 31
    assert req["volume"] == 0.12 and req["sl"] == 1.09 and req["tp"] == 1.12
    assert req["deviation"] == 20 and req["type_filling"] == M.ORDER_FILLING_FOK
    assert req["price"] == env.fake.ticks["EURUSD"][1]  # the ask, from a fresh tick
    pos = env.broker.positions()["EURUSD"]
    assert pos.volume == pytest.approx(0.12) and pos.opened_by == i.client_order_id


@pytest.mark.parametrize(("mask", "expected"), [
    (M.SYMBOL_FILLING_FOK | M.SYMBOL_FILLING_IOC, M.ORDER_FILLING_FOK),
    (M.SYMBOL_FILLING_IOC, M.ORDER_FILLING_IOC),
    (M.SYMBOL_FILLING_FOK, M.ORDER_FILLING_FOK),
    (0, M.ORDER_FILLING_RETURN),
])
def test_filling_mode_follows_the_symbol_bitmask(mask: int, expected: int) -> None:
    assert choose_filling(mask, ("fok", "ioc", "return")) == expected


def test_ioc_only_symbol_gets_an_ioc_order(env: Env) -> None:
    env.fake.add_symbol("GBPUSD", filling_mode=M.SYMBOL_FILLING_IOC, bid=1.25)
    i = intent()
    i = an_intent(client_order_id=i.client_order_id, account=i.account, symbol="GBPUSD",
                  side=i.side, volume=0.1, order_type=i.order_type, bar_time=i.bar_time)
    assert env.broker.submit(submitting(i)).state is OrderState.FILLED
    assert env.fake.sent_requests[-1]["type_filling"] == M.ORDER_FILLING_IOC


def test_volume_is_floored_to_step_capped_at_max_and_never_rounded_up_to_min(env: Env) -> None:
    info = {"volume_step": 0.01, "volume_min": 0.01, "volume_max": 50.0}
    assert round_volume(0.129999, info) == (0.12, "")
    assert round_volume(80.0, info)[0] == 50.0
    assert round_volume(0.005, info)[0] is None
    result = env.broker.submit(submitting(intent(volume=0.004)))
    assert result.state is OrderState.REJECTED and "below the symbol minimum" in result.reason
    assert env.sends() == 0  # nothing was sent


def test_comment_token_fits_mt5s_31_characters() -> None:
    coid = intent().client_order_id
    assert comment_token(coid, "dta:") == "dta:" + coid and len(coid) + 4 <= 31
    with pytest.raises(ValueError):
        comment_token("x" * 30, "pre:")


# --------------------------------------------------------------------------- retcodes


@pytest.mark.parametrize(("retcode", "state", "words"), [
    (M.TRADE_RETCODE_MARKET_CLOSED, OrderState.REJECTED, "market is closed"),
    (M.TRADE_RETCODE_NO_MONEY, OrderState.REJECTED, "not enough money"),
    (M.TRADE_RETCODE_INVALID_STOPS, OrderState.REJECTED, "invalid stops"),
    (M.TRADE_RETCODE_CLIENT_DISABLES_AT, OrderState.REJECTED, "Algo Trading"),
    (M.TRADE_RETCODE_INVALID_VOLUME, OrderState.REJECTED, "invalid volume"),
    (M.TRADE_RETCODE_TIMEOUT, OrderState.UNKNOWN, "outcome unknown"),
    (M.TRADE_RETCODE_CONNECTION, OrderState.UNKNOWN, "outcome unknown"),
    (99999, OrderState.UNKNOWN, "unexpected retcode"),
])
def test_retcodes_map_to_clear_states(env: Env, retcode: int, state: OrderState,
                                      words: str) -> None:
    env.fake.script_order_send(("reject", retcode))
    result = env.broker.submit(submitting(intent()))
    assert result.state is state
    assert words in result.reason and str(retcode) in result.reason
    assert env.sends() == 1


def test_real_server_side_rejections(env: Env) -> None:
    env.fake.market_closed.add("EURUSD")
    assert "market is closed" in env.broker.submit(submitting(intent(1))).reason
    env.fake.market_closed.clear()
    env.fake.trade_allowed = False
    assert "Algo Trading" in env.broker.submit(submitting(intent(2))).reason
    env.fake.trade_allowed = True
    r = env.broker.submit(submitting(intent(3, sl=1.10008)))  # inside the stops level
    assert r.state is OrderState.REJECTED and "invalid stops" in r.reason
    r = env.broker.submit(submitting(intent(4, volume=40.0)))  # 4M EUR on 10k at 1:100
    assert r.state is OrderState.REJECTED and "not enough money" in r.reason
    assert env.broker.positions() == {}


def test_requote_is_retried_with_a_fresh_tick(env: Env) -> None:
    env.fake.script_order_send(("requote",), ("price_off",))
    result = env.broker.submit(submitting(intent()))
    assert result.state is OrderState.FILLED
    prices = [r["price"] for r in env.fake.sent_requests]
    assert len(prices) == 3 and prices[0] < prices[1]  # the requote moved the market
    assert len(env.fake.orders_with_comment(intent().client_order_id)) == 1


def test_a_slow_but_timely_answer_is_just_an_answer(env: Env) -> None:
    env.fake.script_order_send(("delay", 0.2))
    assert env.broker.submit(submitting(intent())).state is OrderState.FILLED


def test_a_terminal_down_at_poll_time_does_not_stop_the_cycle(env: Env) -> None:
    env.broker.submit(submitting(intent()))
    env.bridge.close()  # the bridge is gone for good
    bar = a_bar(symbol="EURUSD", timeframe="M15", time=BAR, open=1.1, high=1.1, low=1.1, close=1.1)
    quick = Mt5Broker(Mt5Client(env.settings.model_copy(update={"reconnect_attempts": 1}),
                                bridge_secret=SECRET), env.settings)
    assert quick.on_bar(bar) == []


def test_requotes_beyond_the_bound_reject() -> None:
    e = Env(requote_retries=2)
    try:
        e.fake.script_order_send(("requote",), ("requote",), ("requote",), ("requote",))
        result = e.broker.submit(submitting(intent()))
        assert result.state is OrderState.REJECTED and "retries exhausted" in result.reason
        assert e.sends() == 3 and e.broker.positions() == {}
    finally:
        e.close()


def ioc_only(env: Env) -> None:
    """EURUSD accepts IOC only (SYMBOL_FILLING_IOC): a partial fill is possible."""
    env.fake.symbols["EURUSD"]["filling_mode"] = M.SYMBOL_FILLING_IOC


def test_partial_fill(env: Env) -> None:
    ioc_only(env)
    i = intent(volume=0.1)
    env.fake.script_order_send(("partial", 0.6))
    result = env.broker.submit(submitting(i))
    assert result.state is OrderState.PARTIALLY_FILLED
    assert result.filled_volume == pytest.approx(0.06)
    seen = env.broker.lookup(i.client_order_id)
    assert seen is not None and seen.state is OrderState.CANCELLED  # IOC remainder
    assert seen.filled_volume == pytest.approx(0.06) and "remainder" in seen.reason
    assert result.transition(seen.state).state is OrderState.CANCELLED


def test_fok_with_too_little_liquidity_is_not_executed(env: Env) -> None:
    env.fake.script_order_send(("partial", 0.6))
    result = env.broker.submit(submitting(intent(volume=0.1)))
    assert result.state is OrderState.REJECTED and env.broker.positions() == {}


def test_ioc_partial_fill_is_settled_by_the_per_cycle_resolver(env: Env,
                                                               journal: Journal) -> None:
    """DONE_PARTIAL on an IOC market order: the remainder is cancelled at the broker, so
    the resolver the daemon runs before every cycle settles the order (issue 15, defect 8)
    and it stops counting as working."""
    ioc_only(env)
    router = OrderRouter(journal, env.broker)
    i = intent(volume=0.1)
    env.fake.script_order_send(("partial", 0.6))
    sent = router.submit(i)
    assert sent.state is OrderState.PARTIALLY_FILLED
    assert i.client_order_id in router.tracker.working
    resolver = OrderResolver(journal, env.broker, ResolverSettings())
    resolver.resolve_pending("mt5-acct")  # what `dta run` hooks before each cycle
    router.tracker.refresh()  # what the daemon does on each bar
    settled = journal.orders.get_order(i.client_order_id)
    assert settled is not None and settled.state is OrderState.CANCELLED
    assert settled.filled_volume == pytest.approx(0.06) and "remainder" in settled.reason
    assert router.tracker.working == {} and router.tracker.working_exposure() == {}
    assert env.sends() == 1


def test_pending_orders_and_lookup_across_orders_and_history(env: Env) -> None:
    i = intent(order_type=OrderType.LIMIT, price=1.0950, sl=1.09, tp=1.11)
    result = env.broker.submit(submitting(i))
    assert result.state is OrderState.ACCEPTED
    req = env.fake.sent_requests[-1]
    assert req["action"] == M.TRADE_ACTION_PENDING and req["type"] == M.ORDER_TYPE_BUY_LIMIT
    assert env.broker.lookup(i.client_order_id).state is OrderState.ACCEPTED  # type: ignore[union-attr]
    [working] = env.broker.open_orders()
    assert working.client_order_id == i.client_order_id and working.ours
    env.fake.fill_pending(int(result.broker_order_id or 0))
    seen = env.broker.lookup(i.client_order_id)
    assert seen is not None and seen.state is OrderState.FILLED
    assert seen.avg_fill_price == pytest.approx(1.0950)
    assert env.broker.lookup("dta-never-sent") is None


# --------------------------------------------------------------------------- EA isolation


def test_ea_trades_are_readable_but_never_ours(env: Env) -> None:
    ea_pos = env.fake.add_ea_position("EURUSD", M.ORDER_TYPE_SELL, 0.5)
    env.fake.add_ea_order("EURUSD", M.ORDER_TYPE_BUY_LIMIT, 0.3, 1.08)
    buy = intent(1)
    env.broker.submit(submitting(buy))
    assert env.broker.positions()["EURUSD"].volume == pytest.approx(0.1)  # not -0.4
    assert [p["magic"] for p in env.broker.foreign_positions()] == [424242]
    assert env.broker.foreign_net_positions()["EURUSD"].volume == pytest.approx(-0.5)
    assert [o["magic"] for o in env.broker.foreign_orders()] == [424242]
    assert [o.ours for o in env.broker.open_orders()] == [False]
    # Closing ours (reduce_only) picks our ticket, never the EA's short.
    close = intent(2, side=OrderSide.SELL, sl=None, tp=None, reduce_only=True)
    assert env.broker.submit(submitting(close)).state is OrderState.FILLED
    assert env.broker.positions() == {}
    assert env.fake.positions[ea_pos].volume == 0.5
    assert [f.fill.client_order_id for f in env.broker.recent_fills(BAR)] == [
        buy.client_order_id, close.client_order_id]


def test_recent_fills_attribute_protective_exits_to_the_opening_order(env: Env) -> None:
    i = intent()
    result = env.broker.submit(submitting(i))
    deal = env.fake.hit_protection(int(result.broker_order_id or 0), "sl")
    fills = env.broker.recent_fills(datetime.now(UTC) - timedelta(hours=1))
    assert [(f.kind, f.fill.client_order_id) for f in fills] == [
        ("entry", i.client_order_id), ("stop_loss", i.client_order_id)]
    exit_fill = fills[-1]
    assert exit_fill.fill.fill_id == f"mt5:{deal}" and exit_fill.fill.side is OrderSide.SELL
    assert exit_fill.realized_pnl == pytest.approx((1.09 - 1.1001) * 0.1 * 100_000)
    # Server time (UTC+2 in the fake) came back as UTC.
    assert abs((exit_fill.fill.time - datetime.now(UTC)).total_seconds()) < 5


def test_on_bar_reports_each_fill_once_across_restarts(env: Env) -> None:
    bar = a_bar(symbol="EURUSD", timeframe="M15", time=BAR, open=1.1, high=1.1, low=1.1, close=1.1)
    env.broker.submit(submitting(intent()))
    first = env.broker.on_bar(bar)
    assert [f.kind for f in first] == ["entry"]
    assert env.broker.on_bar(bar) == []
    restarted = Mt5Broker(env.client, env.settings)
    restarted.restore([], [f.fill for f in first], ["entry"])
    assert restarted.on_bar(bar) == []


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("step", [
    ("accept_then_retcode", M.TRADE_RETCODE_TIMEOUT),
    ("accept_then_none", M.RES_E_INTERNAL_FAIL_TIMEOUT),
])
def test_accepted_then_timed_out_ends_with_exactly_one_order(env: Env, journal: Journal,
                                                            step: tuple[Any, ...]) -> None:
    router = OrderRouter(journal, env.broker)
    i = intent()
    env.fake.script_order_send(step)
    first = router.submit(i)
    assert first.state is OrderState.UNKNOWN
    again = router.submit(i)  # the same cycle re-run: resolved by lookup, not re-sent
    assert again.state is OrderState.FILLED and again.filled_volume == pytest.approx(0.1)
    assert env.sends() == 1
    assert len(env.fake.orders_with_comment(i.client_order_id)) == 1
    assert journal.orders.get_order(i.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]


def test_answer_later_than_the_call_timeout_is_unknown_then_resolved(journal: Journal) -> None:
    e = Env(call_timeout_seconds=0.4)
    try:
        router = OrderRouter(journal, e.broker)
        i = intent()
        e.fake.script_order_send(("accept_then_sleep", 0.8))
        assert router.submit(i).state is OrderState.UNKNOWN
        resolver = OrderResolver(journal, e.broker, ResolverSettings(backoff_seconds=0.1))
        assert resolver.settle("mt5-acct", max_seconds=5) == []
        assert journal.orders.get_order(i.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]
        assert e.sends() == 1 and len(e.fake.orders_with_comment(i.client_order_id)) == 1
    finally:
        e.close()


def test_bridge_dropped_mid_order_is_reconnected_and_resolved(env: Env,
                                                              journal: Journal) -> None:
    router = OrderRouter(journal, env.broker)
    i = intent()
    env.fake.script_order_send(("accept_then", env.bridge.drop_connections))
    first = router.submit(i)
    assert first.state is OrderState.UNKNOWN and "connection lost" in first.reason
    assert router.tracker.resolve(first).state is OrderState.FILLED  # lookup reconnected
    assert env.client.reconnects == 2
    assert env.sends() == 1 and len(env.fake.orders_with_comment(i.client_order_id)) == 1


def test_never_executed_is_declared_lost_after_the_grace_and_never_resent(
        env: Env, journal: Journal) -> None:
    router = OrderRouter(journal, env.broker)
    i = intent()
    env.fake.script_order_send(("none", M.RES_E_INTERNAL_FAIL_CONNECT))
    assert router.submit(i).state is OrderState.UNKNOWN
    resolver = OrderResolver(journal, env.broker,
                             ResolverSettings(grace_lookups=3, grace_seconds=0.0,
                                              backoff_seconds=0.01))
    assert resolver.settle("mt5-acct", max_seconds=5) == []
    lost = journal.orders.get_order(i.client_order_id)
    assert lost is not None and lost.state is OrderState.REJECTED
    assert lost.reason.startswith("lost:") and "never re-sent" in lost.reason
    assert env.sends() == 1 and env.fake.orders_with_comment(i.client_order_id) == []
    assert router.submit(i).state is OrderState.REJECTED  # a re-run does not send either
    assert env.sends() == 1
