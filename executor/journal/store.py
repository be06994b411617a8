"""The journal: the daemon's memory and the operator's evidence.

``Journal`` composes the unit of work (``unit_of_work.py``: session, durable commit,
per-bar buffers, checkpoints; its docstring has the write discipline) and one repository
per aggregate, each an attribute: ``journal.orders.record_fill(...)``,
``active_version(journal.params)``. Reads for the CLI and reports are
``journal.queries`` (``read_models.py``).

| attribute        | module              | aggregate                                          |
|------------------|---------------------|----------------------------------------------------|
| ``runs``         | ``runs.py``         | runs, processed and rejected bars, parameter sets  |
| ``decisions``    | ``decisions.py``    | proposals, decisions, verdicts                     |
| ``orders``       | ``orders.py``       | orders, order events, fills                        |
| ``params``       | ``parameters.py``   | parameter versions, events, evidence (ParamStore)  |
| ``approvals``    | ``approvals.py``    | approval requests                                  |
| ``incidents``    | ``incidents.py``    | incidents and their listeners                      |
| ``provider_calls`` | ``provider_calls.py`` | provider calls and events (CallJournal)        |
| ``clearances``   | ``clearances.py``   | promotion sign-offs                                |
| ``ea_deals``     | ``ea_deals.py``     | the desk EA's deals (shadow mode)                  |
| ``risk_days``    | ``risk_days.py``    | day baselines, broker errors                       |
| ``queries``      | ``read_models.py``  | CLI, governance and report reads, ``trace``        |
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

from domain.errors import JournalError
from executor.journal import database
from executor.journal.approvals import ApprovalRepository
from executor.journal.clearances import ClearanceRepository
from executor.journal.database import make_engine, open_engine
from executor.journal.decisions import DecisionRepository
from executor.journal.ea_deals import EaDealRepository
from executor.journal.incidents import IncidentRepository
from executor.journal.models import KillSwitchEventRow
from executor.journal.orders import OrderRepository
from executor.journal.parameters import ParamRepository
from executor.journal.prepared import Prepared
from executor.journal.provider_calls import ProviderCallRepository
from executor.journal.read_models import JournalQueries
from executor.journal.risk_days import RiskDayRepository
from executor.journal.runs import RunRepository
from executor.journal.tables import KILL_EVENTS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import utcnow

__all__ = ["STATE_TTL_S", "Journal", "KillSwitchState", "make_engine"]

_STATE_COLUMNS = (KILL_EVENTS.c.action, KILL_EVENTS.c.operator, KILL_EVENTS.c.reason,
                  KILL_EVENTS.c.at, KILL_EVENTS.c.trigger)
# How long a running daemon may act on a cached trading state read from another process.
STATE_TTL_S = 0.25


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    """The newest trading-state event: ``engage`` (HALTED), ``reduce`` (REDUCING) or
    ``release`` (ACTIVE). ``engaged`` is true for anything but ACTIVE."""

    engaged: bool
    operator: str | None = None
    reason: str | None = None
    since: datetime | None = None
    trigger: str | None = None
    action: str = "release"


class Journal:
    """Owner of every persisted fact: the unit of work (``uow``) and the repositories that
    write and read through it. Not thread-safe by design (see ``UnitOfWork``)."""

    def __init__(self, engine: Engine) -> None:
        self.uow = uow = UnitOfWork(engine)
        self.runs = RunRepository(uow)
        self.decisions = DecisionRepository(uow)
        self.orders = OrderRepository(uow)
        self.params = ParamRepository(uow, self.runs)
        self.approvals = ApprovalRepository(uow)
        self.incidents = IncidentRepository(uow)
        self.provider_calls = ProviderCallRepository(uow)
        self.clearances = ClearanceRepository(uow)
        self.ea_deals = EaDealRepository(uow)
        self.risk_days = RiskDayRepository(uow)
        self.queries = JournalQueries(uow, self.orders, self.params)
        self._state_cache: dict[str, tuple[float, KillSwitchState]] = {}
        self._reader: Any = None  # a DBAPI connection of its own for the trading state

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, create: bool = True) -> Journal:
        """``create=False`` (every `dta` command but ``db upgrade`` and a paper run): only a
        journal that already has a schema; never a new file, directory or schema, so a
        mistyped URL cannot yield an empty journal with the kill switch released."""
        return cls(open_engine(url, migrate_schema=migrate_schema, create=create))

    def close(self) -> None:
        with self.uow.lock:
            try:
                self.uow.commit()
            finally:
                self._close_reader()
                self.uow.close()

    # ------------------------------------------------------------------ unit of work

    @property
    def dialect(self) -> str:
        return self.uow.dialect

    @property
    def run_id(self) -> int | None:
        return self.uow.run_id

    @property
    def pending_rows(self) -> int:
        return self.uow.pending_rows

    def commit(self, *, durable: bool = False) -> None:
        self.uow.commit(durable=durable)

    def rollback(self) -> None:
        self.uow.rollback()

    def paper_durability(self) -> None:
        self.uow.paper_durability()

    def manual_checkpoints(self) -> None:
        self.uow.manual_checkpoints()

    def checkpoint_due(self, commits: int = 64) -> bool:
        return self.uow.checkpoint_due(commits)

    def checkpoint(self) -> None:
        self.uow.checkpoint()

    # ------------------------------------------------------------------ maintenance

    @property
    def url(self) -> str:
        """The database URL, password masked as SQLAlchemy shows it."""
        return str(self.uow.engine.url)

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """(this journal's schema revision, the code's head revision)."""
        return database.schema_revisions(self.uow.engine)

    def has_version_table(self) -> bool:
        return database.has_version_table(self.uow.engine)

    def probe_write(self) -> None:
        """One committed write outside the session (``dta doctor``); raises what failed."""
        database.probe_write(self.uow.engine)

    # ------------------------------------------------------------------ kill switch

    def record_kill_switch(self, action: str, operator: str, reason: str,
                           trigger: str = "manual", scope: str = "global") -> None:
        with self.uow.lock:
            self.uow.session.add(KillSwitchEventRow(at=utcnow(), action=action, scope=scope,
                                                 operator=operator, reason=reason,
                                                 trigger=trigger))
            self.uow.commit(durable=True)
            self._state_cache.clear()

    def kill_switch_state(self, scope: str = "global", *,
                          fresh: bool = False) -> KillSwitchState:
        """Read from the database, so an operator's `dta kill-switch` in another process
        reaches a running daemon; cached for at most ``STATE_TTL_S`` of wall time (a replay
        decides thousands of times a second). This process's own changes clear the cache.
        ``fresh``: read through the cache (a state change decides on the current state)."""
        cached = self._state_cache.get(scope)
        now = time.monotonic()
        if not fresh and cached is not None and now - cached[0] < STATE_TTL_S:
            return cached[1]
        state = self._read_state(scope)
        self._state_cache[scope] = (now, state)
        return state

    def _read_state(self, scope: str) -> KillSwitchState:
        t = KILL_EVENTS
        p = self.uow.prep("trading_state", lambda: select(*_STATE_COLUMNS).where(
            t.c.scope == bindparam("scope")).order_by(t.c.id.desc()).limit(1))
        with self.uow.lock:
            if self.uow.in_memory:  # one shared connection, and no other process can write
                rows = p.rows(self.uow.dbapi(), {"scope": scope})
            else:
                rows = self._read_committed(p, {"scope": scope})
        if not rows:
            return KillSwitchState(engaged=False)
        r = rows[0]
        return KillSwitchState(r["action"] != "release", r["operator"], r["reason"], r["at"],
                               r["trigger"], r["action"])

    def _read_committed(self, p: Prepared, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows as committed now, by any process, whatever snapshot the session's open
        transaction holds: a DBAPI connection of the journal's own whose read transaction
        ends after every read. Reconnects once if the database dropped it."""
        for attempt in (1, 2):
            if self._reader is None:
                self._reader = self.uow.engine.raw_connection()
            try:
                rows = p.rows(self._reader, values)
                self._reader.rollback()
                return rows
            except JournalError:
                self._close_reader(invalidate=True)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _close_reader(self, *, invalidate: bool = False) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.invalidate() if invalidate else reader.close()

    def kill_switch_events(self, limit: int = 20) -> list[KillSwitchEventRow]:
        stmt = select(KillSwitchEventRow).order_by(
            KillSwitchEventRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        return list(self.uow.session.scalars(stmt))
