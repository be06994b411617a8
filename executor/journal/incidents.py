"""Incidents: what an operator must look at (a halt, a failed rollback, a malformed
approval), with who acknowledged or resolved it and why. Listeners (alerts, metrics) hear
of each incident once it is committed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from executor.journal.models import IncidentRow
from executor.journal.tables import INCIDENTS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import utcnow


class IncidentRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        # Called after an incident is committed: (id, severity, kind, message).
        self.listeners: list[Callable[[int, str, str, str], None]] = []

    def open_incident(self, severity: str, kind: str, message: str,
                      details: dict[str, Any] | None = None) -> int:
        with self._uow.lock:
            incident = self._uow.insert(INCIDENTS, dict(
                at=utcnow(), severity=severity, kind=kind, message=message, status="open",
                details=details))
            self._uow.commit(durable=True)
        for listener in self.listeners:
            with contextlib.suppress(Exception):  # escalation must never break the journal
                listener(incident, severity, kind, message)
        return incident

    def set_incident_status(self, incident_id: int, status: str, operator: str,
                            note: str) -> bool:
        """acknowledged | resolved, with who and why appended to the incident's details."""
        with self._uow.lock:
            conn = self._uow.conn()
            row = conn.execute(select(INCIDENTS).where(INCIDENTS.c.id == incident_id)).first()
            if row is None:
                return False
            details = dict(row.details or {})
            history = list(details.get("history", []))
            history.append({"at": utcnow().isoformat(), "status": status,
                            "operator": operator, "note": note})
            details["history"] = history
            conn.execute(update(INCIDENTS).where(INCIDENTS.c.id == incident_id)
                         .values(status=status, details=details))
            self._uow.commit(durable=True)
            return True

    def all(self, status: str | None = None) -> list[IncidentRow]:
        """Incidents in the order they were opened: all, or those in ``status``."""
        stmt = select(INCIDENTS).order_by(INCIDENTS.c.id)
        if status is not None:
            stmt = stmt.where(INCIDENTS.c.status == status)
        return [IncidentRow(**r._mapping) for r in self._uow.conn().execute(stmt)]
