"""The HTML report of a replay of the bundled sample: self-contained, every table exported,
and its charts actually drawn by a browser (headless Chromium screenshot, checked pixel by
pixel with a small PNG reader below; no imaging library needed)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
import subprocess
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.daemon_helpers import settings_for
from support.samples import write_sample_head

from executor.journal.store import Journal
from executor.reports.ab import ABDesign
from executor.reports.analysis import analyze_run
from executor.reports.harness import ReplayHarness, ReplayRequest
from executor.reports.html import write_report
from executor.reports.journal_data import load_run_data
from executor.reports.replay_report import build_report

CHROMIUM = shutil.which("chromium")
WIDTH, HEIGHT = 1280, 2800


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    data = write_sample_head(tmp / "EURUSD_M15.csv", 3000)
    url = f"sqlite:///{tmp / 'journal.sqlite'}"
    settings = settings_for(url)
    journal = Journal.open(url)
    design = ABDesign(seed=3, resamples=500)
    try:
        outcome = ReplayHarness(settings, journal, ReplayRequest(data, ab=design)).run()
        started = time.perf_counter()
        analysis = analyze_run(load_run_data(journal), contract_size=100_000.0,
                               initial_balance=10_000.0, ab_design=design,
                               ab_run_id=outcome.run_id)
        written = write_report(build_report(analysis, title="Replay", run_info=outcome.info,
                                            meta=(("data", "EURUSD M15"),)), tmp / "out")
        seconds = time.perf_counter() - started
    finally:
        journal.close()
    return {"written": written, "analysis": analysis, "seconds": seconds, "dir": tmp / "out"}


def test_report_is_self_contained_and_exports_every_table(report: dict[str, Any]) -> None:
    html = report["written"].html.read_text()
    assert report["seconds"] < 5.0
    assert "<script" not in html.lower()
    assert "Content-Security-Policy" in html
    # every link is a relative export next to the page; no URL but the SVG namespace
    links = re.findall(r'(?:href|src)="([^"#][^"]*)"', html)
    assert links and all(":" not in link for link in links)
    assert set(re.findall(r"https?://[^\s\"']+", html)) <= {"http://www.w3.org/2000/svg"}
    charts = set(re.findall(r'data-chart="([^"]+)"', html))
    assert {"price", "equity", "drawdown", "r_histogram", "provider_agreement",
            "provider_latency", "provider_hit_rate", "ab_intervals"} <= charts
    # no empty charts: the local providers cost nothing, so that chart is left out, said
    assert "provider_cost" not in charts and "Cost chart left out: every call cost" in html
    assert "no data" not in html
    assert 'class="badge" data-status="ok"' in html
    tables = re.findall(r'data-table="([^"]+)"', html)
    assert {"results", "trades", "equity_curve", "r_histogram", "providers", "ab_arms",
            "ab_differences", "ab_assignment", "run_info", "smc_events"} <= set(tables)
    out = report["dir"]
    assert sorted(p.name for p in report["written"].exports) == sorted(
        f"{t}.{ext}" for t in tables for ext in ("csv", "json"))
    trades = report["analysis"].book.closed
    with (out / "trades.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(trades) > 0
    assert float(rows[0]["pnl"]) == pytest.approx(trades[0].pnl)
    records = json.loads((out / "trades.json").read_text())
    assert list(records[0]) == list(rows[0])
    info = {r["key"]: r["value"] for r in json.loads((out / "run_info.json").read_text())}
    assert len(info["data.sha256"]) == 64 and info["ab.seed"] == "3"


def test_report_of_an_empty_journal_degrades(tmp_path: Path) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        analysis = analyze_run(load_run_data(journal), contract_size=1.0, initial_balance=1.0)
    finally:
        journal.close()
    written = write_report(build_report(analysis, title="Empty", run_info={}), tmp_path / "r")
    html = written.html.read_text()
    assert "No provider calls or signals" in html
    # no chart frames without data: each panel left out says why in one line
    assert "data-chart" not in html and "no data" not in html
    assert "Price panel left out: the journal holds no bars." in html
    assert "Equity and drawdown charts left out: no trade closed" in html
    assert "R histogram left out" in html
    assert (tmp_path / "r" / "trades.csv").read_text().startswith("entry_time,")


# --------------------------------------------------------------------------- the browser


def read_png(path: Path, max_rows: int) -> tuple[int, list[bytes], int]:
    """8-bit RGB/RGBA, non-interlaced PNG -> (width, the first ``max_rows`` unfiltered rows,
    bytes per pixel)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, bytearray()
    width = height = channels = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, "unsupported PNG"
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride, bpp = width * channels, channels
    lo = int.from_bytes(b"\x7f" * stride, "big")
    hi = int.from_bytes(b"\x80" * stride, "big")
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(min(max_rows, height)):
        start = y * (stride + 1)
        f, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if f == 2:  # Up: add the row above byte by byte, mod 256 (SWAR on big ints)
            a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
            line = bytearray((((a & lo) + (b & lo)) ^ ((a ^ b) & hi)).to_bytes(stride, "big"))
        elif f == 1:  # Sub
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif f == 3:  # Average
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 255
        elif f == 4:  # Paeth
            for x in range(stride):
                a_ = line[x - bpp] if x >= bpp else 0
                b_, c_ = prev[x], (prev[x - bpp] if x >= bpp else 0)
                p = a_ + b_ - c_
                pa, pb, pc = abs(p - a_), abs(p - b_), abs(p - c_)
                line[x] = (line[x] + (a_ if pa <= pb and pa <= pc else b_ if pb <= pc
                                      else c_)) & 255
        rows.append(bytes(line))
        prev = line
    return width, rows, channels


def colour_counts(rows: list[bytes], channels: int, first_row: int = 0) -> Counter[Any]:
    """How many pixels of each RGB colour the rows hold (from ``first_row`` on)."""
    counts: Counter[Any] = Counter()
    for row in rows[first_row:]:
        counts.update(zip(row[0::channels], row[1::channels], row[2::channels], strict=True))
    return counts


def near(counts: Counter[Any], rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    return sum(n for colour, n in counts.items()
               if all(abs(c - t) <= tolerance for c, t in zip(colour, rgb, strict=True)))


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="`chromium` is not on PATH "
                    "(apt-get install -y chromium) so the report cannot be rendered")
def test_charts_render_in_headless_chromium(report: dict[str, Any], tmp_path: Path) -> None:
    url = report["written"].html.resolve().as_uri()
    shot = tmp_path / "report.png"
    run = _chromium(f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", url, tmp=tmp_path)
    assert shot.is_file(), run.stderr[-2000:]
    width, rows, channels = read_png(shot, max_rows=HEIGHT)
    assert width == WIDTH and len(rows) == HEIGHT
    counts = colour_counts(rows, channels, first_row=1200)
    # Below the header figures and the price panel, three charts: the equity line
    # (#1f6feb), the drawdown area (#d1242f at 35 % on white) and the histogram's losing
    # bars (#d1242f).
    equity_line = near(counts, (0x1F, 0x6F, 0xEB))
    drawdown_area = near(counts, (239, 178, 182))
    losing_bars = near(counts, (0xD1, 0x24, 0x2F))
    assert equity_line > 800, equity_line
    assert drawdown_area > 5_000, drawdown_area
    assert losing_bars > 2_000, losing_bars
    # and the chart area is not blank: many pixels differ from white and the page grey
    inked = sum(counts.values()) - counts[(255, 255, 255)] - counts[(0xF6, 0xF8, 0xFA)]
    assert inked > 30_000, inked

    dom = _chromium("--dump-dom", url, tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<svg[^>]+data-chart=", dom.stdout)) >= 8
    assert "<polyline" in dom.stdout and 'class="bar"' in dom.stdout
    assert "<script" not in dom.stdout.lower()


def test_header_figures_formats_and_ab_verdict(report: dict[str, Any]) -> None:
    """The header's key figures and the tables are formatted for people (the exports keep
    raw numbers); the A/B section states its verdict with the interval."""
    html = report["written"].html.read_text()
    m = report["analysis"].metrics
    figures = dict(re.findall(r'data-figure="([^"]+)">.*?<div class="value">([^<]*)</div>',
                              html))
    assert list(figures) == ["net_pnl", "return", "max_drawdown", "sharpe", "trades",
                             "win_rate", "profit_factor", "exposure"]
    assert re.fullmatch(r"[+−][\d,]+\.\d\d USD", figures["net_pnl"]), figures
    assert figures["win_rate"] == f"{m.win_rate * 100:.1f} %"
    assert figures["trades"] == f"{m.trades:,}"
    assert re.fullmatch(r"[+−]?\d+\.\d\d %", figures["return"]), figures
    first = report["analysis"].book.closed[0]
    cells = re.search(r'data-table="trades">.*?<tbody><tr>(.*?)</tr>', html).group(1)
    assert f"<td>{first.entry_price:.5f}</td>" in cells  # EURUSD: 5 digits
    assert " USD</td>" in cells and "e-0" not in cells
    verdict = re.search(r'<p class="verdict" data-verdict>([^<]+)</p>', html).group(1)
    assert re.search(r"(wins on mean R at 95 %|No difference at 95 % on mean R): enhanced "
                     r"- baseline [+−]?[\d.]+, 95 % interval \[[+−]?[\d.]+, [+−]?[\d.]+\]",
                     verdict), verdict
    rows = {r["metric"]: r["value"] for r in json.loads(
        (report["dir"] / "results.json").read_text())}
    assert rows["win rate"] == pytest.approx(m.win_rate)  # raw in the export


@pytest.mark.skipif(CHROMIUM is None, reason="`chromium` is not on PATH "
                    "(apt-get install -y chromium) so the report cannot be rendered")
def test_price_panel_renders_candles_trades_and_smc_events(report: dict[str, Any],
                                                           tmp_path: Path) -> None:
    """Chromium (through Playwright) lays the price panel out: candles, trade entries and
    exits, stop and target lines, and SMC events are on screen, inside the chart, and
    the panel's pixels hold both candle colours."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(report["written"].html.resolve().as_uri())
            drawn = page.evaluate("""() => {
                const svg = document.querySelector('svg[data-chart="price"]');
                const box = svg.getBoundingClientRect();
                const count = (sel) => [...svg.querySelectorAll(sel)].filter((e) => {
                    const r = e.getBoundingClientRect();
                    return r.width > 0 && r.height >= 0 && r.left >= box.left - 1
                        && r.right <= box.right + 1 && r.top >= box.top - 1
                        && r.bottom <= box.bottom + 1;
                }).length;
                const out = {};
                for (const k of ['candle', 'trade-entry', 'trade-exit', 'stop', 'target',
                                 'bos', 'choch', 'ob', 'fvg', 'sweep'])
                    out[k] = count('.' + k);
                out.width = box.width; out.height = box.height;
                return out;
            }""")
            shot = tmp_path / "price.png"
            page.locator('svg[data-chart="price"]').screenshot(path=str(shot))
        finally:
            browser.close()
    assert 1100 <= drawn["width"] <= 1104 and 460 <= drawn["height"] <= 464, drawn
    assert drawn["candle"] == 200, drawn
    assert drawn["trade-entry"] >= 3 and drawn["trade-exit"] >= 1, drawn
    assert drawn["stop"] >= 1 and drawn["target"] >= 1, drawn
    assert drawn["bos"] + drawn["choch"] >= 1 and drawn["ob"] + drawn["fvg"] >= 1, drawn
    _, rows, channels = read_png(shot, max_rows=460)
    counts = colour_counts(rows, channels)
    assert near(counts, (0x1A, 0x7F, 0x37)) > 300  # rising candles
    assert near(counts, (0xCF, 0x22, 0x2E)) > 300  # falling candles
