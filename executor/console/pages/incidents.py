"""Incidents: what triggers, rollbacks and the daemon opened, newest first, each with its
details and status history; acknowledge (someone is on it) and resolve, with a note.

Both go through ``executor.incident_actions`` (as `dta incidents ack | resolve` does)
with the signed-in person, who needs the console role ``operator``. Resolving does not
relax trading: that is the trading-state bar's Activate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from executor.console.web import (
    CheckedForm,
    SignedIn,
    console_of,
    flash,
    refusals,
    render,
    require,
    text_field,
)

if TYPE_CHECKING:
    from executor.journal.store import Journal

router = APIRouter()
ACT_ROLE = "operator"  # console role to acknowledge or resolve
STATUSES = ("open", "acknowledged", "resolved")


def incidents_data(journal: Journal, *, status: str = "") -> dict[str, Any]:
    """Incidents in ``status`` (any: all), newest first, with their history apart."""
    rows = journal.incidents.all(status if status in STATUSES else None)
    shown = []
    for i in reversed(rows):
        details = dict(i.details or {})
        history = details.pop("history", [])
        shown.append({"id": i.id, "at": i.at, "severity": i.severity, "kind": i.kind,
                      "status": i.status, "message": i.message, "details": details,
                      "history": history})
    counts = {s: 0 for s in STATUSES}
    for i in journal.incidents.all():
        counts[i.status] = counts.get(i.status, 0) + 1
    return {"incidents": shown, "status": status if status in STATUSES else "",
            "statuses": STATUSES, "counts": counts}


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, user: SignedIn, status: str = "") -> Response:
    with console_of(request).journal() as j:
        data = incidents_data(j, status=status)
    return render(request, "incidents.html", user, page="incidents",
                  can_act=ACT_ROLE in user.roles, **data)


@router.get("/incidents/list", response_class=HTMLResponse)
def incidents_fragment(request: Request, user: SignedIn, status: str = "") -> Response:
    """The list alone: what a live update (``dta:incidents``) re-renders."""
    with console_of(request).journal() as j:
        data = incidents_data(j, status=status)
    return render(request, "partials/incidents_list.html", user,
                  can_act=ACT_ROLE in user.roles, **data)


@router.post("/incidents/{incident_id}/status", response_class=HTMLResponse)
def change_status(request: Request, incident_id: int, user: SignedIn,
                  form: CheckedForm) -> Response:
    from executor.incident_actions import set_incident_status

    require(request, user, ACT_ROLE)
    status = text_field(form, "status")
    with refusals(), console_of(request).journal() as j:
        set_incident_status(j, incident_id, status, person=user.name,
                            note=text_field(form, "note"))
    return flash(request, f"incident #{incident_id} {status} by {user.name}",
                 topics=("incidents",))
