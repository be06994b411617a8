"""The console's pages, one module each, and the navigation every page shows.

To add a page (copy ``orders.py``, the pattern):
1. ``pages/<name>.py`` with ``router = APIRouter()``; a *data function* that takes the
   journal (and the filters) and returns plain values for the template, testable without
   HTTP; a ``GET`` route that depends on ``current_user``, calls the data function inside
   ``console_of(request).journal()`` and returns ``render(request, "<name>.html", user,
   page="<name>", **data)``.
2. ``templates/<name>.html`` extending ``base.html`` (``{% block content %}``); a part
   that live updates re-render is its own route and fragment with
   ``hx-trigger="dta:<topic> from:body"`` (topics: ``executor/console/live.py``).
3. An action is a ``POST`` route depending on ``checked_form`` (CSRF), calling
   ``require(request, user, role)`` and then the operator service function the CLI calls
   (``executor/operator_actions.py``); it answers with ``partials/flash.html``.
4. Its module name in ``PAGE_MODULES`` and, for the navigation, an entry in ``NAV``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from fastapi import APIRouter


@dataclass(frozen=True, slots=True)
class NavEntry:
    key: str
    title: str
    path: str


NAV = (
    NavEntry("overview", "Overview", "/"),
    NavEntry("approvals", "Approvals", "/approvals"),
    NavEntry("providers", "Providers", "/providers"),
    NavEntry("parameters", "Parameters", "/parameters"),
    NavEntry("orders", "Orders", "/orders"),
    NavEntry("incidents", "Incidents", "/incidents"),
    NavEntry("replays", "Replays", "/replays"),
)

# Page modules under executor/console/pages/, in the order their routes are added.
PAGE_MODULES = ("trading_state", "approvals", "orders", "placeholders")


def routers() -> list[APIRouter]:
    return [importlib.import_module(f"executor.console.pages.{name}").router
            for name in PAGE_MODULES]
