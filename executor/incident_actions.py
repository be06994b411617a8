"""Acknowledging and resolving incidents: the rules, once, for `dta incidents ack|resolve`
and the console's Incidents page. Each change is journaled with the person who made it
and their note (appended to the incident's history).

- a note is required (``ConfigError``, exit 2), and a person's name;
- an unknown incident is ``NotFound`` (exit 4);
- acknowledging or resolving again, or touching a resolved incident, is refused
  (``OperatorRefusal``, exit 5).
Resolving an incident does not relax trading: that is `dta trading-state activate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.errors import ConfigError, NotFound, OperatorRefusal

if TYPE_CHECKING:
    from executor.journal.models import IncidentRow
    from executor.journal.store import Journal

__all__ = ["STATUSES", "acknowledge", "resolve", "set_incident_status"]

STATUSES = ("acknowledged", "resolved")


def set_incident_status(journal: Journal, incident_id: int, status: str, *, person: str,
                        note: str) -> IncidentRow:
    """Move incident ``incident_id`` to ``status`` as ``person`` with ``note``; returns it
    as it was before."""
    if status not in STATUSES:
        raise ConfigError(f"incident status {status!r}: acknowledged or resolved")
    if not note.strip():
        raise ConfigError("a note is required (what you are doing about it, or how it was "
                          "resolved)")
    if not person.strip():
        raise ConfigError("an incident change needs the person who makes it")
    current = [i for i in journal.incidents.all() if i.id == incident_id]
    if not current:
        raise NotFound(f"no incident #{incident_id}")
    before = current[0]
    if before.status in (status, "resolved"):
        raise OperatorRefusal(f"incident #{incident_id} is already {before.status}")
    journal.incidents.set_incident_status(incident_id, status, person.strip(), note.strip())
    return before


def acknowledge(journal: Journal, incident_id: int, *, person: str, note: str) -> IncidentRow:
    """Someone is on it."""
    return set_incident_status(journal, incident_id, "acknowledged", person=person, note=note)


def resolve(journal: Journal, incident_id: int, *, person: str, note: str) -> IncidentRow:
    return set_incident_status(journal, incident_id, "resolved", person=person, note=note)
