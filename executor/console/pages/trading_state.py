"""The trading-state bar every page shows: its status (``/state/bar``, re-rendered on
``dta:state``: ACTIVE / REDUCING / HALTED, who set it and why) and, for an operator, the
controls (halt, reduce, activate, with a reason; in ``base.html``, outside what live
updates re-render, so a reason being typed is never wiped). A change goes through
``executor.operator_actions.change_trading_state``, as `dta trading-state` does."""

from __future__ import annotations

from typing import Any

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
from executor.journal.store import Journal

router = APIRouter()
CONTROL_ROLE = "operator"  # console role for every change; relaxing also needs the binding


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


@router.post("/state", response_class=HTMLResponse)
def change_state(request: Request, user: SignedIn, form: CheckedForm) -> Response:
    from executor.operator_actions import change_trading_state

    require(request, user, CONTROL_ROLE)
    console = console_of(request)
    with refusals(), console.journal() as j:
        change = change_trading_state(j, console.settings.governance,
                                      text_field(form, "target"), person=user.name,
                                      reason=text_field(form, "reason"),
                                      fallback_person=user.name)
    return flash(request, f"trading state {change.state} by {change.person}: "
                 f"{change.reason}", topics=("state",))
