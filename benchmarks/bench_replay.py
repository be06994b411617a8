"""Replay throughput (bars/s, full pipeline, journal on) and per-bar decision latency.

Runs the same wiring as `dta run --mode paper` on the bundled EURUSD M15 sample into a
fresh SQLite journal (WAL; a paper daemon's is synchronous=NORMAL), and once more with
an in-memory SQLite journal to show what the disk costs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
CONFIG = ROOT / "config" / "dta.example.toml"


def _run(url: str) -> dict[str, Any]:
    from benchmarks.bench_latency import as_dta_run
    from executor.engine.clock import SimulatedClock
    from executor.journal.store import Journal
    from executor.settings import load_settings
    from executor.wiring import build_daemon

    settings = load_settings(CONFIG, journal={"url": url})
    journal = Journal.open(url)
    daemon = build_daemon(settings, journal, data=SAMPLE)
    daemon.executor.start()
    with as_dta_run():
        started = time.perf_counter()
        daemon.executor.run_replay(SimulatedClock(), daemon.feed.next_close_time)
        elapsed = time.perf_counter() - started
    summary = daemon.executor.stop("completed")
    journal.close()
    lat = daemon.executor.stats.latency_percentiles()
    bars = summary["bars_processed"]
    return {"bars": bars, "orders": sum(summary["orders"].values()), "elapsed_s": elapsed,
            "bars_per_s": bars / elapsed, "p50_us": lat["p50_us"], "p99_us": lat["p99_us"],
            "max_us": lat["max_us"]}


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        disk = _run(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
    memory = _run("sqlite://")
    return {"replay_sqlite_file": disk, "replay_sqlite_memory": memory}


def main() -> None:
    results = run()
    print("replay throughput, full pipeline (EURUSD M15, 24,424 bars)")
    print(f"{'journal':<16}{'bars/s':>10}{'p50 us':>10}{'p99 us':>10}{'max us':>10}{'orders':>8}")
    for name, r in results.items():
        print(f"{name:<16}{r['bars_per_s']:>10,.0f}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}"
              f"{r['max_us']:>10.0f}{r['orders']:>8}")
    print("goals: replay faster than backtesting.py (~126k bars/s reference, issue 9); "
          "decision p99 <= 1 ms per symbol live")
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
