"""``FundingPoller``: a swap account's funding payments journaled as costs, read once after
each settlement (Binance USD-M: every 8 h from 00:00 UTC, "Introduction to Binance
Futures Funding Rates"), never more REST than that; a failed read retried at the next
cycle; a payment read twice recorded once; a restart resuming from the newest payment
the journal holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import VenueError
from executor.brokers.ccxt_swap_account import FundingPayment
from executor.engine.funding import SETTLE_DELAY, FundingPoller
from executor.journal.costs import FUNDING
from executor.journal.store import Journal

ACCOUNT = "bn-swap"
EIGHT = timedelta(hours=8)
WEEK = timedelta(days=7)
T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)  # a settlement


def payment(n: int, at: datetime, amount: float = -0.03) -> FundingPayment:
    return FundingPayment(f"binanceusdm:funding:{n}", "BTC/USDT:USDT", at, amount, "USDT")


class Exchange:
    """The broker's ``funding(since)``: the payments at or after ``since`` (Binance's
    ``startTime`` is inclusive); ``failures`` reads raise first."""

    def __init__(self) -> None:
        self.payments: list[FundingPayment] = []
        self.reads: list[datetime] = []
        self.failures = 0

    def funding(self, since: datetime) -> list[FundingPayment]:
        self.reads.append(since)
        if self.failures:
            self.failures -= 1
            raise VenueError("binanceusdm GET /fapi/v1/income: 503 Service Unavailable")
        return [p for p in self.payments if p.time >= since]


@pytest.fixture
def journal(sqlite_url: str) -> Iterator[Journal]:
    with closing(Journal.open(sqlite_url)) as j:
        yield j


def poller(journal: Journal, exchange: Exchange) -> FundingPoller:
    return FundingPoller(journal, exchange, ACCOUNT, interval=EIGHT, lookback=WEEK)


def recorded(journal: Journal) -> list[tuple[str, float]]:
    return [(c.cost_id, c.amount) for c in journal.costs.costs(ACCOUNT)]


def test_one_read_per_settlement_and_none_in_between(journal: Journal) -> None:
    ex = Exchange()
    poll = poller(journal, ex)
    poll(T0 + timedelta(minutes=30))  # start-up: read once, from the lookback
    assert ex.reads == [T0 + timedelta(minutes=30) - WEEK]
    for minutes in range(31, 8 * 60):  # one cycle a minute until the next settlement
        poll(T0 + timedelta(minutes=minutes))
    poll(T0 + EIGHT + SETTLE_DELAY - timedelta(seconds=1))  # posted? not yet
    assert len(ex.reads) == 1
    ex.payments.append(payment(1, T0 + EIGHT))
    assert poll(T0 + EIGHT + SETTLE_DELAY) == 1
    assert len(ex.reads) == 2
    assert recorded(journal) == [("binanceusdm:funding:1", -0.03)]
    poll(T0 + EIGHT + timedelta(minutes=5))
    assert len(ex.reads) == 2


def test_a_failed_read_is_tried_next_cycle_and_loses_nothing(journal: Journal) -> None:
    ex = Exchange()
    ex.payments.append(payment(1, T0))
    ex.failures = 2
    poll = poller(journal, ex)
    now = T0 + timedelta(minutes=2)
    assert poll(now) == 0 and poll(now + timedelta(minutes=1)) == 0  # exchange away
    assert recorded(journal) == []
    assert poll(now + timedelta(minutes=2)) == 1  # the next cycle, the same settlement
    assert recorded(journal) == [("binanceusdm:funding:1", -0.03)]
    assert len(ex.reads) == 3


def test_a_payment_read_twice_is_recorded_once(journal: Journal) -> None:
    """Each read reaches one interval behind the newest payment: the same row comes back."""
    ex = Exchange()
    ex.payments += [payment(1, T0), payment(2, T0 + EIGHT, 0.01)]
    poll = poller(journal, ex)
    assert poll(T0 + EIGHT + timedelta(minutes=2)) == 2
    ex.payments.append(payment(3, T0 + 2 * EIGHT))
    assert poll(T0 + 2 * EIGHT + timedelta(minutes=2)) == 1
    assert ex.reads[-1] == T0  # the newest recorded (T0 + 8 h), less an interval
    assert [cid for cid, _ in recorded(journal)] == [
        "binanceusdm:funding:1", "binanceusdm:funding:2", "binanceusdm:funding:3"]


def test_after_a_restart_reading_resumes_from_the_newest_recorded(journal: Journal) -> None:
    ex = Exchange()
    ex.payments.append(payment(1, T0))
    poller(journal, ex)(T0 + timedelta(minutes=2))
    journal.commit()
    # Down for two days; the payments made meanwhile are read on the first cycle back.
    ex.payments += [payment(n, T0 + n * EIGHT) for n in range(2, 8)]
    back = T0 + 2 * timedelta(days=1) + timedelta(hours=3)
    restarted = poller(journal, ex)
    assert restarted(back) == 6
    assert ex.reads[-1] == T0 - EIGHT  # not the lookback's week
    assert len(recorded(journal)) == 7


def test_with_nothing_recorded_later_reads_reach_only_behind_the_last(
        journal: Journal) -> None:
    """A flat account pays nothing: a read after the first starts one interval before
    the settlement the previous read covered, not a week back every time."""
    ex = Exchange()
    poll = poller(journal, ex)
    poll(T0 + timedelta(minutes=2))
    poll(T0 + EIGHT + timedelta(minutes=2))
    assert ex.reads[-1] == T0 - EIGHT


def test_the_costs_are_the_accounts_own(journal: Journal) -> None:
    ex = Exchange()
    ex.payments.append(payment(1, T0))
    poller(journal, ex)(T0 + timedelta(minutes=2))
    assert journal.costs.costs("another-account") == []
    assert journal.costs.last_time(ACCOUNT, FUNDING) == T0
