"""Sign-in and sign-out. A failed sign-in counts against the client's address and the
user name (``LoginLimiter``); past the limit the answer is 429 whatever the password, so
guessing stays slow even for a right guess. A success starts a new session (a fresh CSRF
token: a token seen before sign-in is worth nothing after it)."""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from executor import lazy_log as structlog
from executor.console.security import new_csrf_token, verify
from executor.console.web import CheckedForm, console_of, render, text_field

router = APIRouter()
log = structlog.get_logger("dta.console")


def _back_to(target: str) -> str:
    """Where to go after signing in: a path of this console only (never another site:
    ``//host`` and ``/\\host`` are refused), else the overview."""
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", None, page="login", next=_back_to(next))


@router.post("/login")
def login(request: Request, form: CheckedForm) -> Response:
    console = console_of(request)
    name = text_field(form, "username")
    password = form.get("password")
    client = request.client.host if request.client else "?"
    back = _back_to(text_field(form, "next"))
    if console.limiter.blocked(client, name):
        log.warning("console_sign_in_limited", user=name, client=client)
        return render(request, "login.html", None, page="login", status_code=429, next=back,
                      error="too many failed sign-ins: wait a few minutes and try again")
    user = verify(console.users, name, password if isinstance(password, str) else "")
    if user is None:
        console.limiter.failed(client, name)
        log.warning("console_sign_in_failed", user=name, client=client)
        return render(request, "login.html", None, page="login", status_code=401, next=back,
                      error="wrong user name or password")
    console.limiter.succeeded(name)
    log.info("console_signed_in", user=user.name, client=client)
    request.session.clear()
    now = time.time()
    max_age = console.settings.console.session_hours * 3600
    for sid, (_, at) in list(console.sessions.items()):  # forget the expired
        if now - at > max_age:
            console.sessions.pop(sid, None)
    sid = secrets.token_urlsafe(24)
    console.sessions[sid] = (user.name, now)
    request.session.update({"user": user.name, "sid": sid, "at": now,
                            "csrf": new_csrf_token()})
    return RedirectResponse(back, status_code=303)


@router.post("/logout")
def logout(request: Request, _form: CheckedForm) -> Response:
    console_of(request).sessions.pop(str(request.session.get("sid")), None)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
