"""Provider telemetry and provider events: one row per model call (the decision's own and
late answers), and the events an operator's disable/enable or a circuit breaker's
transition leave. Implements ``ensemble.late.CallJournal``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from executor.journal.models import ProviderCallRow, ProviderEventRow
from executor.journal.tables import PROVIDER_CALLS, PROVIDER_EVENTS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import OPERATOR_ACTIONS, storable_text, utcnow


class ProviderCallRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def record_provider_call(self, values: dict[str, Any]) -> None:
        self._uow.write(PROVIDER_CALLS, {"at": utcnow(), **{
            k: storable_text(v) if isinstance(v, str) else v for k, v in values.items()}})

    def all(self, provider: str | None = None, limit: int = 200) -> list[ProviderCallRow]:
        """The newest ``limit`` calls (of ``provider``), oldest first."""
        t = PROVIDER_CALLS
        stmt = select(t).order_by(t.c.id.desc()).limit(limit)
        if provider is not None:
            stmt = stmt.where(t.c.provider == provider)
        return [ProviderCallRow(**r._mapping) for r in self._uow.conn().execute(stmt)][::-1]

    def record_provider_event(self, provider: str, action: str, operator: str,
                              reason: str) -> None:
        with self._uow.lock:
            self._uow.insert(PROVIDER_EVENTS, dict(
                at=utcnow(), provider=provider, action=action, operator=operator,
                reason=reason))
            self._uow.commit(durable=True)

    def disabled_providers(self) -> dict[str, ProviderEventRow]:
        """Providers whose newest operator event is ``disable``, with that event."""
        t = PROVIDER_EVENTS
        latest: dict[str, ProviderEventRow] = {}
        for r in self._uow.conn().execute(select(t).where(t.c.action.in_(OPERATOR_ACTIONS))
                                          .order_by(t.c.id)):
            latest[r.provider] = ProviderEventRow(**r._mapping)
        return {p: e for p, e in latest.items() if e.action == "disable"}

    def breaker_events(self) -> dict[str, ProviderEventRow]:
        """Each provider's newest breaker transition (action ``breaker_<state>``, journaled
        by the daemon: ``ensemble.late``)."""
        t = PROVIDER_EVENTS
        newest = (select(func.max(t.c.id))
                  .where(t.c.action.startswith("breaker_", autoescape=True))
                  .group_by(t.c.provider))
        return {r.provider: ProviderEventRow(**r._mapping)
                for r in self._uow.conn().execute(select(t).where(t.c.id.in_(newest)))}

    def latest_provider_event_id(self) -> int:
        """The newest operator (dis|en)able event: a breaker transition is no reason for
        the daemon to rebuild its ensemble (which would reset every breaker)."""
        t = PROVIDER_EVENTS
        p = self._uow.prep("max_provider_event", lambda: select(func.max(t.c.id)).where(
            (t.c.action == OPERATOR_ACTIONS[0]) | (t.c.action == OPERATOR_ACTIONS[1])))
        return int(p.scalar(self._uow.dbapi()) or 0)
