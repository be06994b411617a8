"""Pages the navigation lists whose modules are still to come (issue 18's Overview,
Providers, Parameters, Incidents and Replays pages): each shows where its data lives
today in the CLI. A page module that serves one of these paths replaces its entry here."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from executor.console.web import SignedIn, render

router = APIRouter()

# path -> (nav key, the CLI command that shows it today)
PENDING = {
    "/": ("overview", "dta status"),
    "/providers": ("providers", "dta providers status"),
    "/parameters": ("parameters", "dta params list"),
    "/incidents": ("incidents", "dta incidents list"),
    "/replays": ("replays", "dta replay DATA --report DIR"),
}


def _page(path: str) -> object:
    key, command = PENDING[path]

    def page(request: Request, user: SignedIn) -> Response:
        return render(request, "placeholder.html", user, page=key, command=command)

    page.__name__ = f"placeholder_{key}"
    return page


for _path in PENDING:
    router.add_api_route(_path, _page(_path), methods=["GET"],  # type: ignore[arg-type]
                         response_class=HTMLResponse)
