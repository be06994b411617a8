"""The trading state (ACTIVE, REDUCING, HALTED) as events: the newest one is the state, so
it survives restarts, and an operator's `dta trading-state` in another process reaches a
running daemon at its next decision. Implements ``guardrails.state.StateStore``.

A change commits durably at once. The state is read on every decision: prepared, cached for
``STATE_TTL_S`` of wall time, and read on a DBAPI connection of this repository's own, so
it sees what another process committed whatever snapshot the session's open transaction
holds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from domain.errors import JournalError
from executor.journal.models import TradingStateEventRow
from executor.journal.prepared import Prepared
from executor.journal.tables import STATE_EVENTS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import utcnow

_STATE_COLUMNS = (STATE_EVENTS.c.id, STATE_EVENTS.c.state, STATE_EVENTS.c.operator,
                  STATE_EVENTS.c.reason, STATE_EVENTS.c.at, STATE_EVENTS.c.trigger)
# How long a running daemon may act on a cached trading state read from another process.
STATE_TTL_S = 0.25


@dataclass(frozen=True, slots=True)
class TradingStateRecord:
    """The newest trading-state event: ``state`` is ACTIVE, REDUCING or HALTED (ACTIVE
    when no event was ever written), with who set it, why, since when and by what."""

    state: str = "ACTIVE"
    operator: str | None = None
    reason: str | None = None
    since: datetime | None = None
    trigger: str | None = None


class TradingStateRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._cache: dict[str, tuple[float, TradingStateRecord]] = {}
        self._reader: Any = None  # a DBAPI connection of its own for the trading state
        # Hear of each global state change once committed: this process's at once, another
        # process's (`dta trading-state`, the console) when this one next reads the state.
        self.listeners: list[Callable[[TradingStateRecord], None]] = []
        self._seen_event_id: int | None = None  # the newest event this process knows
        self._looked = False  # has this process read or written the state yet?

    def record_trading_state(self, state: str, operator: str, reason: str,
                             trigger: str = "manual", scope: str = "global") -> None:
        uow = self._uow
        with uow.lock:
            row = TradingStateEventRow(at=utcnow(), state=state, scope=scope,
                                       operator=operator, reason=reason, trigger=trigger)
            uow.session.add(row)
            uow.commit(durable=True)
            self._cache.clear()
        if scope == "global":
            self._looked, self._seen_event_id = True, row.id
            self._tell(TradingStateRecord(state, operator, reason, row.at, trigger))

    def trading_state(self, scope: str = "global", *,
                      fresh: bool = False) -> TradingStateRecord:
        """Read from the database, so an operator's `dta trading-state` in another process
        reaches a running daemon; cached for at most ``STATE_TTL_S`` of wall time (a replay
        decides thousands of times a second). This process's own changes clear the cache.
        ``fresh``: read through the cache (a state change decides on the current state)."""
        cached = self._cache.get(scope)
        now = time.monotonic()
        if not fresh and cached is not None and now - cached[0] < STATE_TTL_S:
            return cached[1]
        state = self._read_state(scope)
        self._cache[scope] = (now, state)
        return state

    def trading_state_events(self, limit: int = 20) -> list[TradingStateEventRow]:
        stmt = select(TradingStateEventRow).order_by(
            TradingStateEventRow.id.desc()).limit(limit)  # type: ignore[union-attr]
        return list(self._uow.session.scalars(stmt))

    def close(self) -> None:
        self._close_reader()

    def _read_state(self, scope: str) -> TradingStateRecord:
        uow = self._uow
        t = STATE_EVENTS
        p = uow.prep("trading_state", lambda: select(*_STATE_COLUMNS).where(
            t.c.scope == bindparam("scope")).order_by(t.c.id.desc()).limit(1))
        with uow.lock:
            if uow.in_memory:  # one shared connection, and no other process can write
                rows = p.rows(uow.dbapi(), {"scope": scope})
            else:
                rows = self._read_committed(p, {"scope": scope})
        if not rows:
            record, newest = TradingStateRecord(), None
        else:
            r = rows[0]
            record = TradingStateRecord(r["state"], r["operator"], r["reason"], r["at"],
                                        r["trigger"])
            newest = r["id"]
        if scope == "global":
            if self._looked and newest != self._seen_event_id:
                self._tell(record)  # written by another process since this one last looked
            self._looked, self._seen_event_id = True, newest
        return record

    def _tell(self, record: TradingStateRecord) -> None:
        for listener in self.listeners:
            with contextlib.suppress(Exception):  # a listener must never break the journal
                listener(record)

    def _read_committed(self, p: Prepared, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows as committed now, by any process, whatever snapshot the session's open
        transaction holds: a DBAPI connection of the journal's own whose read transaction
        ends after every read. Reconnects once if the database dropped it."""
        for attempt in (1, 2):
            if self._reader is None:
                self._reader = self._uow.engine.raw_connection()
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
