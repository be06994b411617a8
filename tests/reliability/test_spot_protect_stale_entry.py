"""What the spot-protect crash-safety variant found (test_crash_safety.py), pinned without
kills: the engine protects again an entry that is no longer its position's, once that
entry's legs are declared lost.

The sequence the soak hit (within a few kills, most seeds): an entry long fills and its
OCO's answer is lost (the life was killed, or the connection dropped: "HTTP Return Codes",
the request may or may not have been executed), so its legs stay ``unknown``; the position
is then closed and a later entry opens a new long with its own OCO, which locks the coins
("Account information": ``locked``). When the resolver's grace passes, the first entry's
legs are declared lost, and ``ProtectiveOrders.after_bar`` -> ``_follow_up`` calls
``protect`` on that *stale* entry: the position (the newer entry's) is long, so it is
"the same way", and the engine sends the stale entry's next generation sized to the
whole position. Binance spot has nothing free to sell (the current OCO locks it), the legs
are refused, and ``_fail`` sends a market close of the whole position ("Account has
insufficient balance for requested action.") and opens a critical
``protective_order_failed`` incident for a position that was protected all along. On a
venue that does not lock (the USD-M swap), the same path would place a second set of legs
and could close a position another entry's stop protects.

Expected from the engine's own contract (``after_order``: "the position as it is now
carries its current entry's legs, and no other entry's"): a stale entry's lost legs are
dropped, never placed again; nothing is closed; no incident.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from crash_child import GRACE, make_broker
from crash_spot_life import BAR0, SPOT_SYMBOL
from fakes.binance_fake import FakeBinance

from domain import OrderIntent, OrderSide, OrderState, OrderType, client_order_id
from executor.engine.protection import ProtectiveOrders
from executor.engine.resolver import OrderResolver
from executor.engine.router import OrderRouter
from executor.journal.store import Journal

sys.path.insert(0, str(Path(__file__).resolve().parent))
ACCOUNT = "stale-acct"


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    f = FakeBinance(balances={"USDT": 1_000_000.0}).start()
    try:
        yield f
    finally:
        f.stop()


def intent(k: int, side: OrderSide, volume: float, price: float | None = None) -> OrderIntent:
    bar = BAR0 + timedelta(minutes=15 * k)
    stops = {} if price is None else dict(stop_loss=round(price * 0.99, 2),
                                          take_profit=round(price * 1.01, 2))
    return OrderIntent(client_order_id(ACCOUNT, SPOT_SYMBOL, bar, f"stale:{k}"), ACCOUNT,
                       SPOT_SYMBOL, side, volume, OrderType.MARKET, bar, **stops)


def test_a_stale_entry_s_lost_legs_are_not_placed_again(fake: FakeBinance,
                                                       journal_url: str) -> None:
    journal = Journal.open(journal_url)
    broker = make_broker("spot-protect", fake.port)
    router = OrderRouter(journal, broker)
    resolver = OrderResolver(journal, broker, GRACE)
    protection = ProtectiveOrders(journal, broker, router, ACCOUNT)
    price = float(fake.symbols["BTCUSDT"]["price"])

    def send(i: OrderIntent) -> None:
        protection.before_order(i)
        protection.after_order(router.submit(i))
        journal.commit()

    try:
        fake.script("POST", "/api/v3/orderList/oco", ("drop",))  # the answer lost
        send(intent(0, OrderSide.BUY, 0.002, price))
        stale = intent(0, OrderSide.BUY, 0.002).client_order_id
        assert {o.state for o in journal.orders.all(ACCOUNT) if o.protective_kind} == {
            OrderState.UNKNOWN}
        send(intent(1, OrderSide.SELL, broker.position(SPOT_SYMBOL).volume))  # closed
        send(intent(2, OrderSide.BUY, 0.003, price))  # a new long, its own OCO
        current = intent(2, OrderSide.BUY, 0.003).client_order_id
        working = [x["listClientOrderId"] for x in fake.order_lists
                   if x["listOrderStatus"] == "EXECUTING"]
        assert working == [current + "sloco"]
        assert resolver.settle(ACCOUNT, max_seconds=GRACE.grace_seconds + 5) == []
        journal.commit()  # the stale entry's legs: declared lost
        protection.after_bar(SPOT_SYMBOL, [])  # the next bar
        journal.commit()

        orders = journal.orders.all(ACCOUNT)
        placed_again = [o.client_order_id for o in orders
                        if o.client_order_id.startswith(stale) and o.client_order_id[-1] == "1"]
        closes = [o.client_order_id for o in orders if "protect" in o.reason
                  or (o.intent.reduce_only and o.protective_kind is None)]
        assert placed_again == [], "a stale entry's legs placed again"
        assert closes == [], "the position closed"
        assert journal.incidents.all("open") == []
        assert [x["listClientOrderId"] for x in fake.order_lists
                if x["listOrderStatus"] == "EXECUTING"] == [current + "sloco"]
    finally:
        journal.close()
