"""A self-contained HTML report, and CSV/JSON exports of every table next to it.

The page needs nothing at view time: charts are inline SVG (``executor.reports.svg``), the
style sheet is inline, there is no script, and a Content-Security-Policy meta tag forbids
any fetch, so a report opened from a laptop without network shows exactly what it holds.

A report is a title, a few key/value facts, a strip of key ``Figure``s and a list of
``Section``s; a section holds notes, a verdict, status badges, charts and ``Table``s. A
table may carry ``shown``, the cells as a person reads them (``executor.reports.humanize``:
12.3 %, 1,234.56 USD, a price at the symbol's digits); its exports keep the raw numbers.
Builders of new sections (the MT5 shadow pairing table, for one) return a ``Section`` and
the report appends it: nothing here knows what a section is about. Every table is
exported as ``<name>.csv`` and ``<name>.json``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["Badge", "Figure", "Report", "Section", "Table", "WrittenReport", "render_html",
           "table_from_dicts", "write_report"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
STATUS_COLORS = {"ok": "#1a7f37", "degraded": "#bf8700", "down": "#cf222e", "idle": "#6e7781"}


@dataclass(frozen=True, slots=True)
class Table:
    """``name`` is the exports' file stem; the page shows the first ``show_rows`` rows,
    the exports hold them all."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""
    show_rows: int = 200
    shown: tuple[tuple[str, ...], ...] | None = None  # display cells, row for row

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"table name {self.name!r}: use lower-case letters, digits, _ -")
        for row in (*self.rows, *(self.shown or ())):
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.name}: row {row!r} does not match "
                                 f"columns {self.columns}")
        if self.shown is not None and len(self.shown) != len(self.rows):
            raise ValueError(f"table {self.name}: {len(self.shown)} shown rows for "
                             f"{len(self.rows)} rows")

    def records(self) -> list[dict[str, Any]]:
        return [{c: _jsonable(v) for c, v in zip(self.columns, row, strict=True)}
                for row in self.rows]


@dataclass(frozen=True, slots=True)
class Badge:
    label: str
    status: str  # ok | degraded | down | idle
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Figure:
    """One key figure of the header strip: ``tone`` good | bad | "" colours the value."""

    key: str
    label: str
    value: str
    detail: str = ""
    tone: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    id: str
    title: str
    notes: tuple[str, ...] = ()
    verdict: str = ""  # one sentence a reader takes away (the A/B test's answer)
    badges: tuple[Badge, ...] = ()
    charts: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    title: str
    meta: tuple[tuple[str, str], ...] = ()
    sections: tuple[Section, ...] = ()
    figures: tuple[Figure, ...] = ()
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class WrittenReport:
    html: Path
    exports: tuple[Path, ...]


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v != 0 and abs(v) < 0.001:
            return f"{v:.2e}"
        return f"{v:,.4f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.2f}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def write_report(report: Report, out_dir: Path, html_name: str = "report.html",
                 ) -> WrittenReport:
    """Write ``<out_dir>/<html_name>`` and ``<table>.csv`` / ``<table>.json`` per table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exports: list[Path] = []
    seen: set[str] = set()
    for section in report.sections:
        for table in section.tables:
            if table.name in seen:
                raise ValueError(f"two tables named {table.name!r}: export names must be unique")
            seen.add(table.name)
            csv_path = out_dir / f"{table.name}.csv"
            with csv_path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(table.columns)
                for row in table.rows:
                    writer.writerow(["" if v is None else _jsonable(v) for v in row])
            json_path = out_dir / f"{table.name}.json"
            json_path.write_text(json.dumps(table.records(), indent=1, default=str) + "\n",
                                 encoding="utf-8")
            exports += [csv_path, json_path]
    html_path = out_dir / html_name
    html_path.write_text(render_html(report), encoding="utf-8")
    return WrittenReport(html_path, tuple(exports))


_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0; color: #24292f; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 6px 0; font-size: 22px; }
header .meta { font-size: 12px; color: #d0d7de; }
header .meta span { margin-right: 18px; white-space: nowrap; }
nav { padding: 8px 28px; background: #fff; border-bottom: 1px solid #d0d7de; font-size: 13px; }
nav a { margin-right: 16px; color: #0969da; text-decoration: none; }
main { padding: 8px 28px 40px 28px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px;
          margin: 18px 0; padding: 14px 18px; }
section h2 { font-size: 18px; margin: 0 0 10px 0; }
.note { font-size: 13px; color: #57606a; margin: 4px 0 10px 0; max-width: 1100px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0 14px 0; }
.charts svg { border: 1px solid #eaeef2; border-radius: 4px; }
.badges { margin: 6px 0 12px 0; }
.badge { display: inline-block; border-radius: 12px; padding: 3px 10px; margin: 0 8px 6px 0;
         color: #fff; font-size: 12px; font-weight: 600; }
.badge small { font-weight: 400; opacity: 0.9; margin-left: 6px; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0 4px 0; }
th, td { border-bottom: 1px solid #eaeef2; padding: 4px 10px; text-align: right;
         white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
td:first-child, th:first-child, td.t { text-align: left; }
.tablewrap { max-height: 420px; overflow: auto; border: 1px solid #eaeef2; display: inline-block;
             max-width: 100%; }
h3 { font-size: 14px; margin: 14px 0 4px 0; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; padding: 14px 28px 0 28px; }
.figure { background: #fff; border: 1px solid #d0d7de; border-radius: 6px;
          padding: 8px 12px; min-width: 96px; }
.figure .label { font-size: 11px; color: #57606a; text-transform: uppercase; }
.figure .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.figure .detail { font-size: 11px; color: #57606a; }
.figure.good .value { color: #1a7f37; } .figure.bad .value { color: #cf222e; }
.verdict { font-size: 15px; font-weight: 600; border-left: 4px solid #1f6feb;
           background: #f6f8fa; padding: 8px 12px; margin: 6px 0 12px 0; }
.exports { font-size: 12px; color: #57606a; }
.exports a { color: #0969da; }
"""


def render_html(report: Report) -> str:
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched when the report is viewed: inline style and SVG only.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{escape(report.title)}</h1><div class=\"meta\">",
    ]
    for key, value in report.meta:
        out.append(f"<span><b>{escape(key)}</b> {escape(value)}</span>")
    out.append(f"<span><b>generated</b> {escape(report.generated_at.isoformat(timespec='seconds'))}"
               "</span></div></header>")
    if report.figures:
        out.append('<div class="figures">' + "".join(
            f'<div class="figure {escape(f.tone)}" data-figure="{escape(f.key)}">'
            f'<div class="label">{escape(f.label)}</div>'
            f'<div class="value">{escape(f.value)}</div>'
            + (f'<div class="detail">{escape(f.detail)}</div>' if f.detail else "")
            + "</div>" for f in report.figures) + "</div>")
    out.append("<nav>" + "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>'
                                 for s in report.sections) + "</nav><main>")
    for s in report.sections:
        out.append(f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>')
        if s.verdict:
            out.append(f'<p class="verdict" data-verdict>{escape(s.verdict)}</p>')
        out += [f'<p class="note">{escape(n)}</p>' for n in s.notes]
        if s.badges:
            out.append('<div class="badges">')
            for b in s.badges:
                color = STATUS_COLORS.get(b.status, STATUS_COLORS["idle"])
                out.append(f'<span class="badge" data-status="{escape(b.status)}" '
                           f'style="background:{color}">{escape(b.label)}: '
                           f"{escape(b.status)}<small>{escape(b.detail)}</small></span>")
            out.append("</div>")
        if s.charts:
            out.append('<div class="charts">' + "".join(s.charts) + "</div>")
        for t in s.tables:
            out.append(_table_html(t))
        out.append("</section>")
    out.append("</main></body></html>")
    return "\n".join(out)


def _table_html(t: Table) -> str:
    parts = [f'<h3 id="table-{escape(t.name)}">{escape(t.title)}</h3>']
    if t.note:
        parts.append(f'<p class="note">{escape(t.note)}</p>')
    parts.append(f'<div class="tablewrap"><table data-table="{escape(t.name)}"><thead><tr>')
    parts += [f"<th>{escape(c)}</th>" for c in t.columns]
    parts.append("</tr></thead><tbody>")
    for i, row in enumerate(t.rows[:t.show_rows]):
        cells = t.shown[i] if t.shown is not None else None
        parts.append("<tr>" + "".join(
            f'<td class="t">{escape(v)}</td>' if isinstance(v, str) else
            f"<td>{escape(cells[j] if cells is not None else _cell(v))}</td>"
            for j, v in enumerate(row)) + "</tr>")
    parts.append("</tbody></table></div>")
    shown = (f"showing {t.show_rows} of {len(t.rows)} rows; "
             if len(t.rows) > t.show_rows else f"{len(t.rows)} rows; ")
    parts.append(f'<p class="exports">{shown}export: <a href="{escape(t.name)}.csv">'
                 f'{escape(t.name)}.csv</a> · <a href="{escape(t.name)}.json">'
                 f"{escape(t.name)}.json</a></p>")
    return "".join(parts)


def table_from_dicts(name: str, title: str, rows: Sequence[dict[str, Any]],
                     columns: Sequence[str] | None = None, note: str = "") -> Table:
    """A table from records (columns: the given ones, else the first record's keys)."""
    cols = tuple(columns) if columns is not None else (tuple(rows[0]) if rows else ())
    return Table(name, title, cols, tuple(tuple(r.get(c) for c in cols) for r in rows), note)
