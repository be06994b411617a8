"""Approval requests: a decision held for an operator's yes or no, then executed, rejected
or expired. Status changes are compare-and-set, so an approval and its expiry cannot both
win."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select, update

from executor.journal.models import ApprovalRow
from executor.journal.tables import APPROVALS
from executor.journal.unit_of_work import UnitOfWork


class ApprovalRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        # Hear of each request queued, once it is committed (a link to it then works).
        self.listeners: list[Callable[[ApprovalRow], None]] = []

    def create_approval(self, *, decision_id: int, account: str, symbol: str, direction: str,
                        intent: dict[str, Any], why: str, created_at: datetime,
                        expires_at: datetime) -> int:
        values: dict[str, Any] = dict(decision_id=decision_id, account=account, symbol=symbol,
                      direction=direction, intent=intent, why=why, created_at=created_at,
                      expires_at=expires_at, status="pending")
        approval_id = self._uow.insert(APPROVALS, values)
        if self.listeners:
            row = ApprovalRow(id=approval_id, **values)
            self._uow.after_commit += [partial(f, row) for f in self.listeners]
        return approval_id

    def all(self, status: str | None = None) -> list[ApprovalRow]:
        """Approvals in creation order: all, or those in ``status``."""
        if status is None:
            stmt = select(APPROVALS).order_by(APPROVALS.c.id)
            return [ApprovalRow(**r._mapping) for r in self._uow.conn().execute(stmt)]
        # Polled by the running daemon every second: prepared.
        p = self._uow.prep("approvals_by_status", lambda: select(APPROVALS).where(
            APPROVALS.c.status == bindparam("status")).order_by(APPROVALS.c.id))
        return [ApprovalRow(**r) for r in p.rows(self._uow.dbapi(), {"status": status})]

    def get_approval(self, approval_id: int) -> ApprovalRow | None:
        row = self._uow.conn().execute(
            select(APPROVALS).where(APPROVALS.c.id == approval_id)).first()
        return ApprovalRow(**row._mapping) if row else None

    def set_approval_status(self, approval_id: int, status: str, *, expected: str,
                            operator: str | None = None, note: str | None = None,
                            decided_at: datetime | None = None,
                            client_order_id: str | None = None, commit: bool = True) -> bool:
        """Compare-and-set on the status, so an approval and its expiry cannot both win.
        ``commit=False``: the change commits with the caller's next (durable) commit, as
        the ``executed`` mark does with its order's row."""
        with self._uow.lock:
            values: dict[str, Any] = {"status": status}
            if operator is not None:
                values["operator"] = operator
            if note is not None:
                values["note"] = note
            if decided_at is not None:
                values["decided_at"] = decided_at
            if client_order_id is not None:
                values["client_order_id"] = client_order_id
            result = self._uow.conn().execute(update(APPROVALS).where(
                APPROVALS.c.id == approval_id, APPROVALS.c.status == expected).values(**values))
            if commit:
                self._uow.commit(durable=True)
            return bool(result.rowcount)
