"""A perpetual swap's funding payments journaled as costs (issue 19).

Every funding interval a perpetual's longs and shorts pay each other the funding rate on
their notional: a cost of holding the position that no order of ours shows. Binance
settles USDⓈ-M funding every 8 hours (00:00, 08:00, 16:00 UTC) unless a symbol's
interval was shortened ("Get Funding Rate Info", ``GET /fapi/v1/fundingInfo``:
``fundingIntervalHours`` 4 or 1), and books each payment in the income history ("Get
Income History", ``GET /fapi/v1/income``, ``incomeType`` FUNDING_FEE: ``tranId`` unique
per income type, the last three months kept).

``FundingPoller`` runs as a ``before_cycle`` hook of the live daemon, so at most once per
cycle (once per bar), and asks the exchange only when a settlement time has passed since
its last read (plus ``SETTLE_DELAY`` for the payment to be posted): one income read per
traded symbol per settlement, none in between. Each read reaches back to the newest
payment recorded (less one interval: a payment posted late, or one symbol's posted before
another's, is read again), so:
- a failed read records nothing and advances nothing: the next cycle tries again;
- a payment read twice (the overlap, a restart) is recorded once: the journal keys costs
  by the exchange's id;
- after a restart the first cycle reads from the newest payment the journal holds, or
  ``lookback`` back when it holds none.
The interval only decides how soon a payment is journaled, never whether.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import structlog

from domain.errors import VenueError
from executor.brokers.ccxt_swap_account import FundingPayment
from executor.journal.costs import FUNDING, Cost
from executor.journal.store import Journal

if TYPE_CHECKING:
    from executor.settings import Settings
    from executor.wiring import Daemon

log = structlog.get_logger("dta.funding")

SETTLE_DELAY = timedelta(minutes=1)  # a settlement's payments read this long after it


class PaysFunding(Protocol):
    def funding(self, since: datetime) -> Sequence[FundingPayment]: ...


class FundingPoller:
    def __init__(self, journal: Journal, broker: PaysFunding, account: str, *,
                 interval: timedelta, lookback: timedelta) -> None:
        self.journal = journal
        self.broker = broker
        self.account = account
        self.interval = interval
        self.lookback = lookback
        self.covered: datetime | None = None  # the newest settlement the last read saw
        self.reads = 0

    def settled(self, now: datetime) -> datetime:
        """The newest settlement time whose payments are posted by ``now`` (intervals
        counted from midnight UTC, as Binance's are)."""
        step = int(self.interval.total_seconds())
        t = int((now - SETTLE_DELAY).timestamp())
        return datetime.fromtimestamp(t - t % step, UTC)

    def __call__(self, now: datetime) -> int:
        """Read and journal the payments when a settlement passed since the last read;
        how many were new."""
        settled = self.settled(now)
        if self.covered is not None and settled <= self.covered:
            return 0
        last = self.journal.costs.last_time(self.account, FUNDING)
        since = now - self.lookback if last is None else last - self.interval
        if self.covered is not None:  # nothing older than the last read's reach is new
            since = max(since, self.covered - self.interval)
        try:
            payments = self.broker.funding(since)
        except VenueError as exc:
            log.warning("funding_read_failed", since=since.isoformat(), error=str(exc)[:200],
                        retry="next cycle")
            return 0
        self.reads += 1
        new = self.journal.costs.record_costs(self.account, [
            Cost(p.payment_id, FUNDING, p.symbol, p.time, p.amount, p.currency)
            for p in payments])
        self.covered = settled
        if new:
            log.info("funding_recorded", payments=len(new),
                     amount=round(sum(c.amount for c in new), 8), currency=new[0].currency)
        return len(new)


def watch_funding(settings: Settings, daemon: Daemon, journal: Journal) -> None:
    """Journal the funding of a live account whose broker pays it (a perpetual-swap
    account), at the start of every cycle."""
    broker = daemon.live.broker
    if not callable(getattr(broker, "funding", None)):
        return
    swap = settings.broker.swap
    daemon.executor.before_cycle.append(FundingPoller(
        journal, broker, settings.account,
        interval=timedelta(hours=swap.funding_interval_hours),
        lookback=timedelta(days=settings.broker.ccxt.history_days)))
