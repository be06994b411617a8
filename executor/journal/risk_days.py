"""What the daily limits continue from after a restart: each day's equity baseline
(written once, the day's first reading) and the broker errors of the error window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from executor.journal.tables import BROKER_ERRORS, DAY_BASELINES
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import utcnow


class RiskDayRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def record_day_start(self, account: str, day: datetime, equity: float) -> None:
        """The day's baseline, written once: the first reading of the day stands, whatever
        restarts or parameter versions follow (commits with the cycle). Prepared, as an
        INSERT that leaves an existing row alone: it runs at every day's first bar."""
        uow = self._uow

        def build() -> Any:
            from sqlalchemy.dialects import postgresql, sqlite

            dialect_insert = sqlite.insert if uow.dialect == "sqlite" else postgresql.insert
            return dialect_insert(DAY_BASELINES).on_conflict_do_nothing(
                index_elements=["account", "day"])

        with uow.lock:
            p = uow.prep("day_start", build, ("account", "day", "start_equity", "at"))
            p.write(uow.dbapi(), dict(account=account, day=day, start_equity=equity,
                                      at=utcnow()))

    def day_start(self, account: str) -> tuple[datetime, float] | None:
        """The newest day baseline of ``account``: (midnight UTC, start equity)."""
        row = self._uow.conn().execute(
            select(DAY_BASELINES.c.day, DAY_BASELINES.c.start_equity)
            .where(DAY_BASELINES.c.account == account)
            .order_by(DAY_BASELINES.c.day.desc()).limit(1)).first()
        return None if row is None else (row.day, row.start_equity)

    def record_broker_error(self, account: str, at: datetime, kind: str,
                            detail: str = "") -> None:
        with self._uow.lock:
            self._uow.conn().execute(insert(BROKER_ERRORS).values(
                account=account, at=at, kind=kind, detail=detail[:500]))

    def broker_error_times(self, account: str, limit: int) -> list[datetime]:
        """The times of ``account``'s newest ``limit`` broker errors, oldest first."""
        rows = self._uow.conn().execute(
            select(BROKER_ERRORS.c.at).where(BROKER_ERRORS.c.account == account)
            .order_by(BROKER_ERRORS.c.at.desc(), BROKER_ERRORS.c.id.desc())
            .limit(limit)).all()
        return [r.at for r in reversed(rows)]
