"""MT5 account models through the real rpyc bridge and client: netting, exchange and hedging
position accounting (``account_info().margin_mode``), each as the MQL5 documentation gives
it (see the fake's docstring), and what the guardrails see of a hedged book."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fakes import mt5_fake as M
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge
from support.builders import a_decision, a_proposal, an_intent, an_order

from domain import (
    Direction,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    client_order_id,
)
from domain.errors import VenueError
from executor.brokers.mt5 import Mt5Broker
from executor.brokers.mt5_client import Mt5Client
from executor.engine.router import OrderRouter
from executor.engine.startup import journal_net_positions, reconcile
from executor.journal.store import Journal
from guardrails.base import AccountState
from guardrails.limits import MaxGrossExposureCheck

BAR = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
MAGIC = 770_001
SINCE = datetime.now(UTC) - timedelta(days=1)


def intent(n: int, *, side: OrderSide, volume: float) -> OrderIntent:
    coid = client_order_id("mt5-acct", "EURUSD", BAR + timedelta(minutes=15 * n), f"h{n}")
    return an_intent(client_order_id=coid, account="mt5-acct", symbol="EURUSD", side=side,
                     volume=volume, order_type=OrderType.MARKET, bar_time=BAR)


class Env:
    def __init__(self, margin_mode: int) -> None:
        self.fake = FakeMetaTrader5(margin_mode=margin_mode)
        self.bridge = start_bridge(self.fake)
        self.settings = client_settings(self.fake, self.bridge.port)
        self.client = Mt5Client(self.settings, password=self.fake.account_password,
                                bridge_secret=SECRET)
        self.broker = Mt5Broker(self.client, self.settings)

    def submit(self, i: OrderIntent) -> Order:
        return self.broker.submit(an_order(intent=i).transition(OrderState.SUBMITTING))

    def our_tickets(self) -> list[tuple[int, float]]:
        """(type, volume) of our positions at the "server", oldest first."""
        return [(p.type, p.volume) for p in sorted(self.fake.positions.values(),
                                                    key=lambda p: p.ticket)
                if p.magic == MAGIC]

    def close(self) -> None:
        self.client.close()
        self.bridge.close()


@pytest.fixture
def hedging() -> Iterator[Env]:
    e = Env(M.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
    yield e
    e.close()


@pytest.fixture
def journal(sqlite_url: str) -> Iterator[Journal]:
    j = Journal.open(sqlite_url)
    yield j
    j.close()


# --------------------------------------------------------------------------- hedging


def test_hedging_opposite_order_closes_our_ticket_instead_of_opening_a_second(
        hedging: Env) -> None:
    """Issue 15, defect 2: on a hedging account a plain sell opens a second ticket; ours
    names the buy ticket in ``position`` and closes it."""
    buy = hedging.submit(intent(1, side=OrderSide.BUY, volume=0.1))
    sell = hedging.submit(intent(2, side=OrderSide.SELL, volume=0.1))
    assert (buy.state, sell.state) == (OrderState.FILLED, OrderState.FILLED)
    assert hedging.fake.sent_requests[-1]["position"] == int(buy.broker_order_id or 0)
    assert hedging.our_tickets() == []  # the broker is flat, not long and short
    assert hedging.broker.positions() == {}
    assert hedging.fake.floating_profit() == 0.0


def test_hedging_partial_close_and_reversal_end_as_netting_would(hedging: Env,
                                                                  journal: Journal) -> None:
    router = OrderRouter(journal, hedging.broker)
    router.submit(intent(1, side=OrderSide.BUY, volume=0.3))
    reduce = router.submit(intent(2, side=OrderSide.SELL, volume=0.1))
    assert reduce.state is OrderState.FILLED
    assert hedging.our_tickets() == [(M.POSITION_TYPE_BUY, 0.2)]
    reverse = router.submit(intent(3, side=OrderSide.SELL, volume=0.5))  # close 0.2, open 0.3 short
    assert reverse.state is OrderState.FILLED
    assert reverse.filled_volume == pytest.approx(0.5)
    assert hedging.our_tickets() == [(M.POSITION_TYPE_SELL, 0.3)]
    assert hedging.broker.positions()["EURUSD"].volume == pytest.approx(-0.3)
    # Two requests, one order: lookup and the fills see it whole.
    seen = hedging.broker.lookup(reverse.client_order_id)
    assert seen is not None and seen.state is OrderState.FILLED
    assert seen.filled_volume == pytest.approx(0.5)
    journal.commit()
    report = reconcile(journal, hedging.broker, "mt5-acct", since=SINCE)
    assert not report.refuse_to_trade, report.reasons
    assert journal_net_positions(journal, "mt5-acct") == {"EURUSD": pytest.approx(-0.3)}


def test_hedging_closes_the_oldest_tickets_first(hedging: Env) -> None:
    first = hedging.submit(intent(1, side=OrderSide.BUY, volume=0.1))
    hedging.submit(intent(2, side=OrderSide.BUY, volume=0.2))
    hedging.submit(intent(3, side=OrderSide.SELL, volume=0.15))
    closes = [r for r in hedging.fake.sent_requests if r.get("position")]
    assert [(r["position"], r["volume"]) for r in closes] == [
        (int(first.broker_order_id or 0), 0.1), (int(first.broker_order_id or 0) + 1, 0.05)]
    assert hedging.our_tickets() == [(M.POSITION_TYPE_BUY, 0.15)]


def test_a_hedged_book_counts_in_full_toward_gross_exposure(hedging: Env) -> None:
    """Tickets of ours on both sides (opened by hand, say) net to flat; the guardrails
    still see the lots the broker holds."""
    token = intent(9, side=OrderSide.BUY, volume=0.2).client_order_id
    hedging.fake.add_ea_position("EURUSD", M.ORDER_TYPE_BUY, 0.2, magic=MAGIC, comment=token)
    hedging.fake.add_ea_position("EURUSD", M.ORDER_TYPE_SELL, 0.2, magic=MAGIC, comment=token)
    pos = hedging.broker.positions()["EURUSD"]
    assert pos.volume == 0.0 and pos.gross_volume == pytest.approx(0.4)
    assert pos.hedged_volume == pytest.approx(0.4)
    p = a_proposal(strategy="s", symbol="GBPUSD", timeframe="M15", bar_time=BAR,
                   direction=Direction.LONG, entry=1.25, stop=1.24, target=1.27, reason="test")
    d = a_decision(proposal=p, direction=Direction.LONG, confidence=0.8, agreement=2, voters=2,
                   signals=(), contributions=(), params_hash="h")
    account = AccountState(positions=hedging.broker.positions(), order_volume=0.2)
    verdict = MaxGrossExposureCheck(0.5).check(d, account)
    assert not verdict.passed and "0.6" in verdict.reason


def test_an_unknown_margin_mode_refuses_to_trade() -> None:
    e = Env(7)
    try:
        with pytest.raises(VenueError, match="margin_mode 7 is not supported"):
            e.broker.margin_mode()
        result = e.submit(intent(1, side=OrderSide.BUY, volume=0.1))
        assert result.state is OrderState.REJECTED and "not supported" in result.reason
        assert e.fake.calls.count("order_send") == 0
    finally:
        e.close()


# --------------------------------------------------------------------------- netting


@pytest.mark.parametrize("mode", [M.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
                                  M.ACCOUNT_MARGIN_MODE_EXCHANGE])
def test_netting_and_exchange_net_on_the_server(mode: int, journal: Journal) -> None:
    e = Env(mode)
    try:
        router = OrderRouter(journal, e.broker)
        assert not e.broker.hedging()
        router.submit(intent(1, side=OrderSide.BUY, volume=0.1))
        router.submit(intent(2, side=OrderSide.BUY, volume=0.1))
        assert e.our_tickets() == [(M.POSITION_TYPE_BUY, 0.2)]
        reverse = router.submit(intent(3, side=OrderSide.SELL, volume=0.5))
        assert reverse.state is OrderState.FILLED
        assert all("position" not in r for r in e.fake.sent_requests)  # one plain request
        assert e.our_tickets() == [(M.POSITION_TYPE_SELL, pytest.approx(0.3))]
        assert e.broker.positions()["EURUSD"].volume == pytest.approx(-0.3)
        entries = [d.entry for d in sorted(e.fake.deals.values(), key=lambda d: d.ticket)]
        assert entries == [M.DEAL_ENTRY_IN, M.DEAL_ENTRY_IN, M.DEAL_ENTRY_INOUT]
        journal.commit()
        report = reconcile(journal, e.broker, "mt5-acct", since=SINCE)
        assert not report.refuse_to_trade, report.reasons
        assert journal_net_positions(journal, "mt5-acct") == {"EURUSD": pytest.approx(-0.3)}
    finally:
        e.close()


# --------------------------------------------------------------------------- point


def test_point_comes_from_symbol_info(hedging: Env) -> None:
    hedging.fake.add_symbol("USDJPY", digits=3, bid=150.0)
    assert hedging.broker.point("EURUSD") == pytest.approx(1e-5)
    assert hedging.broker.point("USDJPY") == pytest.approx(1e-3)
    assert hedging.broker.point("NOPE") is None  # the terminal cannot tell
