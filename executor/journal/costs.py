"""Costs of holding a position that no fill shows: a perpetual swap's funding payments,
recorded once each by the exchange's id (``executor/engine/funding.py`` reads them).

The day's PnL (``day_figures``), the report's trades (``executor/reports/metrics.py``)
and the status equity count them beside fees; the live guardrails see them already, in
the equity the exchange reports (Binance books funding into the wallet balance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from executor.journal.tables import COSTS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import aware, utcnow

FUNDING = "funding"


@dataclass(frozen=True, slots=True)
class Cost:
    """One payment: ``amount`` received in ``currency`` (negative: paid)."""

    cost_id: str  # the exchange's id, unique per kind ("binanceusdm:funding:<tranId>")
    kind: str
    symbol: str
    time: datetime
    amount: float
    currency: str


class CostRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def record_costs(self, account: str, costs: Sequence[Cost]) -> list[Cost]:
        """Record the costs not recorded yet; the new ones. Commits with the unit of work
        (a crash before it loses nothing: the next read finds them again)."""
        if not costs:
            return []
        uow = self._uow
        with uow.lock:
            ids = {c.cost_id for c in costs}
            known = set(uow.conn().execute(select(COSTS.c.cost_id).where(
                COSTS.c.account == account, COSTS.c.cost_id.in_(ids))).scalars())
            new = list({c.cost_id: c for c in costs if c.cost_id not in known}.values())
            now = utcnow()
            for c in new:
                uow.write(COSTS, dict(account=account, cost_id=c.cost_id, kind=c.kind,
                                      symbol=c.symbol, time=c.time, amount=c.amount,
                                      currency=c.currency, recorded_at=now))
            return new

    def last_time(self, account: str, kind: str) -> datetime | None:
        """The newest recorded cost's time: where a restarted reader resumes."""
        return aware(self._uow.conn().execute(select(func.max(COSTS.c.time)).where(
            COSTS.c.account == account, COSTS.c.kind == kind)).scalar())

    def costs(self, account: str | None = None, *, since: datetime | None = None,
              until: datetime | None = None) -> list[Cost]:
        """Costs in time order: all, of one account, in ``[since, until)``."""
        stmt = select(COSTS).order_by(COSTS.c.time, COSTS.c.cost_id)
        if account is not None:
            stmt = stmt.where(COSTS.c.account == account)
        if since is not None:
            stmt = stmt.where(COSTS.c.time >= since)
        if until is not None:
            stmt = stmt.where(COSTS.c.time < until)
        return [Cost(r.cost_id, r.kind, r.symbol, r.time, float(r.amount), r.currency)
                for r in self._uow.conn().execute(stmt)]
