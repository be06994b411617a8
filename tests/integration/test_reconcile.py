"""Start-up reconciliation, journal (SQLite, and PostgreSQL when configured) against the
real brokers talking to the fakes: adopt what matches, journal the fills made while down,
flag external orders, refuse to trade when positions disagree."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import mt5_fake as M
from fakes.binance_fake import FakeBinance
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge
from support.builders import a_bar, a_fill, an_intent, an_order

from domain import (
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from executor.brokers.ccxt_broker import CcxtBroker, make_exchange
from executor.brokers.config import CcxtSettings, ResolverSettings
from executor.brokers.mt5 import Mt5Broker
from executor.brokers.mt5_client import Mt5Client
from executor.brokers.paper import PaperBroker
from executor.engine.resolver import OrderResolver
from executor.engine.router import OrderRouter
from executor.engine.startup import journal_net_positions, reconcile
from executor.journal.store import Journal

BAR = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
SINCE = datetime.now(UTC) - timedelta(days=1)


def mt5_intent(n: int, *, side: OrderSide = OrderSide.BUY, order_type: OrderType =
               OrderType.MARKET, price: float | None = None) -> OrderIntent:
    coid = client_order_id("mt5-acct", "EURUSD", BAR + timedelta(minutes=15 * n), f"r{n}")
    return an_intent(client_order_id=coid, account="mt5-acct", symbol="EURUSD", side=side,
                     volume=0.1, order_type=order_type, bar_time=BAR, price=price,
                     stop_loss=1.09 if side is OrderSide.BUY else 1.11,
                     take_profit=1.12 if side is OrderSide.BUY else 1.08)


class Mt5Env:
    def __init__(self) -> None:
        self.fake = FakeMetaTrader5()
        self.bridge = start_bridge(self.fake)
        self.settings = client_settings(self.fake, self.bridge.port)
        self.client = Mt5Client(self.settings, password=self.fake.account_password,
                                bridge_secret=SECRET)

    def broker(self, journal: Journal | None = None) -> Mt5Broker:
        """A fresh broker, as after a restart (restored from the journal when given)."""
        b = Mt5Broker(self.client, self.settings)
        if journal is not None:
            fills = journal.orders.fills()
            b.restore(journal.orders.all("mt5-acct"),
                      [a_fill(client_order_id=f.client_order_id, fill_id=f.fill_id,
                              symbol=f.symbol, side=OrderSide(f.side), time=f.time,
                              price=f.price, volume=f.volume) for f in fills],
                      [f.kind for f in fills])
        return b

    def close(self) -> None:
        self.client.close()
        self.bridge.close()


@pytest.fixture
def mt5() -> Iterator[Mt5Env]:
    e = Mt5Env()
    yield e
    e.close()


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    j = Journal.open(journal_url)
    yield j
    j.close()


def test_fills_made_while_down_are_journaled_and_states_adopted(mt5: Mt5Env,
                                                                journal: Journal) -> None:
    ea_ticket = mt5.fake.add_ea_order("EURUSD", M.ORDER_TYPE_SELL_LIMIT, 0.2, 1.12)
    mt5.fake.add_ea_position("EURUSD", M.ORDER_TYPE_BUY, 0.3)
    router = OrderRouter(journal, mt5.broker())
    pending = router.submit(mt5_intent(1, order_type=OrderType.LIMIT, price=1.0950))
    market = router.submit(mt5_intent(2))
    assert (pending.state, market.state) == (OrderState.ACCEPTED, OrderState.FILLED)
    journal.commit()
    # --- the daemon is down: the limit order fills, then the market one hits its stop.
    mt5.fake.fill_pending(int(pending.broker_order_id or 0))
    mt5.fake.hit_protection(int(market.broker_order_id or 0), "sl")

    # --- restart, as `dta run` does it: the broker restored from the journal, then the
    # same broker reconciled, then the first bar polls its fills.
    restarted = mt5.broker(journal)
    report = reconcile(journal, restarted, "mt5-acct", since=SINCE)
    assert report.refuse_to_trade is False, report.reasons
    assert report.adopted == (pending.client_order_id,)
    assert journal.orders.get_order(pending.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]
    kinds = {(f.client_order_id, f.kind) for f in journal.orders.fills()}
    assert kinds == {(pending.client_order_id, "entry"), (market.client_order_id, "entry"),
                     (market.client_order_id, "stop_loss")}
    assert len(report.fills_recorded) == 3
    assert journal_net_positions(journal, "mt5-acct") == {"EURUSD": pytest.approx(0.1)}
    # The EA's order is reported, never adopted, and is no reason to stop.
    assert [o.broker_order_id for o in report.external_orders] == [str(ea_ticket)]
    assert report.external_orders[0].ours is False
    # The first bar after the restart reports nothing reconciliation already journaled,
    # and journaling what it reports (as the daemon does) never trips on a duplicate.
    first_poll = restarted.on_bar(a_bar(symbol="EURUSD", timeframe="M15", time=BAR, open=1.1,
                                        high=1.1, low=1.1, close=1.1))
    assert [f.fill.fill_id for f in first_poll] == []
    for bf in first_poll:
        journal.orders.record_fill(bf.fill, bf.kind, bf.realized_pnl)
    assert len(journal.orders.fills()) == 3
    # Idempotent: a second start records nothing twice.
    again = reconcile(journal, mt5.broker(journal), "mt5-acct", since=SINCE)
    assert again.fills_recorded == () and again.adopted == () and not again.refuse_to_trade


def test_recording_a_fill_twice_is_a_no_op(journal: Journal) -> None:
    """The same deal seen by reconciliation and by the next poll is one fill, not a
    JournalError that stops the daemon (issue 15, defect 5)."""
    i = mt5_intent(1)
    journal.orders.insert_order(an_order(intent=i), "created")
    fill = a_fill(client_order_id=i.client_order_id, fill_id="mt5:500001", symbol="EURUSD",
                  side=OrderSide.BUY, time=BAR, price=1.1, volume=0.1)
    assert journal.orders.record_fill(fill, "entry", 0.0) is True
    assert journal.orders.record_fill(fill, "entry", 0.0) is False
    journal.commit()
    assert [f.fill_id for f in journal.orders.fills()] == ["mt5:500001"]


def test_an_order_left_submitting_by_a_crash_is_adopted(mt5: Mt5Env, journal: Journal) -> None:
    i = mt5_intent(1)
    order = an_order(intent=i)
    journal.orders.insert_order(order, "created", commit=False)
    submitting = order.transition(OrderState.SUBMITTING)
    journal.orders.update_order(order, submitting, "sending")
    mt5.broker().submit(submitting)  # reached the terminal; the process died before journaling
    report = reconcile(journal, mt5.broker(journal), "mt5-acct", since=SINCE)
    assert report.adopted == (i.client_order_id,) and not report.refuse_to_trade
    assert journal.orders.get_order(i.client_order_id).state is OrderState.FILLED  # type: ignore[union-attr]
    assert [f.client_order_id for f in journal.orders.fills()] == [i.client_order_id]


def test_positions_that_disagree_refuse_trading(mt5: Mt5Env, journal: Journal) -> None:
    router = OrderRouter(journal, mt5.broker())
    filled = router.submit(mt5_intent(1))
    journal.commit()
    reconcile(journal, mt5.broker(journal), "mt5-acct", since=SINCE)  # journals the fill
    # Someone closes our position by hand, outside the daemon (no magic of ours).
    del mt5.fake.positions[int(filled.broker_order_id or 0)]
    report = reconcile(journal, mt5.broker(journal), "mt5-acct", since=SINCE)
    assert report.refuse_to_trade is True
    [m] = report.position_mismatches
    assert (m.symbol, m.journal, m.broker) == ("EURUSD", pytest.approx(0.1), 0.0)
    assert "position EURUSD" in report.reasons[0]


def test_an_order_with_our_mark_missing_from_the_journal_refuses_trading(
        mt5: Mt5Env, journal: Journal) -> None:
    stray = mt5_intent(9, order_type=OrderType.LIMIT, price=1.095)
    # never journaled
    mt5.broker().submit(an_order(intent=stray).transition(OrderState.SUBMITTING))
    report = reconcile(journal, mt5.broker(journal), "mt5-acct", since=SINCE)
    assert report.refuse_to_trade is True
    assert "carries our mark but is not in the journal" in report.problems[0]


def test_unknown_orders_are_counted_and_lost_only_after_the_grace(mt5: Mt5Env,
                                                                 journal: Journal) -> None:
    i = mt5_intent(1)
    mt5.fake.script_order_send(("none", M.RES_E_INTERNAL_FAIL_CONNECT))
    assert OrderRouter(journal, mt5.broker()).submit(i).state is OrderState.UNKNOWN
    journal.commit()
    settings = ResolverSettings(grace_lookups=2, grace_seconds=0.0)
    first = reconcile(journal, mt5.broker(journal), "mt5-acct", since=SINCE, settings=settings)
    assert first.unresolved == (i.client_order_id,) and first.lost == ()
    second = reconcile(journal, mt5.broker(journal), "mt5-acct", since=SINCE,
                       settings=settings)  # the miss count survived the "restart"
    assert second.lost == (i.client_order_id,)
    events = [e["detail"] for e in journal.queries.trace(i.client_order_id)["order_events"]]  # type: ignore[index]
    assert events[-2:] == ["lookup miss 1/2", "lookup miss 2/2: declared lost"]
    assert mt5.fake.calls.count("order_send") == 1


def test_resolver_grace_is_also_time_based(journal: Journal) -> None:
    class Nowhere(PaperBroker):
        def lookup(self, client_order_id: str) -> Order | None:
            return None

    i = mt5_intent(1)
    order = an_order(intent=i)
    journal.orders.insert_order(order, commit=False)
    sub = order.transition(OrderState.SUBMITTING)
    journal.orders.update_order(order, sub, "sending")
    later = [datetime.now(UTC)]
    resolver = OrderResolver(journal, Nowhere(), ResolverSettings(
        grace_lookups=1, grace_seconds=60), clock=lambda: later[0])
    assert resolver.resolve(sub).state is OrderState.UNKNOWN  # one miss, but only seconds old
    later[0] += timedelta(seconds=61)
    unknown = journal.orders.get_order(i.client_order_id)
    assert unknown is not None and resolver.resolve(unknown).state is OrderState.REJECTED


# --------------------------------------------------------------------------- ccxt


def test_ccxt_reconcile_adopts_fills_and_flags_manual_orders(journal: Journal) -> None:
    with FakeBinance() as fake:
        s = CcxtSettings(symbols=("BTC/USDT",), rate_limit_ms=1, timeout_ms=1000)

        def broker() -> CcxtBroker:
            b = CcxtBroker(make_exchange(s, api_key=fake.api_key, secret=fake.secret,
                                         api_urls=fake.api_urls()), s)
            b.restore(journal.orders.all("bn"), [], [])
            return b

        def bn(n: int, **kw: Any) -> OrderIntent:
            coid = client_order_id("bn", "BTC/USDT", BAR + timedelta(minutes=n), "x")
            return an_intent(client_order_id=coid, account="bn", symbol="BTC/USDT",
                             side=OrderSide.BUY, volume=0.01,
                             order_type=kw.get("order_type", OrderType.MARKET), bar_time=BAR,
                             price=kw.get("price"))

        router = OrderRouter(journal, broker())
        resting = router.submit(bn(1, order_type=OrderType.LIMIT, price=29_000.0))
        assert resting.state is OrderState.ACCEPTED
        fake.script("POST", "/api/v3/order", ("accept_then_drop",))
        assert router.submit(bn(2)).state is OrderState.UNKNOWN
        journal.commit()
        # --- down: the resting order fills; a human places an order on the same account.
        fake.fill_resting(resting.client_order_id)
        fake.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                        "price": "25000", "quantity": "0.01", "timeInForce": "GTC",
                        "newClientOrderId": "web_hand_placed"}, None)
        report = reconcile(journal, broker(), "bn", since=SINCE)
        assert report.refuse_to_trade is False, report.reasons
        assert set(report.adopted) == {resting.client_order_id, bn(2).client_order_id}
        assert [o.client_order_id for o in report.external_orders] == ["web_hand_placed"]
        # Two buys, each with its fee paid in BTC (a "fee" fill): 0.02 bought, 0.01998 held.
        assert len(report.fills_recorded) == 4
        assert journal_net_positions(journal, "bn") == {"BTC/USDT": pytest.approx(0.01998)}
        assert {o.state for o in journal.orders.all("bn")} == {OrderState.FILLED}
        assert len(fake.orders_by_client_id(bn(2).client_order_id)) == 1


def test_paper_broker_is_reconcilable(journal: Journal) -> None:
    paper = PaperBroker()
    router = OrderRouter(journal, paper)
    i = mt5_intent(1)
    assert router.submit(i).state is OrderState.ACCEPTED
    assert [o.client_order_id for o in paper.open_orders()] == [i.client_order_id]
    [bf] = paper.on_bar(a_bar(symbol="EURUSD", timeframe="M15", time=BAR + timedelta(minutes=15),
                              open=1.1, high=1.1, low=1.1, close=1.1))
    assert paper.recent_fills(BAR) == [bf]
    journal.commit()
    report = reconcile(journal, paper, "mt5-acct", since=BAR)
    assert report.fills_recorded == (bf.fill.fill_id,) and not report.refuse_to_trade
