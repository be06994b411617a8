"""500 symbols closing at once: how long one cycle takes after the bar close.

500 M15 streams derived from the bundled EURUSD sample (symbol k: the sample's rows from
offset 37*k on, so the symbols do not decide in lockstep, plus a price offset of 0.01*k),
all on one time grid so every stream closes a bar at the same tick. After a warm-up
(a start-up backlog of ``--warmup`` bars per stream, one catch-up cycle), each measured
cycle releases one closed bar per stream and runs ``run_cycle`` once, with ``now`` = the
bar close + the settle delay, the journal polls forced as on every live cycle, the live
commit cadence (one commit per cycle; ``--mode paper``: per 1,000 rows), the example
settings (deterministic providers, every guardrail), paper broker, SQLite file journal.
Cycle time is wall time from the scheduler tick (cycle start) to the end of the cycle's
commit; the feed is in memory, so network time is excluded, as the goal says.

    .venv/bin/python -m benchmarks.bench_many_symbols [--quick] [--symbols 500] [--cycles 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_latency import (  # noqa: E402
    MANY_SYMBOL_OVERRIDES,
    LiveFeed,
    Stream,
    TimedPaperBroker,
    as_dta_run,
    bench_settings,
    build_executor,
    derived_bars,
    dist,
    force_live_polls,
    load_sample,
)
from domain import Bar  # noqa: E402
from executor.journal.store import Journal  # noqa: E402

GOAL_S = 1.0
START = datetime(2024, 1, 1, tzinfo=UTC)


def run(*, symbols: int = 500, warmup: int = 150, cycles: int = 20,
        mode: str = "live") -> dict[str, Any]:
    loaded = load_sample()
    base = loaded.bars
    total = warmup + cycles
    streams: dict[Stream, list[Bar]] = {}
    for k in range(symbols):
        sym = f"SYN{k:03d}"
        streams[(sym, "M15")] = derived_bars(base, sym, "M15", START, total,
                                             row_offset=37 * k, price_offset=0.01 * k)
    order = list(streams)
    step = timedelta(minutes=15)
    with (tempfile.TemporaryDirectory(prefix="dta-bench-many-") as tmp,
          contextlib.ExitStack() as started_up):
        settings = bench_settings(f"sqlite:///{Path(tmp) / 'journal.sqlite'}",
                                  **MANY_SYMBOL_OVERRIDES)
        settle = timedelta(seconds=settings.scheduler.settle_delay_seconds)
        journal = Journal.open(settings.journal.url)
        feed = LiveFeed(streams)
        broker = TimedPaperBroker(contract_size=settings.paper.contract_size,
                                  initial_balance=settings.paper.initial_balance)
        executor = build_executor(settings, journal, feed, order, broker,
                                  {s: loaded.point for s, _ in order} if loaded.point else None,
                                  mode)
        t = time.perf_counter()
        executor.start()
        start_s = time.perf_counter() - t
        started_up.enter_context(as_dta_run())
        # Warm-up: the backlog of `warmup` closed bars per stream, caught up in one cycle.
        feed.release(warmup)
        t = time.perf_counter()
        executor.run_cycle(START + warmup * step + settle)
        warmup_s = time.perf_counter() - t
        orders_before = len(broker.submits)
        times: list[float] = []
        last_order_ms: list[float] = []
        orders_per_cycle: list[int] = []
        for c in range(cycles):
            feed.release(1)
            force_live_polls(executor)
            mark = len(broker.submits)
            t0 = time.perf_counter_ns()
            handled = executor.run_cycle(START + (warmup + c + 1) * step + settle)
            t1 = time.perf_counter_ns()
            assert handled == symbols, f"cycle {c} handled {handled} bars, not {symbols}"
            times.append((t1 - t0) / 1e9)
            submits = broker.submits[mark:]
            orders_per_cycle.append(len(submits))
            if submits:
                last_order_ms.append((submits[-1][0] - t0) / 1e6)
        summary = executor.stop("completed")
        journal.close()
    return {
        "symbols": symbols, "warmup_bars_per_symbol": warmup, "cycles": cycles, "mode": mode,
        "start_s": start_s, "warmup_s": warmup_s,
        "warmup_bars_per_s": symbols * warmup / warmup_s,
        "cycle_s": dist(times), "cycle_s_all": times,
        "orders_measured": len(broker.submits) - orders_before,
        "orders_per_cycle": orders_per_cycle,
        "last_order_in_cycle_ms": dist(last_order_ms),
        "proposals": summary["proposals"], "vetoes": summary["vetoes"],
        "goal_s": GOAL_S, "loadavg": os.getloadavg(),
    }


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    c = r["cycle_s"]
    return [(f"cycle time, {r['symbols']} symbols closing at once: p50 / max "
             f"({r['cycles']} cycles)",
             f"{c['p50'] * 1000:.0f} / {c['max'] * 1000:.0f} ms",
             f"< {GOAL_S:g} s", "MET" if c["max"] < GOAL_S else "MISSED")]


LAST_RESULTS: dict[str, Any] | None = None


def main(argv: list[str] | None = None) -> None:
    global LAST_RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="80 warm-up bars, 6 cycles")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=None, help="bars per stream (150)")
    parser.add_argument("--cycles", type=int, default=None, help="measured cycles (20)")
    parser.add_argument("--mode", choices=["live", "paper"], default="live")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv or [])
    warmup = args.warmup or (80 if args.quick else 150)
    cycles = args.cycles or (6 if args.quick else 20)
    r = run(symbols=args.symbols, warmup=warmup, cycles=cycles, mode=args.mode)
    LAST_RESULTS = results = r
    c = r["cycle_s"]
    print(f"{r['symbols']} symbols closing at once, one closed M15 bar each per cycle, "
          f"{r['mode']} commit cadence, SQLite file journal (load average "
          f"{r['loadavg'][0]:.1f})")
    print(f"start-up {r['start_s']:.2f} s; warm-up backlog {r['warmup_bars_per_symbol']} "
          f"bars/symbol in {r['warmup_s']:.1f} s ({r['warmup_bars_per_s']:,.0f} bars/s)")
    print(f"{'measured':<40}{'p50':>9}{'p90':>9}{'max':>9}{'mean':>9}   goal")
    verdict = "MET" if c["max"] < GOAL_S else "MISSED"
    print(f"{'cycle time, s (' + str(r['cycles']) + ' cycles)':<40}{c['p50']:>9.3f}"
          f"{c['p90']:>9.3f}{c['max']:>9.3f}{c['mean']:>9.3f}   < {GOAL_S:g} s: {verdict}")
    lo = r["last_order_in_cycle_ms"]
    if lo["n"]:
        print(f"{'last order of a cycle at broker, ms':<40}{lo['p50']:>9.1f}{lo['p90']:>9.1f}"
              f"{lo['max']:>9.1f}{lo['mean']:>9.1f}")
    print(f"orders per measured cycle: {r['orders_per_cycle']}")
    if args.json:
        print(json.dumps({k: v for k, v in results.items()}, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
