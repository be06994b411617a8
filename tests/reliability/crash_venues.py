"""The loopback venues of the crash-safety test (test_crash_safety.py), run in the test's
process, and what each must hold after the final clean life:
- ``ccxt``: the spot fake (tests/fakes/binance_fake.py);
- ``mt5``: our bridge serving the fake MetaTrader5 terminal;
- ``swap``: the Binance USD-M fake, where the engine places each entry's stop and target
  as conditional orders (``crash_swap_venue.py``).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pytest
from fakes import mt5_fake as M
from fakes.binance_fake import FakeBinance
from fakes.mt5_fake import FakeMetaTrader5, start_bridge

from domain import Order, OrderState
from executor.brokers.config import Mt5Settings
from executor.journal.store import Journal

ACCOUNT = "crash-acct"
# `make soak` sets DTA_SOAK_KILLS=500; the suite runs 50 per variant (bounded in time).
KILLS = int(os.environ.get("DTA_SOAK_KILLS", "50"))


@dataclass(frozen=True, slots=True)
class Placed:
    """One order as the venue holds it."""

    client_order_id: str
    broker_order_id: str
    filled: float


class Venue(Protocol):
    """A loopback venue running in this process, as the kill loop needs it."""

    port: int
    # Enough cycles that the kills always land while orders are still going out.
    cycles: int
    # Lives wait after ``ready`` for ``at_ready`` (which sends them SIGUSR1).
    handshake: bool

    def set_on_order(self, hook: Callable[[], object] | None) -> None:
        """Run ``hook`` each time the venue accepted an order, before the answer leaves
        (it returns True when it killed the life there)."""

    def delay_next_send(self, seconds: float) -> None: ...

    def stir(self, rng: random.Random) -> None:
        """Now and then, move the market (a venue whose exits fire at the exchange)."""

    def during(self, seconds: float, rng: random.Random) -> None:
        """Let a running life go on for ``seconds``; the market may move meanwhile."""

    def at_ready(self, pid: int, url: str, settled: bool = False) -> None:
        """A life finished its start-up, or (``settled``) the final life its settling:
        with ``handshake``, check the venue, then let the life go on."""

    def verify(self, url: str) -> str:
        """After the final life: assert the invariants; a line for the report."""

    def diagnose(self, url: str) -> None:
        """A life failed: raise a more precise error when the venue can tell why."""

    def close(self) -> None: ...


class _StillMarket:
    """A venue whose price never matters here: nothing to stir, no handshake."""

    handshake = False
    cycles = max(800, KILLS * 16)  # lives on a fast disk got through 160 by the 50th kill

    def stir(self, rng: random.Random) -> None:
        pass

    def during(self, seconds: float, rng: random.Random) -> None:
        time.sleep(seconds)

    def at_ready(self, pid: int, url: str, settled: bool = False) -> None:
        pass

    def diagnose(self, url: str) -> None:
        pass

    def placed(self) -> list[Placed]:
        raise NotImplementedError

    def verify(self, url: str) -> str:
        lost = check_orders(journaled_orders(url), self.placed(), self.cycles)
        return f"{len(self.placed())} placed, {lost} never placed (journaled lost)"


class BinanceVenue(_StillMarket):
    def __init__(self) -> None:
        # BTC the daemon did not buy: the scenario's first order is a sell, and this test
        # judges duplicates and losses, not balances
        # (tests/integration/test_ccxt_spot_book.py does).
        self.fake = FakeBinance(balances={"USDT": 1_000_000.0, "BTC": 10.0}).start()
        self.port = self.fake.port

    def set_on_order(self, hook: Callable[[], object] | None) -> None:
        self.fake.on_order = None if hook is None else lambda _order: hook()

    def delay_next_send(self, seconds: float) -> None:
        self.fake.script("POST", "/api/v3/order", ("delay", seconds))

    def placed(self) -> list[Placed]:
        return [Placed(o["clientOrderId"], str(o["orderId"]), float(o["executedQty"]))
                for o in self.fake.orders]

    def close(self) -> None:
        self.fake.stop()


class Mt5Venue(_StillMarket):
    """Our bridge serving the fake terminal; the client id is the order comment (the
    child's broker uses the default, empty, comment prefix)."""

    MAGIC = Mt5Settings().magic

    def __init__(self) -> None:
        # Margin for every order of a 500-kill soak. A netting account: the checks below
        # take one venue order per client id, while on a hedging account an order against
        # open tickets is sent as several (close by ticket, then the rest; see
        # Mt5Broker._submit_legs), which these checks do not group yet.
        self.fake = FakeMetaTrader5(balance=1e9,
                                    margin_mode=M.ACCOUNT_MARGIN_MODE_RETAIL_NETTING)
        self.bridge = start_bridge(self.fake)
        self.port = self.bridge.port

    def set_on_order(self, hook: Callable[[], object] | None) -> None:
        self.fake.on_order = None if hook is None else lambda _request: hook()

    def delay_next_send(self, seconds: float) -> None:
        self.fake.script_order_send(("delay", seconds))

    def placed(self) -> list[Placed]:
        fake = self.fake
        orders = [o for o in [*fake.orders.values(), *fake.history_orders.values()]
                  if o.magic == self.MAGIC]
        tickets = {o.ticket: o for o in orders}
        filled = dict.fromkeys(tickets, 0.0)
        for d in fake.deals.values():
            if d.magic != self.MAGIC:
                continue
            # every deal of ours belongs to an order of ours, under the same client id
            assert d.order in tickets and d.comment == tickets[d.order].comment, d
            filled[d.order] += d.volume
        return [Placed(o.comment, str(o.ticket), filled[o.ticket]) for o in orders]

    def close(self) -> None:
        self.bridge.close()


def journaled_orders(url: str) -> list[Order]:
    journal = Journal.open(url, migrate_schema=False)
    try:
        return journal.orders.all(ACCOUNT)
    finally:
        journal.close()


def check_orders(orders: list[Order], placed: list[Placed], cycles: int | None,
                 refused: Callable[[Order], bool] | None = None) -> int:
    """Zero duplicates and zero lost, between journaled orders and venue orders; returns
    how many were journaled lost. ``cycles``: how many orders the journal must hold;
    ``refused``: which other rejections are allowed (never at the venue either)."""
    journaled = {o.client_order_id for o in orders}
    if cycles is not None:
        assert len(orders) == len(journaled) == cycles
    by_id: dict[str, list[Placed]] = {}
    for p in placed:
        by_id.setdefault(p.client_order_id, []).append(p)
    # zero duplicates
    assert {c: len(v) for c, v in by_id.items() if len(v) > 1} == {}
    # zero lost: every venue order is journaled ...
    assert set(by_id) <= journaled
    lost = 0
    for o in orders:
        assert o.state not in (OrderState.SUBMITTING, OrderState.UNKNOWN), o
        at_venue = by_id.get(o.client_order_id, [])
        if o.state is OrderState.FILLED:
            # ... and every journaled fill is the one venue order with that id
            [p] = at_venue
            assert o.broker_order_id == p.broker_order_id, (o, p)
            assert o.filled_volume == pytest.approx(p.filled), (o, p)
            continue
        assert o.state is OrderState.REJECTED, o
        assert at_venue == []  # declared lost (or refused) only when it never landed
        if o.reason.startswith("lost:"):
            lost += 1
        else:
            assert refused is not None and refused(o), o
    return lost
