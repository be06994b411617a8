"""The operator console on the `make run` demo journal: page render times, and how long a
journal write takes to reach an open page (issue 18: < 200 ms a page, < 1 s a write).

The demo journal is made as `make run` makes it (the example settings, the whole EURUSD
M15 sample, paper) in a temporary directory. The console is `create_app` served by
uvicorn on 127.0.0.1 in this process (a thread), as `dta console` serves it.

- **Pages**: each page of the navigation plus the detail pages (one approval request with
  its chart, one order's trace with its chart) and the fragments live updates re-render,
  fetched over HTTP by a signed-in client after one warm-up; median and p95 of ``--runs``.
- **Write -> page**: Chromium (Playwright, Debian's ``chromium``) holds /approvals open;
  the benchmark queues an approval request in the journal (a commit, as the daemon's)
  and the page records, by a MutationObserver, when the request's card appears; wall
  clock of the same machine on both sides. Skipped (with a reason) without chromium.

    .venv/bin/python -m benchmarks.bench_console [--quick] [--runs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_PAGE_MS = 200.0
GOAL_WRITE_MS = 1000.0
PASSWORD = "bench-password-123"
CONFIG = ROOT / "config" / "dta.example.toml"
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"


def _settings(url: str) -> Any:
    from executor.console.security import hash_password
    from executor.settings import load_settings

    users = {"ann": {"password_hash": hash_password(PASSWORD),
                     "roles": ["analyst", "operator"]}}
    return load_settings(CONFIG, journal={"url": url}, console={"users": users})


def demo_journal(url: str) -> None:
    """The `make run` demo: the example settings over the whole sample, paper."""
    from executor.engine.clock import SimulatedClock
    from executor.journal.store import Journal
    from executor.settings import load_settings
    from executor.wiring import build_daemon

    journal = Journal.open(url)
    try:
        daemon = build_daemon(load_settings(CONFIG, journal={"url": url}), journal,
                              data=SAMPLE)
        daemon.executor.start()
        daemon.executor.run_replay(SimulatedClock(), daemon.feed.next_close_time)
        daemon.executor.stop("completed")
    finally:
        journal.close()


def queue_request(url: str, offset: int) -> int:
    """A pending request like the daemon's (the demo's first one, re-queued)."""
    from executor.journal.store import Journal

    j = Journal.open(url, migrate_schema=False, create=False)
    try:
        first = j.approvals.all()[0]
        intent = {**(first.intent or {}), "client_order_id": f"bench-{offset}"}
        approval_id = j.approvals.create_approval(
            decision_id=first.decision_id, account=first.account, symbol=first.symbol,
            direction=first.direction, intent=intent, why=first.why,
            created_at=first.created_at, expires_at=first.created_at + timedelta(days=3650))
        j.commit(durable=True)
        return approval_id
    finally:
        j.close()


class Served:
    """uvicorn serving the console app on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class _Client:
    """A signed-in HTTP client (the standard library's urllib with a cookie jar)."""

    def __init__(self, base: str) -> None:
        import http.cookiejar
        import urllib.parse
        import urllib.request

        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        token = re.search(r'name="csrf_token" value="([^"]+)"', self.get("/login")[1])
        assert token is not None
        form = urllib.parse.urlencode({"username": "ann", "password": PASSWORD,
                                       "csrf_token": token.group(1)}).encode()
        with self.opener.open(f"{base}/login", data=form, timeout=30) as r:
            assert r.status == 200 and "/login" not in r.url, r.url

    def get(self, path: str) -> tuple[int, str]:
        with self.opener.open(f"{self.base}{path}", timeout=30) as r:
            return r.status, r.read().decode()


def time_pages(base: str, paths: list[str], runs: int) -> dict[str, Any]:
    client = _Client(base)
    out: dict[str, Any] = {}
    for path in paths:
        client.get(path)  # warm-up
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            status, body = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        out[path] = {"status": status, "bytes": len(body.encode()),
                     "median_ms": statistics.median(times),
                     "p95_ms": times[max(0, int(len(times) * 0.95) - 1)],
                     "max_ms": times[-1]}
    return out


_OBSERVE = """() => { window.__seen = {};
  new MutationObserver(() => {
    document.querySelectorAll("[data-approval]").forEach(el => {
      const id = el.dataset.approval;
      if (!(id in window.__seen)) window.__seen[id] = Date.now();
    });
  }).observe(document.body, {childList: true, subtree: true}); }"""


def time_write_to_page(base: str, url: str, writes: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        return {"skipped": "Debian's chromium is not installed"}
    lags = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "ann")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{base}/approvals")
            page.wait_for_function("document.body.dataset.live === 'on'", timeout=10_000)
            page.evaluate(_OBSERVE)
            for k in range(writes):
                time.sleep(0.3)  # out of step with the probe
                before = time.time() * 1000
                approval_id = queue_request(url, k)
                page.wait_for_selector(f"#approval-{approval_id}", timeout=10_000)
                seen = page.evaluate(f"window.__seen['{approval_id}']")
                lags.append(float(seen) - before)
        finally:
            browser.close()
    lags.sort()
    return {"writes": writes, "median_ms": statistics.median(lags), "max_ms": lags[-1],
            "all_ms": [round(x, 1) for x in lags]}


def run(*, runs: int = 20, writes: int = 10) -> dict[str, Any]:
    from executor.console.app import create_app
    from executor.console.pages import NAV
    from executor.journal.store import Journal

    with tempfile.TemporaryDirectory(prefix="dta-bench-console-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'paper-demo.sqlite'}"
        started = time.perf_counter()
        demo_journal(url)
        prepared_s = time.perf_counter() - started
        j = Journal.open(url, migrate_schema=False, create=False)
        try:
            order = j.orders.all()[len(j.orders.all()) // 2].client_order_id
            counts = {"orders": len(j.orders.all()), "approvals": len(j.approvals.all())}
        finally:
            j.close()
        paths = [e.path for e in NAV] + ["/approvals/1", f"/orders/{order}",
                                         "/approvals/queue", "/orders/list", "/state/bar"]
        app = create_app(_settings(url))
        with Served(app) as base:
            pages = time_pages(base, paths, runs)
            write = time_write_to_page(base, url, writes)
    return {"journal": counts, "prepare_s": prepared_s, "runs": runs, "pages": pages,
            "write_to_page": write, "goal_page_ms": GOAL_PAGE_MS,
            "goal_write_ms": GOAL_WRITE_MS}


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    pages = r["pages"]
    worst = max(pages, key=lambda p: pages[p]["p95_ms"])
    w = pages[worst]
    rows = [("console page render over HTTP, demo journal (worst page p95)",
             f"{w['p95_ms']:.0f} ms ({worst}; median {w['median_ms']:.0f} ms)",
             f"< {GOAL_PAGE_MS:g} ms", "MET" if w["p95_ms"] < GOAL_PAGE_MS else "MISSED")]
    write = r["write_to_page"]
    if "skipped" in write:
        rows.append(("journal write -> open console page", write["skipped"],
                     f"< {GOAL_WRITE_MS:g} ms", "-"))
    else:
        rows.append(("journal write -> open console page (Chromium, max)",
                     f"{write['max_ms']:.0f} ms (median {write['median_ms']:.0f} ms, "
                     f"{write['writes']} writes)", f"< {GOAL_WRITE_MS:g} ms",
                     "MET" if write["max_ms"] < GOAL_WRITE_MS else "MISSED"))
    return rows


LAST_RESULTS: dict[str, Any] | None = None


def main(argv: list[str] | None = None) -> None:
    global LAST_RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs a page, 3 writes")
    parser.add_argument("--runs", type=int, default=None, help="runs per page (20)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv or [])
    r = run(runs=args.runs or (5 if args.quick else 20), writes=3 if args.quick else 10)
    LAST_RESULTS = r
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return
    print(f"demo journal: {r['journal']['orders']} orders, {r['journal']['approvals']} "
          f"approval requests (prepared in {r['prepare_s']:.1f} s)")
    print(f"{'page':<44} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'KiB':>6}")
    for path, p in r["pages"].items():
        print(f"{path:<44} {p['median_ms']:>10.1f} {p['p95_ms']:>8.1f} {p['max_ms']:>8.1f} "
              f"{p['bytes'] / 1024:>6.0f}")
    w = r["write_to_page"]
    print("write -> page: " + (w["skipped"] if "skipped" in w else
                               f"median {w['median_ms']:.0f} ms, max {w['max_ms']:.0f} ms "
                               f"over {w['writes']} writes ({w['all_ms']})"))


if __name__ == "__main__":
    main(sys.argv[1:])
