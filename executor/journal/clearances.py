"""Clearances: a strategy's promotions and demotions (paper -> shadow -> live) on an
account and the sign-offs behind them, each with who gave it, in which role, and the
evidence they saw. Implements ``guardrails.clearance.ClearanceStore``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from executor.journal.models import ClearanceRow
from executor.journal.tables import CLEARANCES
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import utcnow


class ClearanceRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def record_clearance(self, *, account: str, strategy: str, action: str, mode: str,
                         person: str, note: str, role: str | None = None,
                         evidence: dict[str, Any] | None = None) -> int:
        with self._uow.lock:
            row = self._uow.insert(CLEARANCES, dict(
                at=utcnow(), account=account, strategy=strategy, action=action, mode=mode,
                role=role, person=person, note=note, evidence=evidence))
            self._uow.commit(durable=True)
            return row

    def clearances(self, account: str | None = None,
                   strategy: str | None = None) -> list[ClearanceRow]:
        """Clearances in the order given: all, of one account, of one strategy."""
        stmt = select(CLEARANCES).order_by(CLEARANCES.c.id)
        if account is not None:
            stmt = stmt.where(CLEARANCES.c.account == account)
        if strategy is not None:
            stmt = stmt.where(CLEARANCES.c.strategy == strategy)
        return [ClearanceRow(**r._mapping) for r in self._uow.conn().execute(stmt)]
