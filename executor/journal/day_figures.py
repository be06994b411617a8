"""The figures of one account's day for the daily summary: PnL (realised, fees and the
funding a perpetual swap paid or received, ``costs``), orders, approvals and incidents in
a time window, read in a few aggregate queries (the summary runs on its own thread with a
journal of its own, never the trading cycle's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from executor.journal.tables import APPROVALS, COSTS, DAY_BASELINES, FILLS, INCIDENTS, ORDERS
from executor.journal.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class DayFigures:
    since: datetime
    until: datetime
    start_equity: float | None  # the newest day baseline (the day's first equity reading)
    realised_pnl: float
    fees: float
    fills: int
    orders: dict[str, int] = field(default_factory=dict)  # created in the window, by state
    approvals: dict[str, int] = field(default_factory=dict)  # queued / decided, by status
    incidents: dict[str, int] = field(default_factory=dict)  # opened, by severity
    open_incidents: int = 0  # still open now, whenever opened
    funding: float = 0.0  # received (negative: paid), as the exchange booked it

    @property
    def net_pnl(self) -> float:
        """Realised PnL less fees, with funding: what the day's trading earned."""
        return self.realised_pnl - self.fees + self.funding


def day_figures(uow: UnitOfWork, account: str, since: datetime, until: datetime) -> DayFigures:
    conn = uow.conn()
    in_orders = select(ORDERS.c.client_order_id).where(ORDERS.c.account == account)
    fills = conn.execute(select(
        func.count(), func.coalesce(func.sum(FILLS.c.realized_pnl), 0.0),
        func.coalesce(func.sum(FILLS.c.fee), 0.0)).where(
        FILLS.c.client_order_id.in_(in_orders), FILLS.c.time >= since,
        FILLS.c.time < until)).one()
    orders: dict[Any, Any] = dict(conn.execute(select(ORDERS.c.state, func.count()).where(
        ORDERS.c.account == account, ORDERS.c.created_at >= since,
        ORDERS.c.created_at < until).group_by(ORDERS.c.state)).tuples().all())
    queued = conn.execute(select(func.count()).where(
        APPROVALS.c.account == account, APPROVALS.c.created_at >= since,
        APPROVALS.c.created_at < until)).scalar() or 0
    decided: dict[Any, Any] = dict(conn.execute(select(APPROVALS.c.status, func.count()).where(
        APPROVALS.c.account == account, APPROVALS.c.decided_at >= since,
        APPROVALS.c.decided_at < until).group_by(APPROVALS.c.status)).tuples().all())
    incidents: dict[Any, Any] = dict(conn.execute(select(INCIDENTS.c.severity, func.count()).where(
        INCIDENTS.c.at >= since, INCIDENTS.c.at < until).group_by(
        INCIDENTS.c.severity)).tuples().all())
    still_open = conn.execute(select(func.count()).where(
        INCIDENTS.c.status == "open")).scalar() or 0
    funding = conn.execute(select(func.coalesce(func.sum(COSTS.c.amount), 0.0)).where(
        COSTS.c.account == account, COSTS.c.time >= since, COSTS.c.time < until)).scalar()
    start = conn.execute(select(DAY_BASELINES.c.start_equity).where(
        DAY_BASELINES.c.account == account).order_by(DAY_BASELINES.c.day.desc())
        .limit(1)).scalar()
    return DayFigures(since, until, None if start is None else float(start),
                      float(fills[1]), float(fills[2]), int(fills[0]),
                      {str(k): int(v) for k, v in orders.items()},
                      {"queued": int(queued), **{str(k): int(v) for k, v in decided.items()}},
                      {str(k): int(v) for k, v in incidents.items()}, int(still_open),
                      float(funding or 0.0))
