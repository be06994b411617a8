"""What every console request shares: the journal (one per process, used under a lock and
its transaction ended after each request, so the next one sees what the daemon committed
since), the signed-in user, the CSRF-checked form, role checks and rendering.

A page module (``pages/orders.py`` is the pattern) needs only: ``current_user`` as a
dependency, ``console_of(request).journal()`` around its data function, ``render``; and
for an action, ``checked_form`` (CSRF) and ``require`` (roles) before it calls the
operator service function the CLI calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from executor.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    LoginLimiter,
    User,
    action_refusal,
    csrf_ok,
    new_csrf_token,
)
from executor.journal.store import Journal
from executor.settings import Settings

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


class NeedsLogin(Exception):
    """No valid session: a page redirects to /login, an htmx or API call gets 401."""


@dataclass
class Console:
    """The console process's state (``app.state.console``)."""

    settings: Settings
    users: dict[str, User]
    limiter: LoginLimiter
    templates: Jinja2Templates
    journal_url: str
    shared: dict[str, Any] = field(default_factory=dict)  # per-process caches (live marks)
    # Live sessions, by the random id in the cookie -> (user, signed in at). Signing out
    # ends a session here, so a copied cookie dies with it; a restart ends them all.
    sessions: dict[str, tuple[str, float]] = field(default_factory=dict)
    _journal: Journal | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def journal(self) -> Iterator[Journal]:
        """The journal for one request's reads or one action. The transaction ends on the
        way out (committed after an action, ended after reads), so no request holds a
        snapshot the daemon's later writes cannot reach."""
        with self._lock:
            if self._journal is None:
                self._journal = Journal.open(self.journal_url, migrate_schema=False,
                                             create=False)
            j = self._journal
            try:
                yield j
            except BaseException:
                j.rollback()
                raise
            j.commit()

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use: the login page has one too)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = new_csrf_token()
    return str(token)


def current_user(request: Request) -> User:
    """The signed-in user, or NeedsLogin (an expired session, or a user since removed
    from the settings, counts as signed out)."""
    console = console_of(request)
    live = console.sessions.get(str(request.session.get("sid")))
    name, since = live if live is not None else (None, 0.0)
    user = (console.users.get(name)
            if name is not None and name == request.session.get("user") else None)
    max_age = console.settings.console.session_hours * 3600
    if user is None or time.time() - since > max_age:
        raise NeedsLogin()
    return user


async def checked_form(request: Request) -> FormData:
    """The request's form, once its CSRF token matched the session's: every
    state-changing route depends on this (tests/unit/executor/test_console_security.py
    holds that to every POST route)."""
    form = await request.form()
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not csrf_ok(request.session.get("csrf"), given if isinstance(given, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")
    return form


# Route parameters: ``user: SignedIn`` (the signed-in user, else to /login) and ``form:
# CheckedForm`` (the form of a state-changing request whose CSRF token matched).
SignedIn = Annotated[User, Depends(current_user)]
CheckedForm = Annotated[FormData, Depends(checked_form)]


def require(request: Request, user: User, console_role: str,
            governance_role: str | None = None) -> None:
    """403 unless ``user`` may act in ``console_role`` (and, bound by
    [governance.people], in ``governance_role``)."""
    why = action_refusal(user, console_role, console_of(request).settings.governance,
                         governance_role)
    if why is not None:
        raise HTTPException(403, why)


@contextmanager
def refusals() -> Iterator[None]:
    """An operator service function's refusal as the HTTP answer the page shows: invalid
    input 422, not found 404, refused 403 (the message is the one the CLI prints)."""
    from domain.errors import ConfigError, DtaError, NotFound, OperatorRefusal

    try:
        yield
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except OperatorRefusal as exc:
        raise HTTPException(403, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    except DtaError as exc:
        raise HTTPException(500, str(exc)) from None


def flash(request: Request, message: str, *, ok: bool = True,
          topics: tuple[str, ...] = ()) -> HTMLResponse:
    """An action's answer: a message for the flash area, and the live-update triggers of
    the topics it changed (``HX-Trigger``), so this page re-renders at once."""
    html = console_of(request).templates.get_template("partials/flash.html").render(
        message=message, ok=ok)
    headers = {"HX-Trigger": ", ".join(f"dta:{t}" for t in topics)} if topics else None
    return HTMLResponse(str(html), headers=headers)


def render(request: Request, template: str, user: User | None, *, page: str = "",
           status_code: int = 200, **context: Any) -> HTMLResponse:
    from executor.console.pages import NAV

    console = console_of(request)
    return console.templates.TemplateResponse(request, template, {
        "user": user, "nav": NAV, "page": page, "csrf_token": csrf_token(request),
        "console_url": console.settings.console.url(), **context}, status_code=status_code)


def text_field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""
