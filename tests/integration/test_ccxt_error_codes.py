"""Binance's documented error codes, each through the real ``ccxt.binance`` client against
the loopback fake, end in the outcome production would get.

ccxt picks its Binance exception maps by the request URL: against 127.0.0.1 only its
general map applies, so a class-based mapping would take other branches here than on
api.binance.com. The adapter maps by Binance's code (``executor.brokers.ccxt_errors``);
each case below also raises the same body through ccxt's handler with the production URL
and checks the classification agrees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest
from fakes.binance_fake import FakeBinance
from test_ccxt_broker import intent, make_broker, posts, submitting

from domain import OrderState, OrderType
from domain.errors import VenueError
from executor.brokers.ccxt_broker import CcxtBroker
from executor.brokers.ccxt_errors import Outcome, classify

PROD_ORDER_URL = "https://api.binance.com/api/v3/order"


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance() as f:
        yield f


@pytest.fixture
def broker(fake: FakeBinance) -> CcxtBroker:
    b = make_broker(fake)
    b.ensure_markets()
    return b


def production_error(status: int, code: int, msg: str) -> BaseException:
    """What ccxt raises for this answer from the production spot URL."""
    ex = ccxt.binance()
    body = json.dumps({"code": code, "msg": msg})
    try:
        ex.handle_errors(status, "Bad Request", PROD_ORDER_URL, "POST", {}, body,
                         json.loads(body), None, None)
    except ccxt.BaseError as exc:
        return exc
    raise AssertionError("ccxt raised nothing")


# (status, code, msg, outcome, order state after submit, words in the reason)
SUBMIT_CASES: list[tuple[int, int, str, Outcome, OrderState, str]] = [
    (400, -1013, "Filter failure: LOT_SIZE", Outcome.REJECTED, OrderState.REJECTED,
     "LOT_SIZE"),
    (400, -1013, "Filter failure: NOTIONAL", Outcome.REJECTED, OrderState.REJECTED,
     "NOTIONAL"),
    (400, -1013, "Filter failure: PRICE_FILTER", Outcome.REJECTED, OrderState.REJECTED,
     "PRICE_FILTER"),
    (400, -1111, "Precision is over the maximum defined for this asset.", Outcome.REJECTED,
     OrderState.REJECTED, "Precision"),
    (400, -1121, "Invalid symbol.", Outcome.REJECTED, OrderState.REJECTED, "Invalid symbol"),
    (400, -1022, "Signature for this request is not valid.", Outcome.REJECTED,
     OrderState.REJECTED, "Signature"),
    (400, -2010, "Account has insufficient balance for requested action.", Outcome.REJECTED,
     OrderState.REJECTED, "insufficient balance"),
    (400, -2010, "Market is closed.", Outcome.REJECTED, OrderState.REJECTED,
     "Market is closed"),
    (400, -2010, "Duplicate order sent.", Outcome.DUPLICATE, OrderState.UNKNOWN, "duplicate"),
    (429, -1003, "Too much request weight used; current limit is 6000 request weight per "
     "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
     Outcome.RATE_LIMITED, OrderState.REJECTED, "rate limited"),
    (418, -1003, "Way too much request weight used; IP banned until 1700000000000. Please "
     "use WebSocket Streams for live updates to avoid bans.", Outcome.RATE_LIMITED,
     OrderState.REJECTED, "rate limited"),
    (429, -1015, "Too many new orders; current limit is 100 orders per 10 SECOND.",
     Outcome.RATE_LIMITED, OrderState.REJECTED, "rate limited"),
    (503, -1007, "Timeout waiting for response from backend server. Send status unknown; "
     "execution status unknown.", Outcome.TRANSIENT, OrderState.UNKNOWN, "outcome unknown"),
    (500, -1000, "An unknown error occurred while processing the request.",
     Outcome.TRANSIENT, OrderState.UNKNOWN, "outcome unknown"),
]


@pytest.mark.parametrize(("status", "code", "msg", "outcome", "state", "words"),
                         SUBMIT_CASES, ids=[f"{c[1]}-{c[0]}-{c[2][:12]}" for c in SUBMIT_CASES])
def test_submit_outcome_by_binance_code(fake: FakeBinance, broker: CcxtBroker, status: int,
                                        code: int, msg: str, outcome: Outcome,
                                        state: OrderState, words: str) -> None:
    fake.script("POST", "/api/v3/order", ("reject", code, msg, status))
    result = broker.submit(submitting(intent()))
    assert (result.state, posts(fake)) == (state, 1)  # never sent twice
    assert words in result.reason
    assert classify(production_error(status, code, msg)).outcome is outcome


def test_timestamp_minus_1021_resyncs_and_resends_the_same_id_once(
        fake: FakeBinance, broker: CcxtBroker) -> None:
    msg = "Timestamp for this request is outside of the recvWindow."
    fake.script("POST", "/api/v3/order", ("reject", -1021, msg))
    i = intent()
    assert broker.submit(submitting(i)).state is OrderState.FILLED
    assert posts(fake) == 2 and ("GET", "/api/v3/time") in fake.requests
    assert len(fake.orders_by_client_id(i.client_order_id)) == 1
    # A read refused for its timestamp is resynced and read again.
    fake.script("GET", "/api/v3/order", ("reject", -1021, msg))
    assert broker.lookup(i.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]
    assert classify(production_error(400, -1021, msg)).outcome is Outcome.TIMESTAMP


def test_order_does_not_exist_minus_2013_is_a_miss(fake: FakeBinance,
                                                   broker: CcxtBroker) -> None:
    """GET /api/v3/order for an id the exchange never saw: -2013, a lookup miss."""
    assert broker.lookup(intent(9).client_order_id) is None
    assert ("GET", "/api/v3/order") in fake.requests
    fake.script("GET", "/api/v3/order", ("reject", -2013, "Order does not exist."))
    broker.submit(submitting(intent(1)))
    assert broker.lookup(intent(1).client_order_id) is None  # the venue says: not there
    assert classify(production_error(400, -2013, "Order does not exist.")).outcome is (
        Outcome.NOT_FOUND)


def test_unknown_order_on_cancel_minus_2011(fake: FakeBinance, broker: CcxtBroker) -> None:
    """DELETE /api/v3/order for a finished order: -2011 "Unknown order sent."."""
    placed = broker.submit(submitting(intent(order_type=OrderType.LIMIT, price=29_000.0)))
    broker.exchange.cancel_order(placed.broker_order_id, "BTC/USDT")
    with pytest.raises(ccxt.BaseError) as info:
        broker.exchange.cancel_order(placed.broker_order_id, "BTC/USDT")
    assert classify(info.value).outcome is Outcome.NOT_FOUND
    assert classify(info.value).code == -2011
    assert classify(production_error(400, -2011, "Unknown order sent.")).outcome is (
        Outcome.NOT_FOUND)


@pytest.mark.parametrize(("status", "code"), [(429, -1003), (418, -1003), (429, -1015)])
def test_rate_limited_reads_back_off_instead_of_retrying(fake: FakeBinance,
                                                         broker: CcxtBroker, status: int,
                                                         code: int) -> None:
    """On 429 "it's your obligation as an API to back off"; retrying at once is what turns
    it into a 418 ban ("LIMITS"). The read fails retryable after ONE request."""
    i = intent()
    broker.submit(submitting(i))
    fake.script("GET", "/api/v3/order", ("reject", code, "Too many requests.", status))
    before = fake.requests.count(("GET", "/api/v3/order"))
    with pytest.raises(VenueError) as info:
        broker.lookup(i.client_order_id)
    assert info.value.retryable is True and "rate limited" in str(info.value)
    assert fake.requests.count(("GET", "/api/v3/order")) - before == 1


def test_classification_does_not_depend_on_the_url(fake: FakeBinance,
                                                   broker: CcxtBroker) -> None:
    """The same answer from the loopback URL and the production URL: same outcome, even
    where ccxt raises different classes for the two."""
    body: dict[str, Any] = {"code": -2010, "msg": "Account has insufficient balance for "
                                                  "requested action."}
    fake.script("POST", "/api/v3/order", ("reject", body["code"], body["msg"]))
    with pytest.raises(ccxt.BaseError) as info:
        broker.exchange.create_order("BTC/USDT", "market", "buy", 0.01)
    prod = production_error(400, body["code"], body["msg"])
    assert classify(info.value).outcome is classify(prod).outcome is Outcome.REJECTED
