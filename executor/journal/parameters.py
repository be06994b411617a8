"""Parameter versions and their events (activate, rollback, ...), with the evidence behind
a version: the store ``guardrails.params`` works on (``ParamStore``). Every change commits
durably at once: a restarted daemon must come back on the version that was active."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from domain import ParameterSet
from executor.journal.runs import RunRepository
from executor.journal.tables import PARAM_EVENTS, PARAM_VERSIONS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import utcnow
from guardrails.params import ParamEvent, ParamVersion


class ParamRepository:
    """Implements ``guardrails.params.ParamStore``."""

    def __init__(self, uow: UnitOfWork, runs: RunRepository) -> None:
        self._uow = uow
        self._runs = runs  # owns the content-addressed parameter-set rows

    def param_versions(self) -> list[ParamVersion]:
        rows = self._uow.conn().execute(
            select(PARAM_VERSIONS).order_by(PARAM_VERSIONS.c.version))
        return [ParamVersion(r.version, r.hash, r.content or {}, r.parent, r.author, r.reason,
                             r.created_at, bool(r.bad)) for r in rows]

    def param_events(self) -> list[ParamEvent]:
        rows = self._uow.conn().execute(select(PARAM_EVENTS).order_by(PARAM_EVENTS.c.id))
        return [ParamEvent(r.id, r.at, r.version, r.action, r.operator, r.reason, r.trigger)
                for r in rows]

    def add_param_version(self, content: dict[str, Any], parent: int | None, author: str,
                          reason: str, evidence: dict[str, Any] | None = None) -> ParamVersion:
        uow = self._uow
        with uow.lock:
            params = ParameterSet(content)
            self._runs.save_parameter_set(params)
            now = utcnow()
            version = uow.insert(PARAM_VERSIONS, dict(
                hash=params.content_hash, content=content, parent=parent, author=author,
                reason=reason, created_at=now, bad=False, evidence=evidence))
            uow.commit(durable=True)
            return ParamVersion(version, params.content_hash, content, parent, author, reason,
                                now)

    def attach_evidence(self, version: int, evidence: dict[str, Any]) -> None:
        with self._uow.lock:
            self._uow.conn().execute(update(PARAM_VERSIONS).where(
                PARAM_VERSIONS.c.version == version).values(evidence=evidence))
            self._uow.commit(durable=True)

    def param_evidence(self, version: int) -> dict[str, Any] | None:
        row = self._uow.conn().execute(select(PARAM_VERSIONS.c.evidence).where(
            PARAM_VERSIONS.c.version == version)).first()
        return dict(row.evidence) if row is not None and row.evidence else None

    def add_param_event(self, version: int, action: str, operator: str, reason: str,
                        trigger: str | None = None) -> None:
        with self._uow.lock:
            self._uow.insert(PARAM_EVENTS, dict(
                at=utcnow(), version=version, action=action, operator=operator,
                reason=reason, trigger=trigger))
            self._uow.commit(durable=True)

    def mark_param_bad(self, version: int) -> None:
        with self._uow.lock:
            self._uow.conn().execute(update(PARAM_VERSIONS).where(
                PARAM_VERSIONS.c.version == version).values(bad=True))
            self._uow.commit(durable=True)

    def latest_param_event_id(self) -> int:
        """Cheap change detection for a running daemon: a new event means re-read."""
        p = self._uow.prep("max_param_event", lambda: select(func.max(PARAM_EVENTS.c.id)))
        return int(p.scalar(self._uow.dbapi()) or 0)
