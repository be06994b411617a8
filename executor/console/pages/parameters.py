"""Parameters: every version (parent, author, reason, active or marked bad), the history
of activations and rollbacks, the differences between any two versions, activate and roll
back with a reason, and the evidence behind each automatic rollback.

Activate and roll back go through ``executor.param_actions`` (as `dta params activate |
rollback` does) with the signed-in person: the console role ``operator``, and with
``[governance.people]`` the person's ``operator`` role too (the same refusal as the CLI's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
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
CHANGE_ROLE = "operator"  # console role to activate or roll back


def parameters_data(journal: Journal, *, a: int | None = None,
                    b: int | None = None) -> dict[str, Any]:
    """Versions newest first, the history, the differences from ``a`` to ``b`` (default:
    the active version's parent to the active version) and the rollback evidence."""
    from executor.param_actions import rollback_evidence
    from guardrails.params import active_version, diff

    versions = journal.params.param_versions()
    by_number = {v.version: v for v in versions}
    active = active_version(journal.params)
    if b is None and active is not None:
        b = active.version
    if a is None and b is not None:
        a = by_number[b].parent if b in by_number else None
    changes = (diff(by_number[a].content, by_number[b].content)
               if a in by_number and b in by_number else [])
    return {"versions": versions[::-1], "active": active.version if active else None,
            "history": journal.params.param_events()[::-1], "a": a, "b": b,
            "changes": changes, "evidence": rollback_evidence(journal),
            "good": [v.version for v in versions if not v.bad]}


def _version(form: Any, name: str, *, required: bool) -> int | None:
    text = text_field(form, name)
    if not text and not required:
        return None
    try:
        return int(text.removeprefix("v"))
    except ValueError:
        raise HTTPException(422, f"{name}: a version number") from None


@router.get("/parameters", response_class=HTMLResponse)
def parameters_page(request: Request, user: SignedIn, a: int | None = None,
                    b: int | None = None) -> Response:
    with console_of(request).journal() as j:
        data = parameters_data(j, a=a, b=b)
    return render(request, "parameters.html", user, page="parameters",
                  can_change=CHANGE_ROLE in user.roles, **data)


@router.get("/parameters/versions", response_class=HTMLResponse)
def parameters_fragment(request: Request, user: SignedIn) -> Response:
    """Versions, history and evidence: what a live update (``dta:params``) re-renders."""
    with console_of(request).journal() as j:
        data = parameters_data(j)
    return render(request, "partials/parameters_versions.html", user,
                  can_change=CHANGE_ROLE in user.roles, **data)


@router.post("/parameters/activate", response_class=HTMLResponse)
def activate(request: Request, user: SignedIn, form: CheckedForm) -> Response:
    from executor.param_actions import activate_version

    require(request, user, CHANGE_ROLE)
    version = _version(form, "version", required=True)
    assert version is not None
    console = console_of(request)
    with refusals(), console.journal() as j:
        activate_version(j, console.settings, version, person=user.name,
                         reason=text_field(form, "reason"))
    return flash(request, f"v{version} active, by {user.name}", topics=("params",))


@router.post("/parameters/rollback", response_class=HTMLResponse)
def rollback(request: Request, user: SignedIn, form: CheckedForm) -> Response:
    from executor.param_actions import rollback_version

    require(request, user, CHANGE_ROLE)
    console = console_of(request)
    with refusals(), console.journal() as j:
        target = rollback_version(j, console.settings, person=user.name,
                                  reason=text_field(form, "reason"),
                                  to=_version(form, "to", required=False))
    return flash(request, f"rolled back to v{target.version} by {user.name}",
                 topics=("params",))
