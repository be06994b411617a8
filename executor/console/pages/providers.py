"""Providers: status badges (up, degraded, down, idle; breaker state; in rotation or not),
the provider matrix over a chosen window of market time, comparison charts of each
figure over that window, enable and disable with a reason, and the matrix's exports (CSV,
JSON, and a PostgreSQL table for shared analytics).

Figures and their definitions: ``executor/reports/provider_analytics.py``; the journal
reads and exports: ``executor/provider_matrix.py``, as `dta providers matrix` uses them.
Enable and disable go through ``executor.provider_actions.set_rotation``, as `dta
providers enable|disable` does, with the signed-in person.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    from executor.provider_matrix import MatrixSource
    from executor.reports.provider_analytics import Window
    from executor.settings import Settings

router = APIRouter()
ROTATION_ROLE = "operator"  # console role to take a provider out of rotation and back
EXPORT_ROLE = "analyst"  # console role to append the matrix to the analytics database
WINDOWS = (("1", "last day"), ("7", "last 7 days"), ("30", "last 30 days"),
           ("90", "last 90 days"), ("", "everything"))
BUCKETS = 12
# (figure, chart title, scale): what the comparison charts draw, per provider.
FIGURES = (("latency_p50_ms", "latency p50 (ms)", 1.0), ("latency_p99_ms", "latency p99 (ms)",
           1.0), ("failures", "errors and timeouts", 1.0),
           ("cost_per_decision", "cost per decision", 1.0), ("tokens", "tokens", 1.0),
           ("hit_rate", "hit rate against the next move (%)", 100.0),
           ("agreement_with_ensemble", "agreement with the ensemble (%)", 100.0))


def _days(text: str) -> float | None:
    try:
        days = float(text)
    except ValueError:
        return None
    return days if days > 0 else None


def _horizon(horizon: int) -> int:
    return max(1, min(horizon, 500))


def providers_data(journal: Journal, settings: Settings, *, days: str = "7",
                   horizon: int = 8, now: datetime | None = None,
                   charts: bool = True) -> dict[str, Any]:
    """The matrix of the window, and (``charts``: the whole page, not the table fragment)
    its comparison charts, each bucket a matrix of its own."""
    from executor.provider_matrix import read_source

    source = read_source(journal, settings, now or datetime.now(UTC))
    horizon = _horizon(horizon)
    window = source.window(_days(days))
    matrix = source.matrix(window, horizon)
    return {"matrix": matrix, "days": days if _days(days) else "", "horizon": horizon,
            "windows": WINDOWS,
            "charts": comparison_charts(source, window, horizon) if charts else [],
            "others": matrix.others(),
            "analytics": settings.console.analytics_url is not None,
            "analytics_table": settings.console.analytics_table}


def comparison_charts(source: MatrixSource, window: Window, horizon: int,
                      buckets: int = BUCKETS) -> list[dict[str, Any]]:
    """Each figure per provider over ``window`` cut into ``buckets`` equal spans of
    market time: one line per provider, a point at each span's end."""
    from executor.reports.provider_analytics import Window as Span

    start = window.start or source.oldest
    end = window.end or source.newest
    if start is None or end is None or end <= start:
        return []
    step = (end - start) / buckets
    series: dict[str, dict[str, list[dict[str, Any]]]] = {f: {} for f, _, _ in FIGURES}
    series["pairs"] = {}
    for k in range(buckets):
        span = Span(start + step * k, start + step * (k + 1))
        at = int(span.end.timestamp()) if span.end else 0
        for row in source.matrix(span, horizon).rows:
            values = {"failures": row.errors + row.timeouts,
                      "tokens": row.tokens_in + row.tokens_out,
                      **{f"{row.provider} ~ {o}": share for o, share in row.agreement.items()
                         if row.provider < o and share is not None}}
            for figure, _, scale in FIGURES:
                value = values.get(figure, getattr(row, figure, None))
                if value is not None and row.calls:
                    series[figure].setdefault(row.provider, []).append(
                        {"time": at, "value": round(float(value) * scale, 6)})
            for pair, share in values.items():
                if "~" in pair:  # agreement between two providers: one line per pair
                    series["pairs"].setdefault(pair, []).append(
                        {"time": at, "value": round(float(share) * 100.0, 6)})
    figures = (*FIGURES, ("pairs", "agreement between providers (%)", 100.0))
    return [{"figure": figure, "title": title, "data": {
        "precision": 2 if scale == 1.0 else 1,
        "series": [{"title": name, "points": points} for name, points in lines.items()]}}
        for figure, title, scale in figures if (lines := series[figure])]


def _render(request: Request, user: Any, template: str, days: str, horizon: int,
            charts: bool = True, **extra: Any) -> Response:
    console = console_of(request)
    with console.journal() as j:
        data = providers_data(j, console.settings, days=days, horizon=horizon, charts=charts)
    return render(request, template, user, page="providers", **data, **extra)


@router.get("/providers", response_class=HTMLResponse)
def providers_page(request: Request, user: SignedIn, days: str = "7",
                   horizon: int = 8) -> Response:
    return _render(request, user, "providers.html", days, horizon,
                   can_rotate=ROTATION_ROLE in user.roles,
                   can_export=EXPORT_ROLE in user.roles)


@router.get("/providers/table", response_class=HTMLResponse)
def providers_table(request: Request, user: SignedIn, days: str = "7",
                    horizon: int = 8) -> Response:
    """The badges and figures alone: what a live update (``dta:providers``) re-renders."""
    return _render(request, user, "partials/providers_table.html", days, horizon,
                   charts=False, can_rotate=ROTATION_ROLE in user.roles)


@router.get("/providers/matrix.{fmt}")
def providers_export(request: Request, user: SignedIn, fmt: str, days: str = "7",
                     horizon: int = 8) -> Response:
    """The matrix as CSV or JSON, downloaded (what `dta providers matrix --format` prints)."""
    from fastapi import HTTPException

    from executor.provider_matrix import load_matrix, to_csv, to_json

    if fmt not in ("csv", "json"):
        raise HTTPException(404, f"no export as {fmt!r}: csv or json")
    console = console_of(request)
    with console.journal() as j:
        matrix = load_matrix(j, console.settings, days=_days(days),
                             horizon_bars=_horizon(horizon))
    body = to_csv(matrix) if fmt == "csv" else to_json(matrix)
    return Response(body, media_type="text/csv" if fmt == "csv" else "application/json",
                    headers={"Content-Disposition":
                             f'attachment; filename="provider-matrix.{fmt}"'})


@router.post("/providers/{name}/rotation", response_class=HTMLResponse)
def change_rotation(request: Request, name: str, user: SignedIn,
                    form: CheckedForm) -> Response:
    from executor.provider_actions import set_rotation

    require(request, user, ROTATION_ROLE)
    console = console_of(request)
    with refusals(), console.journal() as j:
        action = set_rotation(j, console.settings, name,
                              enable=text_field(form, "action") == "enable",
                              person=user.name, reason=text_field(form, "reason"))
    return flash(request, f"provider {name} {action}d by {user.name}", topics=("providers",))


@router.post("/providers/export", response_class=HTMLResponse)
def export_to_postgres(request: Request, user: SignedIn, form: CheckedForm) -> Response:
    """Append the matrix of the window shown to ``[console] analytics_table``."""
    from fastapi import HTTPException

    from executor.provider_matrix import load_matrix, to_postgres

    require(request, user, EXPORT_ROLE)
    console = console_of(request)
    target = console.settings.console.analytics_url
    if target is None:
        raise HTTPException(422, "no [console] analytics_url is configured")
    try:
        horizon = int(text_field(form, "horizon") or 8)
    except ValueError:
        raise HTTPException(422, "horizon: a whole number of bars") from None
    with refusals():
        with console.journal() as j:
            matrix = load_matrix(j, console.settings, days=_days(text_field(form, "days")),
                                 horizon_bars=_horizon(horizon))
        table = console.settings.console.analytics_table
        written = to_postgres(matrix, target.get_secret_value(), table=table)
    return flash(request, f"{written} rows appended to {table} by {user.name}")
