"""The engine's protective exits on a spot account, through the real daemon and the real
``ccxt.binance`` against the loopback spot fake, from what Binance documents:

- a spot long's exits are one sell OCO ("New Order list - OCO"), placed as soon as the
  entry's answer says it filled: the entry's FULL answer carries its fills, so the
  position the legs are sized from is known at once, not a bar later;
- an OCO whose prices the market already passed is refused (-2010 "The relationship of
  the prices for the orders is not correct."): the long stands without its stop, so the
  daemon closes it at once and opens an incident;
- a request whose connection drops may or may not have been placed ("HTTP Return
  Codes"): the legs are only looked up, and placed again (the next generation, a new list)
  once provably never placed;
- when one leg executes Binance expires the other; a stop that fired while the daemon was
  down is journaled as the long's exit at the next start, and a restart places no second
  OCO;
- while the OCO works it locks the BTC ("Account information": ``locked``): a market sell
  of the long is refused for the balance until the OCO is cancelled, so an exit order
  goes out after its legs are cancelled.

Orders are scripted through the daemon's decider (the path after the guardrails) on the
conformance suite's spot venue model; the strategy proposes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.venues import CcxtSpot, lost_at_once
from test_venue_conformance import quiet  # noqa: F401 (a fixture: Quiet registered)

from domain import OrderSide, OrderState

SID = "BTCUSDT"


class Spot(CcxtSpot):
    def _settings(self) -> Any:
        return lost_at_once(super()._settings())


@pytest.fixture
def venue(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Spot]:
    v = Spot(tmp_path, request.getfixturevalue("quiet"))  # the strategy proposes nothing
    try:
        v.start()
        yield v
    finally:
        v.close()


def price(v: Spot) -> float:
    return float(v.fake.symbols[SID]["price"])


def stops(v: Spot, stop: float = 0.99, target: float = 1.01) -> tuple[float, float]:
    return round(price(v) * stop, 2), round(price(v) * target, 2)


def entry_of(v: Spot) -> Any:
    return [o for o in v.journal.orders.all(v.account)
            if o.protective_kind is None and not o.intent.reduce_only][-1]


def legs(v: Spot) -> dict[str, OrderState]:
    return {o.client_order_id: o.state for o in v.journal.orders.all(v.account)
            if o.protective_kind}


def open_lists(v: Spot) -> list[str]:
    return [x["listClientOrderId"] for x in v.fake.order_lists
            if x["listOrderStatus"] == "EXECUTING"]


def test_the_oco_goes_out_with_the_entry_s_answer(venue: Spot) -> None:
    now = venue._now()
    venue.executor.decider.submit(venue._intent(OrderSide.BUY, 2, now, stops(venue)), now)
    coid = entry_of(venue).client_order_id
    assert open_lists(venue) == [coid + "sloco"], "placed before any bar"
    [sl] = venue.fake.orders_by_client_id(coid + "sl")
    held = venue.fake.balances["BTC"]  # 0.002 bought, 0.1 % of it paid as commission
    assert float(sl["origQty"]) == pytest.approx(held, abs=1e-5) and sl["origQty"] <= str(held)
    assert legs(venue) == {coid + "sl": OrderState.ACCEPTED, coid + "tp": OrderState.ACCEPTED}


def test_an_oco_the_price_passed_closes_the_long_with_an_incident(venue: Spot) -> None:
    venue.send(OrderSide.BUY, 2, stops=stops(venue, stop=1.002))  # the stop above the price
    entry = entry_of(venue)
    assert venue.fake.balances["BTC"] < 1e-5, "the long was sold at once (dust aside)"
    assert open_lists(venue) == []
    assert set(legs(venue).values()) == {OrderState.REJECTED}
    [incident] = venue.journal.incidents.all("open")
    assert incident.kind == "protective_order_failed"
    assert entry.client_order_id in incident.message
    assert "relationship of the prices" in incident.message


def test_a_lost_oco_is_placed_again_as_the_next_generation(venue: Spot) -> None:
    venue.fake.script("POST", "/api/v3/orderList/oco", ("drop",))
    venue.send(OrderSide.BUY, 2, stops=stops(venue))
    coid = entry_of(venue).client_order_id
    assert legs(venue)[coid + "sl"] is OrderState.REJECTED  # declared lost: never placed
    assert open_lists(venue) == [coid + "sl1oco"]
    assert legs(venue)[coid + "sl1"] is legs(venue)[coid + "tp1"] is OrderState.ACCEPTED


def test_the_stop_fires_the_exit_is_journaled_and_the_target_expires(venue: Spot) -> None:
    venue.send(OrderSide.BUY, 2, stops=stops(venue))
    entry = entry_of(venue)
    venue.fake.set_price(SID, entry.intent.stop_loss - 10)
    venue._bar()
    kinds = [f.kind for f in venue.journal.orders.fills(entry.client_order_id)]
    assert kinds == ["entry", "fee", "stop_loss"]
    coid = entry.client_order_id
    assert legs(venue) == {coid + "sl": OrderState.FILLED, coid + "tp": OrderState.CANCELLED}


def test_a_restart_places_no_second_oco(venue: Spot) -> None:
    venue.send(OrderSide.BUY, 2, stops=stops(venue))
    venue.restart()
    assert len(venue.fake.order_lists) == 1 and len(open_lists(venue)) == 1


def test_a_stop_that_fired_while_down_is_the_exit_after_restart(venue: Spot) -> None:
    venue.send(OrderSide.BUY, 2, stops=stops(venue))
    entry = entry_of(venue)
    venue.die()
    venue.fake.set_price(SID, entry.intent.stop_loss - 10)
    venue.start()
    kinds = [f.kind for f in venue.journal.orders.fills(entry.client_order_id)]
    assert kinds == ["entry", "fee", "stop_loss"]
    assert open_lists(venue) == [] and venue.fake.balances["BTC"] < 1e-5
    assert venue.journal.trading_state.trading_state(fresh=True).state != "halted"


def test_an_exit_order_closes_a_long_whose_oco_works(venue: Spot) -> None:
    """The OCO locks the BTC: the exit goes out once the engine cancelled it; the dust
    the sell's amount step leaves behind is no position to protect."""
    venue.send(OrderSide.BUY, 2, stops=stops(venue))
    venue.send(OrderSide.SELL, 2)  # closed by an exit order, not by a leg
    assert venue.fake.balances["BTC"] < 1e-5
    assert open_lists(venue) == []
    assert set(legs(venue).values()) == {OrderState.CANCELLED}
    assert venue.journal.incidents.all("open") == []
