"""Order state machine, deterministic ids, the paper fill model and the router's
never-twice rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.builders import a_bar, an_intent, an_order

from domain import (
    ORDER_TRANSITIONS,
    Bar,
    InvalidTransition,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from domain.errors import TemporaryVenueError
from executor.brokers.paper import PaperBroker
from executor.engine.router import OrderRouter
from executor.journal.store import Journal

T0 = datetime(2023, 1, 2, 10, 0, tzinfo=UTC)


def bar(i: int, *, open: float, high: float, low: float, close: float,
        spread: float = 0.0002) -> Bar:
    """The ``i``-th EURUSD M15 bar after T0."""
    return a_bar(symbol="EURUSD", timeframe="M15", time=T0 + timedelta(minutes=15 * i),
                 open=open, high=high, low=low, close=close, volume=100, spread=spread)


def intent(*, side: OrderSide = OrderSide.BUY, sl: float | None = 1.0950,
           tp: float | None = 1.1100, coid: str = "dta-test-1") -> OrderIntent:
    return an_intent(client_order_id=coid, account="acct", symbol="EURUSD", side=side,
                     volume=0.1, order_type=OrderType.MARKET, bar_time=T0, stop_loss=sl,
                     take_profit=tp)


# ---------------------------------------------------------------- state machine

LIFECYCLE = [OrderState.SUBMITTING, OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED,
             OrderState.FILLED]


def test_happy_path_and_terminal_states() -> None:
    order = an_order(intent=intent())
    for state in LIFECYCLE:
        order = order.transition(state)
    assert order.state is OrderState.FILLED and order.state.terminal
    for target in OrderState:
        with pytest.raises(InvalidTransition):
            order.transition(target)


@given(st.lists(st.sampled_from(list(OrderState)), max_size=12))
def test_only_table_transitions_are_possible(path: list[OrderState]) -> None:
    order = an_order(intent=intent())
    for target in path:
        allowed = target in ORDER_TRANSITIONS[order.state]
        if allowed:
            order = order.transition(target)
        else:
            with pytest.raises(InvalidTransition):
                order.transition(target)


def test_unknown_resolves_only_by_lookup_states() -> None:
    unknown = an_order(intent=intent()).transition(OrderState.SUBMITTING).transition(
        OrderState.UNKNOWN)
    assert OrderState.SUBMITTING not in ORDER_TRANSITIONS[OrderState.UNKNOWN]
    assert unknown.transition(OrderState.FILLED).state is OrderState.FILLED


def test_client_order_id_is_deterministic_and_short() -> None:
    a = client_order_id("acct", "EURUSD", T0, "entry:x:buy")
    assert a == client_order_id("acct", "EURUSD", T0.astimezone(), "entry:x:buy")
    assert a != client_order_id("acct", "EURUSD", T0 + timedelta(minutes=15), "entry:x:buy")
    assert a != client_order_id("acct2", "EURUSD", T0, "entry:x:buy")
    assert len(a) <= 24 and a.isalnum()
    with pytest.raises(ValueError):
        client_order_id("acct", "EURUSD", T0.replace(tzinfo=None), "x")


# ---------------------------------------------------------------- paper fills


def test_market_buy_fills_next_open_plus_half_spread_then_take_profit() -> None:
    b = PaperBroker(contract_size=100_000, initial_balance=10_000)
    accepted = b.submit(an_order(intent=intent()).transition(OrderState.SUBMITTING))
    assert accepted.state is OrderState.ACCEPTED
    fills = b.on_bar(bar(1, open=1.1000, high=1.1010, low=1.0990, close=1.1005, spread=0.0002))
    assert [f.kind for f in fills] == ["entry"]
    assert fills[0].fill.price == pytest.approx(1.1001)
    assert fills[0].order is not None and fills[0].order.state is OrderState.FILLED
    assert b.position("EURUSD").volume == pytest.approx(0.1)
    assert b.unrealized_pnl() == pytest.approx((1.1005 - 1.1001) * 0.1 * 100_000)
    exit_ = b.on_bar(bar(2, open=1.1050, high=1.1120, low=1.1040, close=1.1110))
    assert [f.kind for f in exit_] == ["take_profit"]
    assert exit_[0].fill.price == pytest.approx(1.1100)
    assert exit_[0].realized_pnl == pytest.approx((1.1100 - 1.1001) * 0.1 * 100_000)
    assert b.position("EURUSD").is_flat
    assert b.equity() == pytest.approx(10_000 + 99.0)


def test_paper_memory_stays_flat_over_a_long_run() -> None:
    """Finished orders and fills older than a day of market time are forgotten (they are
    in the journal); open orders and positions never are."""
    b = PaperBroker(contract_size=100_000, initial_balance=10_000)
    bars_per_day = 96
    for i in range(1, 5 * bars_per_day):  # five days, an order every bar
        t = T0 + timedelta(minutes=15 * i)
        side = OrderSide.BUY if i % 2 else OrderSide.SELL
        order = an_order(intent=an_intent(client_order_id=f"dta-long-{i}", account="acct",
                                          symbol="EURUSD", side=side, volume=0.1,
                                          order_type=OrderType.MARKET, bar_time=t))
        b.submit(order.transition(OrderState.SUBMITTING))
        b.on_bar(bar(i + 1, open=1.1, high=1.101, low=1.099, close=1.1))
    last = T0 + timedelta(minutes=15 * (5 * bars_per_day - 1))
    assert b.lookup("dta-long-1") is None  # four days old: only in the journal now
    assert b.lookup(f"dta-long-{5 * bars_per_day - 1}") is not None
    assert len(b._known) <= 2 * bars_per_day + 256
    assert all(f.fill.time >= last - timedelta(days=1) for f in b.recent_fills(T0))
    open_ = an_order(intent=an_intent(client_order_id="dta-open", account="acct", symbol="EURUSD",
                                      side=OrderSide.BUY, volume=0.1,
                                      order_type=OrderType.MARKET, bar_time=T0))
    b.submit(open_.transition(OrderState.SUBMITTING))  # accepted, waiting for a bar
    for k in range(600):
        b._remember(an_order(intent=an_intent(client_order_id=f"dta-x-{k}", account="acct",
                                              symbol="EURUSD", side=OrderSide.BUY, volume=0.1,
                                              order_type=OrderType.MARKET, bar_time=last))
                    .transition(OrderState.SUBMITTING).transition(OrderState.REJECTED))
    assert b.lookup("dta-open") is not None and [o.client_order_id for o in
                                                 b.open_orders()] == ["dta-open"]


def test_sell_stop_first_when_both_levels_in_one_bar_and_gap_fills_at_open() -> None:
    b = PaperBroker()
    b.submit(an_order(intent=intent(side=OrderSide.SELL, sl=1.1050, tp=1.0900))
             .transition(OrderState.SUBMITTING))
    [entry] = b.on_bar(bar(1, open=1.1000, high=1.1010, low=1.0990, close=1.1000, spread=0.0002))
    assert entry.fill.price == pytest.approx(1.0999)
    # both touched: stop first
    [stop] = b.on_bar(bar(2, open=1.1000, high=1.1060, low=1.0890, close=1.0950))
    assert stop.kind == "stop_loss" and stop.fill.price == pytest.approx(1.1050)
    assert stop.realized_pnl == pytest.approx((1.0999 - 1.1050) * 0.1 * 100_000)

    g = PaperBroker()
    g.submit(an_order(intent=intent(sl=1.0950, tp=None, coid="dta-gap"))
             .transition(OrderState.SUBMITTING))
    g.on_bar(bar(1, open=1.1000, high=1.1010, low=1.0990, close=1.1000, spread=0.0))
    # opens through the stop
    [gap] = g.on_bar(bar(2, open=1.0900, high=1.0920, low=1.0880, close=1.0910))
    assert gap.fill.price == pytest.approx(1.0900)


def test_restore_rebuilds_positions_and_pending_orders() -> None:
    live = PaperBroker()
    order = an_order(intent=intent()).transition(OrderState.SUBMITTING)
    accepted = live.submit(order)
    [entry] = live.on_bar(bar(1, open=1.1000, high=1.1010, low=1.0990, close=1.1005))
    second = an_order(intent=intent(coid="dta-test-2")).transition(OrderState.SUBMITTING)
    live.submit(second)

    restored = PaperBroker()
    assert entry.order is not None
    restored.restore([entry.order, second], [entry.fill], ["entry"])
    assert restored.position("EURUSD") == live.position("EURUSD")
    assert restored.lookup("dta-test-2") is not None
    fills = restored.on_bar(bar(2, open=1.1010, high=1.1020, low=1.1000, close=1.1015))
    assert [f.fill.client_order_id for f in fills] == ["dta-test-2"]
    assert accepted.state is OrderState.ACCEPTED


def test_paper_rejects_non_market_orders() -> None:
    b = PaperBroker()
    limit = an_intent(client_order_id="dta-l", account="acct", symbol="EURUSD",
                      side=OrderSide.BUY, volume=0.1, order_type=OrderType.LIMIT, bar_time=T0,
                      price=1.09)
    assert b.submit(an_order(intent=limit).transition(OrderState.SUBMITTING)).state \
        is OrderState.REJECTED


# ---------------------------------------------------------------- router


class CountingBroker(PaperBroker):
    """A stand-in for a real broker: not ``simulated``, so journal-first applies."""

    simulated = False

    def __init__(self, fail: Exception | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail = fail

    def submit(self, order: Order) -> Order:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return super().submit(order)


def test_router_journals_before_broker_and_never_sends_twice(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    seen_in_journal: list[str | None] = []

    class Spy(CountingBroker):
        def submit(self, order: Order) -> Order:
            reader = Journal.open(journal_url)  # another connection, as a crash would see it
            row = reader.orders.get_order(order.client_order_id)
            reader.close()
            seen_in_journal.append(row.state.value if row else None)
            return super().submit(order)

    broker = Spy()
    router = OrderRouter(journal, broker)
    first = router.submit(intent())
    again = router.submit(intent())
    assert broker.calls == 1
    assert seen_in_journal == ["submitting"]  # committed before the broker saw it
    assert first.state is again.state is OrderState.ACCEPTED
    journal.close()


def test_router_batches_the_order_row_for_a_simulated_broker(journal_url: str) -> None:
    """In front of the in-process paper simulator the order row rides the cycle's commit:
    nothing is committed before the call, and after a rollback (the process died) neither
    the order nor the simulator's acceptance survives a rebuild from the journal."""
    journal = Journal.open(journal_url)
    seen: list[str | None] = []

    class Sim(PaperBroker):
        def submit(self, order: Order) -> Order:
            reader = Journal.open(journal_url)
            row = reader.orders.get_order(order.client_order_id)
            reader.close()
            seen.append(row.state.value if row else None)
            return super().submit(order)

    router = OrderRouter(journal, Sim())
    assert router.submit(intent()).state is OrderState.ACCEPTED
    assert seen == [None]  # not committed before the (simulated) send
    journal.rollback()  # the crash: the uncommitted order is gone ...
    rebuilt = PaperBroker()
    rebuilt.restore(journal.orders.all("acct"), [], [])
    assert rebuilt.open_orders() == [] and journal.orders.all("acct") == []  # ... with its fill
    assert router.submit(intent()).state is OrderState.ACCEPTED  # the re-run sends it anew
    journal.commit()
    assert [o.state for o in journal.orders.all("acct")] == [OrderState.ACCEPTED]
    journal.close()


def test_router_timeout_leaves_unknown_and_restart_resolves_by_lookup(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    broker = CountingBroker(fail=TemporaryVenueError("timed out after accept"))
    result = OrderRouter(journal, broker).submit(intent())
    assert result.state is OrderState.UNKNOWN
    journal.commit()

    # After a restart the broker reports the order: resolved by lookup, not re-sent.
    class Knows(CountingBroker):
        def lookup(self, client_order_id: str) -> Order | None:
            return an_order(intent=intent()).transition(OrderState.SUBMITTING).transition(
                OrderState.FILLED, filled_volume=0.1, avg_fill_price=1.1)

    knows = Knows()
    resolved = OrderRouter(journal, knows).tracker.resolve_open("acct")
    assert [o.state for o in resolved] == [OrderState.FILLED]
    assert knows.calls == 0
    assert OrderRouter(journal, knows).submit(intent()).state is OrderState.FILLED
    assert knows.calls == 0
    journal.close()
