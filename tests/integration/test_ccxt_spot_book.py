"""Issue 15 #9: the ccxt spot book against Binance's account semantics (the loopback fake,
the real ``ccxt.binance`` client): a buy's commission is paid in the base asset, a new
account holds no base asset, the balance is the venue's truth, and a restart keeps a
position older than the exchange's trade history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fakes.binance_fake import FakeBinance
from support.builders import a_bar, a_fill
from test_ccxt_broker import ACCOUNT, BAR, intent, make_broker, submitting

from domain import OrderSide, OrderState
from executor.brokers.ccxt_broker import CcxtBroker
from executor.engine.router import OrderRouter
from executor.engine.startup import journal_net_positions, reconcile
from executor.journal.store import Journal

TICK = a_bar(symbol="BTC/USDT", timeframe="M15", time=BAR, open=30_000, high=30_000, low=30_000,
             close=30_000)


@pytest.fixture
def journal(sqlite_url: str) -> Iterator[Journal]:
    j = Journal.open(sqlite_url)
    yield j
    j.close()


def restarted(journal: Journal, fake: FakeBinance) -> CcxtBroker:
    """A broker as ``dta run`` builds it after a restart: restored from the journal."""
    broker = make_broker(fake)
    fills = journal.orders.fills()
    broker.restore(journal.orders.all(ACCOUNT),
                   [a_fill(client_order_id=f.client_order_id, fill_id=f.fill_id, symbol=f.symbol,
                           side=OrderSide(f.side), time=f.time, price=f.price, volume=f.volume,
                           fee=f.fee) for f in fills],
                   [f.kind for f in fills])
    return broker


def test_a_buy_holds_its_amount_less_the_fee_and_the_closing_sell_goes_through() -> None:
    with FakeBinance() as fake:  # a new account: USDT only
        broker = make_broker(fake)
        bought = broker.submit(submitting(intent(1, volume=0.001)))
        assert bought.state is OrderState.FILLED
        broker.on_bar(TICK)
        held = broker.positions()["BTC/USDT"].volume
        assert held == pytest.approx(0.000999)  # 0.001 bought, 0.000001 BTC fee
        assert held == pytest.approx(fake.balances["BTC"])
        # Close with the same volume: cut to what we hold (at the lot step), not refused.
        sold = broker.submit(submitting(intent(2, side=OrderSide.SELL, volume=0.001)))
        assert sold.state is OrderState.FILLED, sold.reason
        assert sold.filled_volume == pytest.approx(0.00099) and "cut" in sold.reason
        broker.on_bar(TICK)
        assert broker.position("BTC/USDT").volume == pytest.approx(fake.balances["BTC"])


def test_a_closing_sell_never_sells_base_asset_that_is_not_ours() -> None:
    with FakeBinance(balances={"USDT": 1_000_000.0, "BTC": 1.0}) as fake:  # 1 BTC not ours
        broker = make_broker(fake)
        broker.submit(submitting(intent(1, volume=0.001)))
        broker.on_bar(TICK)
        broker.submit(submitting(intent(2, side=OrderSide.SELL, volume=0.001)))
        broker.on_bar(TICK)
        ours = broker.position("BTC/USDT").volume
        assert ours == pytest.approx(0.000009)  # the lot step's dust, ours
        assert fake.balances["BTC"] == pytest.approx(1.0 + ours)  # the other 1 BTC intact


def test_fees_paid_in_bnb_leave_the_bought_amount_whole() -> None:
    with FakeBinance(balances={"USDT": 1_000_000.0, "BNB": 1.0}, fees_in_bnb=True) as fake:
        broker = make_broker(fake)
        broker.submit(submitting(intent(1, volume=0.001)))
        fills = broker.on_bar(TICK)
        assert [f.kind for f in fills] == ["entry"]
        assert broker.positions()["BTC/USDT"].volume == pytest.approx(0.001)
        assert fake.balances["BTC"] == pytest.approx(0.001)
        assert fake.balances["BNB"] == pytest.approx(1.0 - 30 * 0.00075 / 300.0)


def test_reconciliation_checks_the_journal_against_the_balance(journal: Journal) -> None:
    """Both sides used to come from the same trade list: a journal that believes in more
    base asset than the account holds passed."""
    with FakeBinance() as fake:
        broker = restarted(journal, fake)
        OrderRouter(journal, broker).submit(intent(1, volume=0.01))
        first = reconcile(journal, broker, ACCOUNT)  # journals the fills
        assert first.refuse_to_trade is False, first.reasons
        fake.balances["BTC"] = 0.0  # the BTC left the account (a withdrawal)
        report = reconcile(journal, restarted(journal, fake), ACCOUNT)
        assert report.refuse_to_trade is True
        [mismatch] = report.position_mismatches
        assert (mismatch.journal, mismatch.broker) == (
            journal_net_positions(journal, ACCOUNT)["BTC/USDT"], 0.0)


def test_a_position_older_than_the_trade_history_survives_a_restart(
        journal: Journal) -> None:
    with FakeBinance() as fake:
        month_ago = time.time() - 30 * 86_400
        fake.clock = lambda: month_ago  # the buy was a month ago
        broker = restarted(journal, fake)
        broker.exchange.load_time_difference()
        OrderRouter(journal, broker).submit(intent(1, volume=0.01))
        reconcile(journal, broker, ACCOUNT,
                  since=datetime.fromtimestamp(month_ago, UTC) - timedelta(days=1))
        fake.clock = time.time  # today; the trade is outside history_days (7)
        after = restarted(journal, fake)
        report = reconcile(journal, after, ACCOUNT)
        assert report.refuse_to_trade is False, report.reasons
        held = fake.balances["BTC"]
        assert after.positions()["BTC/USDT"].volume == pytest.approx(held)
        assert journal_net_positions(journal, ACCOUNT) == {"BTC/USDT": pytest.approx(held)}
        assert held == pytest.approx(0.00999)
