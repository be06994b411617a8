"""Activating a parameter version and rolling back: the rules, once, for `dta params
activate|rollback` and the console's Parameters page; and the evidence behind each
automatic rollback, for `dta params evidence` and the same page.

- the person must be named (``ConfigError``, exit 2) and, with ``[governance.people]``,
  hold the ``operator`` role (``OperatorRefusal``, exit 5): both relax trading
  (``operator_actions.identified_person``, as for the trading state);
- activating the active version is refused (exit 5); the rest of the rules (unknown
  version, nothing to roll back to, a bad target) are ``guardrails.params``' own.
A running daemon follows an activation or rollback within a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.errors import OperatorRefusal
from executor.operator_actions import identified_person

if TYPE_CHECKING:
    from executor.journal.store import Journal
    from executor.settings import Settings
    from guardrails.params import ParamVersion

__all__ = ["RollbackEvidence", "activate_version", "rollback_evidence", "rollback_version"]

def activate_version(journal: Journal, settings: Settings, version: int, *,
                     person: str | None, reason: str) -> ParamVersion:
    from guardrails.params import activate, active_version

    who = identified_person(settings.governance, person)
    current = active_version(journal.params)
    if current is not None and current.version == version:
        raise OperatorRefusal(f"v{version} is already active")
    return activate(journal.params, version, operator=who, reason=reason)


def rollback_version(journal: Journal, settings: Settings, *, person: str | None,
                     reason: str, to: int | None = None) -> ParamVersion:
    """Leave the active version for the last known-good one (or ``to``), marking the one
    left bad."""
    from guardrails.params import rollback

    who = identified_person(settings.governance, person)
    return rollback(journal.params, operator=who, reason=reason, to=to)


@dataclass(frozen=True, slots=True)
class RollbackEvidence:
    """One automatic rollback and what stood behind it: the trigger and its figures (in
    ``reason``, as the monitor wrote them), the version left (marked bad) and the one
    returned to with the changes between them, the incident it opened, and the record
    of the version left: its decisions, orders and their realised PnL."""

    at: datetime
    trigger: str | None
    reason: str
    from_version: int | None
    to_version: int
    changes: tuple[tuple[str, Any, Any], ...]
    incident: dict[str, Any] | None
    decisions_under: int
    orders_under: int
    realised_under: float


def rollback_evidence(journal: Journal) -> list[RollbackEvidence]:
    """Every automatic rollback, newest first."""
    from guardrails.params import ACTIVATING, diff

    versions = {v.version: v for v in journal.params.param_versions()}
    active: int | None = None
    out = []
    for event in journal.params.param_events():
        if event.action == "auto_rollback":
            left = versions.get(active) if active is not None else None
            target = versions.get(event.version)
            record = _record_under(journal, left.hash) if left else (0, 0, 0.0)
            out.append(RollbackEvidence(
                at=event.at, trigger=event.trigger, reason=event.reason,
                from_version=active, to_version=event.version,
                changes=tuple(diff(left.content, target.content))
                if left is not None and target is not None else (),
                incident=_incident(journal, event.trigger, event.version, event.at),
                decisions_under=record[0], orders_under=record[1], realised_under=record[2]))
        if event.action in ACTIVATING:
            active = event.version
    return out[::-1]


def _record_under(journal: Journal, params_hash: str) -> tuple[int, int, float]:
    """(decisions, orders, realised PnL of their fills) under the parameter set."""
    from sqlalchemy import func, select

    from executor.journal.tables import DECISIONS

    with journal.uow.engine.connect() as conn:
        decisions = int(conn.execute(select(func.count()).select_from(DECISIONS).where(
            DECISIONS.c.params_hash == params_hash)).scalar() or 0)
    orders = [o for o in journal.orders.all() if o.intent.params_hash == params_hash]
    ids = {o.client_order_id for o in orders}
    realised = sum(f.realized_pnl for f in journal.orders.fills() if f.client_order_id in ids)
    return decisions, len(orders), realised


def _incident(journal: Journal, trigger: str | None, to_version: int,
              at: datetime) -> dict[str, Any] | None:
    """The incident the rollback opened (its kind names the trigger, its details the
    version returned to): the first one at or after the rollback."""
    for i in journal.incidents.all():
        details = i.details or {}
        if (i.kind == f"auto_rollback:{trigger}" and details.get("to_version") == to_version
                and i.at >= at):
            return {"id": i.id, "at": i.at.isoformat(), "severity": i.severity,
                    "status": i.status, "message": i.message}
    return None
