"""Overview: where the account stands (``/``), the same ``StatusView`` `dta status` prints
(``executor/status_view.py``): trading state, mode and clearance, equity today with its
curve, positions, working orders, each stream's last bar and its age (stale highlighted),
open incidents and pending approvals with their time left. The panel re-renders itself on
every journal topic it shows (``/overview/panel``), so the page stays current unattended.

The view is read as `dta status` reads it, through the database driver
(``executor/journal/direct.py``, one snapshot per render), not the console's ``Journal``:
one read model, so the CLI and the page cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from executor.console.web import SignedIn, console_of, render

if TYPE_CHECKING:
    from executor.settings import Settings
    from executor.status_view import StatusView

router = APIRouter()
TOPICS = ("state", "orders", "approvals", "incidents", "params", "providers")


def overview_data(journal_url: str, settings: Settings, now: datetime) -> dict[str, Any]:
    from executor.journal.direct import open_direct
    from executor.status_view import build_status_view, human_duration

    with open_direct(journal_url) as reader:
        view = build_status_view(reader, settings, now)
    return {"view": view, "equity_chart": equity_chart(view), "ago": human_duration,
            "live": ", ".join([*(f"dta:{t} from:body" for t in TOPICS),
                               "dta:bars from:body throttle:1s"])}


def equity_chart(view: StatusView) -> dict[str, Any]:
    """The equity curve as lightweight-charts wants it: one point per second, rising
    (two fills on one bar keep the later equity)."""
    points: dict[int, float] = {}
    for p in view.equity.curve:
        points[int(p.at.timestamp())] = round(p.equity, 2)
    return {"precision": 2, "series": [{"title": "equity", "color": "#6cb4ff", "points": [
        {"time": t, "value": v} for t, v in sorted(points.items())]}]}


def _data(request: Request) -> dict[str, Any]:
    console = console_of(request)
    return overview_data(console.journal_url, console.settings, datetime.now(UTC))


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, user: SignedIn) -> Response:
    return render(request, "overview.html", user, page="overview", **_data(request))


@router.get("/overview/panel", response_class=HTMLResponse)
def overview_panel(request: Request, user: SignedIn) -> Response:
    """The panel alone: what a live update re-renders."""
    return render(request, "partials/overview_panel.html", user, **_data(request))
