"""The replay reports under a directory, for the console's Replays page: each directory
holding a ``report.html`` (what `dta replay --report DIR` writes, with a CSV and a JSON
export per table and ``run.json``), with the key figures read from its ``run.json``.

``report_file`` is the only way a file is handed out: the name must be a report listed
here and the file one of its own (the report, ``run.json`` or an export), resolved inside
the directory, so no request can reach any other file (``..``, absolute paths, symbolic
links out of the tree are all refused as not found).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.errors import NotFound

__all__ = ["MAX_DEPTH", "ReportEntry", "list_reports", "report_file"]

REPORT = "report.html"
RUN = "run.json"
MAX_DEPTH = 3  # report directories this deep below the root are found
EXPORT_SUFFIXES = (".csv", ".json")


@dataclass(frozen=True, slots=True)
class ReportEntry:
    name: str  # the report's directory, relative to the root (posix)
    written_at: datetime
    symbol: str | None
    timeframe: str | None
    first_bar: str | None
    last_bar: str | None
    status: str | None
    trades: int | None
    total_pnl: float | None
    win_rate: float | None
    max_drawdown_pct: float | None
    ab: bool
    exports: tuple[str, ...]  # file names, run.json first


def list_reports(root: Path) -> list[ReportEntry]:
    """Every report under ``root``, newest first; none when ``root`` does not exist."""
    base = root.resolve()
    if not base.is_dir():
        return []
    found = []
    for html in base.rglob(REPORT):
        folder = html.parent
        if len(folder.relative_to(base).parts) > MAX_DEPTH or not _inside(html, base):
            continue
        found.append(_entry(base, folder, html))
    return sorted(found, key=lambda e: (e.written_at, e.name), reverse=True)


def report_file(root: Path, name: str, file: str = REPORT) -> Path:
    """The path of ``file`` of report ``name`` under ``root``; NotFound otherwise."""
    base = root.resolve()
    listed = {e.name: e for e in list_reports(root)}
    entry = listed.get(name)
    if entry is None or (file != REPORT and file not in entry.exports):
        raise NotFound(f"no report file {name}/{file}")
    path = (base / name / file).resolve()
    if not _inside(path, base) or path.parent != (base / name).resolve():
        raise NotFound(f"no report file {name}/{file}")
    return path


def _inside(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base)
    except ValueError:
        return False
    return True


def _entry(base: Path, folder: Path, html: Path) -> ReportEntry:
    run = _run_json(folder / RUN)
    replay = run.get("replay") or {}
    data = replay.get("data") or {}
    results = run.get("results") or {}
    exports = sorted(p.name for p in folder.iterdir()
                     if p.is_file() and p.suffix in EXPORT_SUFFIXES and p.name != RUN
                     and _inside(p, base))
    return ReportEntry(
        name=folder.relative_to(base).as_posix() or ".",
        written_at=datetime.fromtimestamp(html.stat().st_mtime, UTC),
        symbol=data.get("symbol"), timeframe=data.get("timeframe"),
        first_bar=data.get("first_bar"), last_bar=data.get("last_bar"),
        status=run.get("status"), trades=_number(results.get("trades"), int),
        total_pnl=_number(results.get("total_pnl"), float),
        win_rate=_number(results.get("win_rate"), float),
        max_drawdown_pct=_number(results.get("max_drawdown_pct"), float),
        ab=bool(replay.get("ab")),
        exports=((RUN,) if (folder / RUN).is_file() else ()) + tuple(exports))


def _run_json(path: Path) -> dict[str, Any]:
    """A report's run.json; an unreadable or foreign one reads as empty (the report is
    still listed, without figures)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)
