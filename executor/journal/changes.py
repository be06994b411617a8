"""Cheap marks of what changed in the journal, for the console's live updates.

One small indexed read per topic (max ids and per-status counts), on a connection of
its own so it sees what any process committed, whatever the session's transaction holds.
A topic's mark differs from the last one read exactly when a row of it was written:
a new row moves a max id, a status change moves a count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from executor.journal.tables import (
    APPROVALS,
    BARS,
    FILLS,
    INCIDENTS,
    ORDER_EVENTS,
    PARAM_EVENTS,
    PARAM_VERSIONS,
    PROVIDER_EVENTS,
    STATE_EVENTS,
)
from executor.journal.unit_of_work import UnitOfWork

Mark = tuple[Any, ...]


def _by_status(table: Any) -> Any:
    return select(table.c.status, func.count()).group_by(table.c.status).order_by(
        table.c.status)


class ChangeMarks:
    """``marks()``: topic -> mark (approvals, orders, incidents, state, params, providers,
    bars)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def marks(self) -> dict[str, Mark]:
        with self._uow.engine.connect() as conn:
            def one(stmt: Any) -> Mark:
                return tuple(conn.execute(stmt).one())

            def rows(stmt: Any) -> Mark:
                return tuple(tuple(r) for r in conn.execute(stmt))

            return {
                "approvals": (one(select(func.max(APPROVALS.c.id))),
                              rows(_by_status(APPROVALS))),
                "orders": (one(select(func.max(ORDER_EVENTS.c.id))),
                           one(select(func.count()).select_from(FILLS))),
                "incidents": (one(select(func.max(INCIDENTS.c.id))),
                              rows(_by_status(INCIDENTS))),
                "state": one(select(func.max(STATE_EVENTS.c.id))),
                "params": (one(select(func.max(PARAM_EVENTS.c.id))),
                           one(select(func.max(PARAM_VERSIONS.c.version)))),
                "providers": one(select(func.max(PROVIDER_EVENTS.c.id))),
                "bars": one(select(func.max(BARS.c.id))),
            }
