"""Shadow mode: the desk's EA deals, journaled once each (by ticket) beside our own
intents, so a report can pair them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from executor.journal.models import EaDealRow
from executor.journal.tables import EA_DEALS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import aware


class EaDealRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def record_ea_deals(self, deals: Sequence[Any]) -> int:
        """Journal EA deals once each (by ticket); returns how many were new."""
        if not deals:
            return 0
        conn = self._uow.conn()
        tickets = [d.ticket for d in deals]
        known = {r.ticket for r in conn.execute(
            select(EA_DEALS.c.ticket).where(EA_DEALS.c.ticket.in_(tickets)))}
        run_id = self._uow.run_id
        new = [{"ticket": d.ticket, "symbol": d.symbol, "time": d.time, "side": d.side,
                "price": d.price, "volume": d.volume, "entry": d.entry, "sl": d.sl,
                "tp": d.tp, "magic": d.magic, "comment": d.comment, "run_id": run_id}
               for d in deals if d.ticket not in known]
        if new:
            conn.execute(insert(EA_DEALS), new)
        return len(new)

    def all(self, since: datetime | None = None) -> list[EaDealRow]:
        """Deals in time order: all, or from ``since`` on."""
        stmt = select(EA_DEALS).order_by(EA_DEALS.c.time, EA_DEALS.c.ticket)
        if since is not None:
            stmt = stmt.where(EA_DEALS.c.time >= since)
        return [EaDealRow(**r._mapping) for r in self._uow.conn().execute(stmt)]

    def last_ea_deal_time(self) -> datetime | None:
        return aware(self._uow.conn().execute(select(func.max(EA_DEALS.c.time))).scalar())
