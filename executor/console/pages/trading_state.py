"""The trading-state bar every page shows (``/state/bar``, re-rendered on ``dta:state``):
ACTIVE / REDUCING / HALTED, who set it and why."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from executor.console.web import SignedIn, console_of, render
from executor.journal.store import Journal

router = APIRouter()


def state_data(journal: Journal) -> dict[str, Any]:
    from guardrails.state import state_of

    view = journal.trading_state.trading_state(fresh=True)
    return {"state": state_of(view).value, "operator": view.operator, "reason": view.reason,
            "since": view.since, "trigger": view.trigger}


@router.get("/state/bar", response_class=HTMLResponse)
def state_bar(request: Request, user: SignedIn) -> Response:
    with console_of(request).journal() as j:
        data = state_data(j)
    return render(request, "partials/state_bar.html", user, **data)
