"""The engine's protective exits on a perpetual swap, through the real daemon and the real
``ccxt.binanceusdm`` against the loopback USD-M fake (tests/fakes/binance_usdm), from what
Binance documents rather than from our code:

- conditional orders are refused with -2021 "Order would immediately trigger." when the
  price is already past the trigger ("New Algo Order"): the position then stands without
  its stop, so the daemon closes it at once and opens an incident;
- a conditional order stays NEW after its position is closed another way (Binance does
  not cancel it; the fake keeps it), so the daemon must cancel it;
- a request whose connection drops may or may not have been placed ("HTTP Return
  Codes": "the execution status is UNKNOWN"), so a leg whose answer is lost is only
  looked up, and placed again (as the next generation) only once provably never placed;
- after a restart every open position has exactly one stop and at most one target at the
  exchange: missing ones placed, extra ones cancelled; a stop that fired while the daemon
  was down is journaled as the position's exit.

Orders are scripted through the daemon's decider (the path after the guardrails) on the
conformance suite's swap venue model; the strategy proposes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.venue_swap import CcxtSwap
from test_venue_conformance import Quiet

from domain import Order, OrderSide, OrderState
from domain.orders import protective_intent
from strategies.registry import STRATEGIES

SID = "BTCUSDT"


class Swap(CcxtSwap):
    """The swap venue model with a resolver that declares a lost send at once (the
    suite cannot wait out Binance's recvWindow)."""

    def _settings(self) -> Any:
        s = super()._settings()
        resolver = s.broker.resolver.model_copy(update={"grace_lookups": 1,
                                                         "grace_seconds": 0.0})
        return s.model_copy(update={"broker": s.broker.model_copy(
            update={"resolver": resolver})})


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Swap]:
    STRATEGIES[Quiet.name] = Quiet
    v = Swap(tmp_path, Quiet.name)
    try:
        v.start()
        yield v
    finally:
        v.close()
        STRATEGIES.pop(Quiet.name, None)


def price(v: Swap) -> float:
    return float(v.fake.symbols[SID]["price"])


def stops(v: Swap, side: OrderSide) -> tuple[float, float]:
    sign = 1 if side is OrderSide.BUY else -1
    return round(price(v) * (1 - sign * 0.01), 1), round(price(v) * (1 + sign * 0.01), 1)


def working_legs(v: Swap) -> list[tuple[str, str, str]]:
    """(client id, type, side) of every conditional order the exchange holds."""
    return sorted((a["clientAlgoId"], a["orderType"], a["side"]) for a in v.fake.algo_orders
                  if a["algoStatus"] == "NEW")


def entry_of(v: Swap) -> Any:
    return [o for o in v.journal.orders.all(v.account)
            if o.protective_kind is None and not o.intent.reduce_only][-1]


def test_a_leg_the_exchange_refuses_closes_the_position_with_an_incident(venue: Swap) -> None:
    venue.fake.script("POST", "/fapi/v1/algoOrder",
                      ("reject", -2021, "Order would immediately trigger."))
    venue.send(OrderSide.SELL, 2, stops=stops(venue, OrderSide.SELL))
    entry = entry_of(venue)
    assert venue.venue_position() == 0, "the short was closed at once"
    close = [o for o in venue.fake.orders if o["side"] == "BUY"]
    assert len(close) == 1 and close[0]["reduceOnly"] is True
    assert working_legs(venue) == [], "nothing left behind: the target was cancelled"
    [incident] = venue.journal.incidents.all("open")
    assert incident.kind == "protective_order_failed"
    assert entry.client_order_id in incident.message and "-2021" in incident.message
    venue.restart()  # a re-run never closes twice nor opens a second incident
    assert len([o for o in venue.fake.orders if o["side"] == "BUY"]) == 1
    assert len(venue.journal.incidents.all("open")) == 1


def test_the_legs_go_when_the_position_closes_another_way(venue: Swap) -> None:
    venue.send(OrderSide.BUY, 2, stops=stops(venue, OrderSide.BUY))
    assert len(working_legs(venue)) == 2
    venue.send(OrderSide.SELL, 2)  # closed by an exit order, not by a leg
    assert venue.venue_position() == 0
    assert working_legs(venue) == []
    states = {o.protective_kind: o.state for o in venue.journal.orders.all(venue.account)
              if o.protective_kind}
    assert states == {"stop_loss": OrderState.CANCELLED, "take_profit": OrderState.CANCELLED}


def test_a_restart_places_the_legs_an_entry_never_got(venue: Swap) -> None:
    """The daemon dies after the entry filled and before its legs were journaled: the
    next start places them (one stop, one target), once."""
    venue.executor.decider.protection = None  # this life dies before the legs
    venue.send(OrderSide.SELL, 2, stops=stops(venue, OrderSide.SELL), die_before_poll=True)
    coid = entry_of(venue).client_order_id
    assert working_legs(venue) == [(coid + "sl", "STOP_MARKET", "BUY"),
                                   (coid + "tp", "TAKE_PROFIT_MARKET", "BUY")]
    venue.restart()
    assert len(working_legs(venue)) == 2


def test_a_leg_whose_send_was_lost_is_placed_again_once_provably_absent(venue: Swap) -> None:
    """The stop's request never reached the exchange (connection dropped, "UNKNOWN"
    execution status): it is not sent again under its id; once the resolver has declared
    it lost (not at the exchange after the grace), the next generation goes out."""
    venue.fake.script("POST", "/fapi/v1/algoOrder", ("drop",))
    venue.send(OrderSide.BUY, 2, stops=stops(venue, OrderSide.BUY))
    coid = entry_of(venue).client_order_id
    legs = {o.client_order_id: o for o in venue.journal.orders.all(venue.account)
            if o.protective_kind}
    assert legs[coid + "sl"].state is OrderState.REJECTED
    assert legs[coid + "sl"].reason.startswith("lost:")
    assert [c for c, *_ in working_legs(venue)] == [coid + "sl1", coid + "tp"]
    assert len(venue.fake.algo_by_client_id(coid + "sl")) == 0


def test_extra_legs_at_the_exchange_are_cancelled_at_restart(venue: Swap) -> None:
    """A second stop for the position (another life placed it and its journal row was
    lost with the disk): never two stops for one position."""
    venue.send(OrderSide.SELL, 2, stops=stops(venue, OrderSide.SELL))
    entry = entry_of(venue)
    extra = protective_intent(entry.intent, "stop_loss", entry.filled_volume, 2)
    venue.executor.broker.place_protection(
        [Order(extra).transition(OrderState.SUBMITTING)])
    assert len(working_legs(venue)) == 3
    venue.restart()
    coid = entry.client_order_id
    assert [c for c, *_ in working_legs(venue)] == [coid + "sl", coid + "tp"]


def test_a_stop_that_fired_while_down_is_the_exit_after_restart(venue: Swap) -> None:
    venue.send(OrderSide.BUY, 2, stops=stops(venue, OrderSide.BUY))
    entry = entry_of(venue)
    venue.die()  # the daemon is down
    through = entry.intent.stop_loss - 10
    venue.fake.set_price(SID, through, mark=through)
    assert venue.venue_position() == 0
    venue.start()
    assert_stop_journaled(venue, entry)
    assert working_legs(venue) == [], "the target was cancelled"


def test_a_partial_close_leaves_the_rest_protected_at_its_size(venue: Swap) -> None:
    """An exit of part of the position: the legs come off before it goes out (on spot an
    OCO locks the coins the sell needs) and the rest gets its stop and target again, for
    what is left: never a moment with two stops, never a leg larger than the position."""
    venue.send(OrderSide.BUY, 3, stops=stops(venue, OrderSide.BUY))
    coid = entry_of(venue).client_order_id
    venue.send(OrderSide.SELL, 1)
    assert venue.venue_position() == pytest.approx(0.02)
    held = {a["clientAlgoId"]: a["quantity"] for a in venue.fake.algo_orders
            if a["algoStatus"] == "NEW"}
    assert held == {coid + "sl1": "0.020", coid + "tp1": "0.020"}
    cancelled = {a["clientAlgoId"] for a in venue.fake.algo_orders
                 if a["algoStatus"] == "CANCELED"}
    assert cancelled == {coid + "sl", coid + "tp"}


def assert_stop_journaled(v: Swap, entry: Order) -> None:
    """The long's stop is its entry's exit in the journal, and trading goes on (the
    journal's position is the exchange's)."""
    fills = [(f.kind, f.side) for f in v.journal.orders.fills(entry.client_order_id)]
    assert fills == [("entry", "buy"), ("stop_loss", "sell")]
    assert v.journal.trading_state.trading_state(fresh=True).state != "halted"


def test_a_stop_that_fired_after_the_poll_is_the_exit_after_restart(venue: Swap) -> None:
    """The stop fires between the bar's fill poll and ``after_bar``: the engine, seeing
    the position gone, cancels the legs and finds the stop fired (journaled filled); the
    daemon dies before the next poll. After the restart the stop's trade must still be
    the entry's exit, and the journal's position the exchange's (crash-safety soak,
    swap variant: within a few kills)."""
    venue.send(OrderSide.BUY, 2, stops=stops(venue, OrderSide.BUY))
    entry = entry_of(venue)
    broker = venue.executor.broker
    poll = broker.on_bar
    through = entry.intent.stop_loss - 10

    def poll_then_fire(bar: Any) -> Any:
        fills = poll(bar)
        venue.fake.set_price(SID, through, mark=through)  # just after the poll
        return fills

    broker.on_bar = poll_then_fire
    time.sleep(1.05)  # a bar later: the broker's 1 s position cache has expired
    venue._bar()
    legs = {o.protective_kind: o.state for o in venue.journal.orders.all(venue.account)
            if o.protective_kind}
    assert legs == {"stop_loss": OrderState.FILLED, "take_profit": OrderState.CANCELLED}
    venue.die()  # before the next bar's poll
    venue.start()
    assert_stop_journaled(venue, entry)


def test_a_stop_that_fired_while_down_after_an_earlier_exit_is_journaled(
        venue: Swap) -> None:
    """As the test above, with an earlier position's target already fired and journaled
    (any exit within the 7 days start-up reconciliation reads)."""
    venue.protected(OrderSide.SELL, 2, "tp")  # fired at the exchange, journaled
    venue.send(OrderSide.BUY, 2, stops=stops(venue, OrderSide.BUY))
    entry = entry_of(venue)
    venue.die()
    through = entry.intent.stop_loss - 10
    venue.fake.set_price(SID, through, mark=through)
    venue.start()
    assert_stop_journaled(venue, entry)
