"""Replays: the reports `dta replay --report DIR` wrote below ``[console] reports_dir``,
newest first with their key figures (``executor/reports/catalog.py``); open one, and
download its exports (a CSV and a JSON file per table, and ``run.json``).

A report is served as it was written, in a sandbox: its own Content-Security-Policy
(``sandbox allow-scripts``: an opaque origin, so a report's script, if it has one, can
reach neither the console's cookies nor its actions; no network). Files are handed out
only through ``catalog.report_file`` (a listed report's own files, inside the directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from executor.console.web import SignedIn, console_of, render

router = APIRouter()
# A report is a static page of its own: no framing, no network, scripts (inlined) only in
# an opaque origin.
REPORT_POLICY = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
                 "style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
MEDIA = {".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8",
         ".json": "application/json"}


def replays_data(reports_dir: Path) -> dict[str, Any]:
    from executor.reports.catalog import list_reports

    return {"reports": list_reports(reports_dir), "reports_dir": reports_dir}


def _file(request: Request, name: str, file: str) -> Path:
    from domain.errors import NotFound
    from executor.reports.catalog import report_file

    try:
        return report_file(console_of(request).settings.console.reports_dir, name, file)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/replays", response_class=HTMLResponse)
def replays_page(request: Request, user: SignedIn) -> Response:
    data = replays_data(console_of(request).settings.console.reports_dir)
    return render(request, "replays.html", user, page="replays", **data)


@router.get("/replays/{name:path}/report")
def open_report(request: Request, name: str, user: SignedIn) -> Response:
    path = _file(request, name, "report.html")
    return FileResponse(path, media_type=MEDIA[".html"],
                        headers={"Content-Security-Policy": REPORT_POLICY})


@router.get("/replays/{name:path}/files/{file}")
def export_file(request: Request, name: str, file: str, user: SignedIn) -> Response:
    path = _file(request, name, file)
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"),
                        filename=f"{name.replace('/', '-')}-{path.name}",
                        headers={"Content-Security-Policy": "default-src 'none'"})
