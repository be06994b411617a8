"""The replay reports under a directory (executor/reports/catalog.py): listing with key
figures from run.json, and handing out a report's own files only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from domain.errors import NotFound
from executor.reports.catalog import list_reports, report_file


def a_report(folder: Path, *, run: object = None, exports: tuple[str, ...] = (),
             mtime: float | None = None) -> Path:
    """A directory as `dta replay --report` leaves it (report.html, exports, run.json)."""
    folder.mkdir(parents=True)
    html = folder / "report.html"
    html.write_text("<html></html>")
    for name in exports:
        (folder / name).write_text("x\n")
    if run is not None:
        (folder / "run.json").write_text(run if isinstance(run, str) else json.dumps(run))
    if mtime is not None:
        os.utime(html, (mtime, mtime))
    return folder


RUN = {"status": "completed", "replay": {"ab": None, "data": {
    "symbol": "EURUSD", "timeframe": "M15", "first_bar": "2023-08-01T00:00:00+00:00",
    "last_bar": "2023-10-02T06:45:00+00:00"}},
       "results": {"trades": 19, "total_pnl": 104.3, "win_rate": 0.368,
                   "max_drawdown_pct": 0.6}}


def test_reports_are_listed_newest_first_with_their_figures(tmp_path: Path) -> None:
    a_report(tmp_path / "aug", run=RUN, exports=("trades.csv", "trades.json"), mtime=2e9)
    a_report(tmp_path / "ab" / "seed7", run={**RUN, "replay": {"ab": {"seed": 7}}},
             mtime=1e9)
    a_report(tmp_path / "broken", run="{not json", mtime=1.5e9)
    (tmp_path / "not-a-report").mkdir()
    entries = list_reports(tmp_path)
    assert [e.name for e in entries] == ["aug", "broken", "ab/seed7"]
    aug, broken, ab = entries
    assert (aug.symbol, aug.timeframe, aug.trades, aug.total_pnl) == ("EURUSD", "M15", 19,
                                                                      104.3)
    assert aug.exports == ("run.json", "trades.csv", "trades.json") and not aug.ab
    assert broken.trades is None and broken.symbol is None  # listed, without figures
    assert ab.ab
    assert list_reports(tmp_path / "missing") == []


def test_only_a_reports_own_files_are_handed_out(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    a_report(root / "aug", run=RUN, exports=("trades.csv",))
    (root / "aug" / "journal.sqlite").write_text("not for download")
    secret = tmp_path / "secret.csv"
    secret.write_text("password\n")
    (root / "aug" / "leak.csv").symlink_to(secret)
    assert report_file(root, "aug") == (root / "aug" / "report.html").resolve()
    assert report_file(root, "aug", "trades.csv").name == "trades.csv"
    for name, file in [("aug", "journal.sqlite"), ("aug", "leak.csv"), ("..", "secret.csv"),
                       ("aug", "../../secret.csv"), ("aug/..", "report.html"),
                       (str(tmp_path), "secret.csv"), ("nope", "report.html")]:
        with pytest.raises(NotFound):
            report_file(root, name, file)
