"""A swap entry's stop-loss and take-profit held by the exchange (the loopback USD-M fake,
through the real ``ccxt.binanceusdm``): placed reduce-only on the algo endpoint under
deterministic ids, never twice, refused when already past, and, once fired, credited to
the entry as its exit; also when it fired while the daemon was down."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from fakes.binance_usdm import FakeBinanceUsdm
from support.builders import a_bar
from test_ccxt_swap_broker import BAR, BTC, intent, make_broker, submitting

from domain import Order, OrderSide, OrderState
from domain.orders import protected_entry, protective_id, protective_intent
from executor.brokers.ccxt_swap import CcxtSwapBroker


@pytest.fixture
def fake() -> Iterator[FakeBinanceUsdm]:
    with FakeBinanceUsdm() as f:
        yield f


@pytest.fixture
def broker(fake: FakeBinanceUsdm) -> CcxtSwapBroker:
    b = make_broker(fake)
    b.configure()
    return b


def a_short(broker: CcxtSwapBroker, *, stop: float = 31_000.0,
            target: float | None = 28_000.0) -> Order:
    i = replace(intent(1, OrderSide.SELL), stop_loss=stop, take_profit=target)
    entry = broker.submit(submitting(i))
    assert entry.state is OrderState.FILLED
    return entry


def legs(entry: Order, generation: int = 0) -> list[Order]:
    """The entry's legs as the engine hands them over: journaled, ``submitting``."""
    kinds = [k for k, t in (("stop_loss", entry.intent.stop_loss),
                            ("take_profit", entry.intent.take_profit)) if t is not None]
    return [Order(protective_intent(entry.intent, k, entry.filled_volume, generation))
            .transition(OrderState.SUBMITTING) for k in kinds]


def protect(broker: CcxtSwapBroker, entry: Order) -> list[Order]:
    return broker.place_protection(legs(entry))


def bar(close: float = 30_000.0) -> object:
    return a_bar(symbol=BTC, timeframe="M15", time=BAR, open=close, high=close, low=close,
                 close=close)


def test_protective_ids_are_the_entry_s_plus_a_kind() -> None:
    sl = protective_id("dta0123456789abcdef01234", "stop_loss")
    assert sl == "dta0123456789abcdef01234sl" and len(sl) <= 36
    assert protected_entry(sl) == ("dta0123456789abcdef01234", "stop_loss", 0)
    again = protective_id("dta0123456789abcdef01234", "take_profit", 3)
    assert again == "dta0123456789abcdef01234tp3" and len(again) <= 36
    assert protected_entry(again) == ("dta0123456789abcdef01234", "take_profit", 3)
    assert protected_entry("dta0123456789abcdef01234") is None


def test_a_short_gets_its_stop_and_target_at_the_exchange(fake: FakeBinanceUsdm,
                                                          broker: CcxtSwapBroker) -> None:
    entry = a_short(broker)
    placed = protect(broker, entry)
    coid = entry.client_order_id
    assert [(o.protective_kind, o.state, o.client_order_id) for o in placed] == [
        ("stop_loss", OrderState.ACCEPTED, coid + "sl"),
        ("take_profit", OrderState.ACCEPTED, coid + "tp")]
    algo = {a["clientAlgoId"]: a for a in fake.algo_orders}
    assert algo[coid + "sl"]["orderType"] == "STOP_MARKET"
    assert algo[coid + "tp"]["orderType"] == "TAKE_PROFIT_MARKET"
    for a in algo.values():
        assert (a["side"], a["quantity"], a["reduceOnly"], a["workingType"]) == (
            "BUY", "0.010", True, "MARK_PRICE")
    assert ("POST", "/fapi/v1/order") not in fake.requests[-2:]  # the algo endpoint only


def test_placing_again_never_makes_a_second_stop(fake: FakeBinanceUsdm,
                                                 broker: CcxtSwapBroker) -> None:
    entry = a_short(broker)
    first = protect(broker, entry)
    again = protect(broker, entry)  # a re-run after a crash: -4116, found by its id
    assert [o.state for o in again] == [OrderState.ACCEPTED] * 2
    assert [o.broker_order_id for o in again] == [o.broker_order_id for o in first]
    assert len([a for a in fake.algo_orders if a["algoStatus"] == "NEW"]) == 2


def test_a_stop_already_past_is_refused(fake: FakeBinanceUsdm,
                                        broker: CcxtSwapBroker) -> None:
    entry = a_short(broker, stop=29_500.0, target=None)  # a short's stop below the price
    [leg] = protect(broker, entry)
    assert leg.state is OrderState.REJECTED and "-2021" in leg.reason
    assert leg.reason.startswith("would trigger immediately")
    assert fake.algo_orders == []


def test_the_stop_fires_and_is_credited_to_the_entry(fake: FakeBinanceUsdm,
                                                     broker: CcxtSwapBroker) -> None:
    entry = a_short(broker)
    placed = protect(broker, entry)
    assert [f.kind for f in broker.on_bar(bar())] == ["entry"]
    fake.set_price("BTCUSDT", 31_100.0, mark=31_050.0)
    [exit_fill] = broker.on_bar(bar(31_100.0))
    assert (exit_fill.kind, exit_fill.fill.client_order_id, exit_fill.fill.side) == (
        "stop_loss", entry.client_order_id, OrderSide.BUY)
    assert (exit_fill.fill.volume, exit_fill.fill.price) == (0.01, 31_100.0)
    assert broker.position(BTC).is_flat
    assert broker.lookup(placed[0].client_order_id).state is OrderState.FILLED
    # The target is still held by the exchange: cancelled, once; the stop is reported
    # as it is (it fired), never cancelled.
    first = broker.cancel_protection(placed)
    assert [o.state for o in first] == [OrderState.FILLED, OrderState.CANCELLED]
    assert [o.state for o in broker.cancel_protection(placed[1:])] == [OrderState.CANCELLED]
    assert {a["algoStatus"] for a in fake.algo_orders} == {"FINISHED", "CANCELED"}


def test_a_stop_that_fired_while_down_is_found_after_a_restart(
        fake: FakeBinanceUsdm, broker: CcxtSwapBroker) -> None:
    entry = a_short(broker)
    placed = protect(broker, entry)
    fake.set_price("BTCUSDT", 31_200.0)  # the daemon is down
    restarted = make_broker(fake)
    restarted.configure()
    restarted.restore([entry, *placed], [], [])
    fills = restarted.on_bar(bar(31_200.0))
    assert [(f.kind, f.fill.client_order_id) for f in fills] == [
        ("entry", entry.client_order_id), ("stop_loss", entry.client_order_id)]
    assert restarted.protection.legs[entry.client_order_id + "sl"].status == "filled"


def later(minutes: int, close: float = 30_000.0) -> object:
    return a_bar(symbol=BTC, timeframe="M15", time=BAR + timedelta(minutes=minutes),
                 open=close, high=close, low=close, close=close)


def algo_lookups(fake: FakeBinanceUsdm) -> int:
    return sum(1 for r in fake.requests if r == ("GET", "/fapi/v1/algoOrder"))


def test_legs_the_exchange_never_saw_are_looked_up_once(fake: FakeBinanceUsdm,
                                                        broker: CcxtSwapBroker) -> None:
    """A journaled entry whose legs were never placed (the exchange answers -2013 for its
    ids, as the algo-order query does for an unknown clientAlgoId): looked up once after a
    restart, not on every bar for as long as the daemon runs."""
    entry = a_short(broker)  # filled; its legs journaled, never placed (a crash)
    restarted = make_broker(fake)
    restarted.configure()
    restarted.restore([entry, *legs(entry)], [], [])
    restarted.on_bar(later(15))
    first = algo_lookups(fake)
    assert first == 2  # its stop and its target, once each
    restarted.on_bar(later(30))
    restarted.on_bar(later(45))
    assert algo_lookups(fake) == first
    assert {leg.status for leg in restarted.protection.legs.values()} == {"absent"}


def test_a_failing_leg_lookup_does_not_stop_the_fill_poll(fake: FakeBinanceUsdm,
                                                          broker: CcxtSwapBroker) -> None:
    """The legs' lookups keep failing (Binance's -1000 "An unknown error occurred while
    processing the request." with HTTP 500, past the reader's retries): those legs are
    skipped for this bar, and the bar's fills are still read."""
    entry = a_short(broker)
    protect(broker, entry)
    fake.script("GET", "/fapi/v1/algoOrder", *[("reject", -1000, "An unknown error occurred "
                                                "while processing the request.", 500)] * 20)
    assert [f.kind for f in broker.on_bar(later(15))] == ["entry"]
