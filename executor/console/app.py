"""``create_app``: the console's FastAPI application over one journal.

Built from the same ``Settings`` the CLI loads, so `dta console` reads the journal and the
rules `dta` does. Security is in the app, not in front of it: sessions (signed cookie,
HttpOnly, SameSite=Strict, Secure under TLS), a CSRF token on every state-changing request,
role checks per action, strict response headers (no framing, no inline script).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from executor.console import auth, live
from executor.console.security import LoginLimiter, session_secret, users_from
from executor.console.web import (
    STATIC_DIR,
    TEMPLATES_DIR,
    Console,
    NeedsLogin,
    flash,
    render,
)
from executor.settings import Settings

_HEADERS = {
    # Scripts only from /static (vendored, pinned): no inline script, no eval, no CDN.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_app(settings: Settings, journal_url: str | None = None, *,
               credentials_dir: str | None = None) -> FastAPI:
    """The console over ``journal_url`` (default: the settings' journal). Refuses
    (ConfigError) settings without users, or with a user who has no hash."""
    from executor.console.pages import routers

    console_settings = settings.console
    app = FastAPI(title="DTA console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.filters["when"] = _when
    templates.env.filters["num"] = _num
    templates.env.filters["lots"] = lots
    templates.env.filters["left"] = _left
    app.state.console = Console(
        settings=settings,
        users=users_from(console_settings, settings.governance, credentials_dir),
        limiter=LoginLimiter(console_settings.login_attempts,
                             console_settings.login_window_seconds),
        templates=templates, journal_url=journal_url or settings.journal.url)
    app.add_middleware(SessionMiddleware,
                       secret_key=session_secret(console_settings, credentials_dir),
                       session_cookie="dta_console", same_site="strict",
                       https_only=console_settings.tls,
                       max_age=int(console_settings.session_hours * 3600))

    @app.middleware("http")
    async def _secure_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        if request.url.path.startswith("/static/"):  # pinned files: the browser may keep them
            response.headers["Cache-Control"] = "private, max-age=3600"
        if console_settings.tls:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    app.add_exception_handler(NeedsLogin, _to_login)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(auth.router)
    app.include_router(live.router)
    for router in routers():
        app.include_router(router)
    app.router.add_event_handler("shutdown", app.state.console.close)
    return app


async def _to_login(request: Request, _exc: Exception) -> Response:
    """A page asked for without a session goes to the sign-in and comes back after it (a
    notification's link to /approvals/{id} lands on the request)."""
    if request.method == "GET" and "hx-request" not in request.headers:
        from urllib.parse import urlencode

        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': back})}", status_code=303)
    return Response("sign in first", status_code=401, headers={"HX-Redirect": "/login"})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """An action's refusal as a message the page shows in place (htmx swaps it into the
    flash area); a page's as the layout with the message."""
    if "hx-request" in request.headers:
        answer = flash(request, str(exc.detail), ok=False)
        answer.status_code = exc.status_code
        return answer
    user = None
    try:
        from executor.console.web import current_user

        user = current_user(request)
    except NeedsLogin:
        pass
    return render(request, "error.html", user, status_code=exc.status_code,
                  message=str(exc.detail))


def _when(value: Any) -> str:
    """A time as people read it: UTC, to the second."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, datetime):
        return "—" if value is None else str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def _formatted(value: Any, spec: str) -> str:
    if value is None:
        return "—"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _num(value: Any, digits: int = 5) -> str:
    return _formatted(value, f",.{digits}f")


def lots(value: Any) -> str:
    """A volume as a desk writes it: netting sums of lots carry binary noise
    (0.1 * 10 = 0.9999999999999999), which is 1 lot, not a figure to read."""
    return _formatted(value, ".8g")


def _left(seconds: float) -> str:
    """Time left as people read it: "2 d 3 h", "1 h 5 min", "14 min 5 s", "expired"."""
    if seconds <= 0:
        return "expired"
    left = timedelta(seconds=int(seconds))
    hours, minutes, secs = left.seconds // 3600, left.seconds % 3600 // 60, left.seconds % 60
    if left.days:
        return f"{left.days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"
