"""`make bench`: run every benchmark, print a table each, then one combined table of every
figure beside its goal; write benchmarks/results.json and benchmarks/results.md.

    .venv/bin/python -m benchmarks [--quick] [--only bench_latency,bench_memory]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCHES = ["bench_replay", "bench_smc", "bench_latency", "bench_vs_backtesting",
           "bench_many_symbols", "bench_memory", "bench_startup", "bench_ensemble",
           "bench_console"]
# Arguments for --quick, for modules whose main() takes an argv but not --quick.
QUICK_ARGS = {"bench_smc": ["--windows", "50"], "bench_ensemble": ["--decisions", "100"]}

Row = tuple[str, str, str, str]


def _replay_rows(r: dict[str, Any]) -> list[Row]:
    d = r["replay_sqlite_file"]
    return [("replay throughput, example strategy, SQLite file journal",
             f"{d['bars_per_s']:,.0f} bars/s ({d['bars']:,} bars, {d['orders']} orders)",
             "faster than backtesting.py", "see vs backtesting.py row")]


def _smc_rows(r: dict[str, Any]) -> list[Row]:
    if "ratio" not in r:
        return [("SnapshotBuilder.update per bar", f"{r['builder_us_per_bar']:.1f} us",
                 "(no goal set)", "-")]
    return [("SnapshotBuilder.update vs smartmoneyconcepts rolling recompute",
             f"{r['builder_us_per_bar']:.1f} us/bar, {r['ratio']:.0f}x faster",
             "(no goal set)", "-")]


# Rows for the modules that predate summary_rows().
ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "bench_replay": _replay_rows, "bench_smc": _smc_rows}


def _run_module(module: Any, args: list[str]) -> Any:
    """Call the module's main (with ``args`` when it takes an argv), capturing what its
    run() returned when it keeps no LAST_RESULTS."""
    captured: dict[str, Any] = {}
    original = getattr(module, "run", None)
    if original is not None:
        def capturing(*a: Any, **k: Any) -> Any:
            captured["r"] = original(*a, **k)
            return captured["r"]

        module.run = capturing
    try:
        if inspect.signature(module.main).parameters:
            module.main(args)
        else:
            module.main()
    finally:
        if original is not None:
            module.run = original
    return getattr(module, "LAST_RESULTS", None) or captured.get("r") or "printed"


def _table(rows: list[tuple[str, Row]]) -> str:
    head = ("benchmark", "figure", "measured", "goal", "verdict")
    cells = [head] + [(name, *row) for name, row in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c[i]).ljust(widths[i]) for i in range(len(head))) + " |"
             for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs of every bench")
    parser.add_argument("--only", default="", help="comma-separated module names")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    names = [n for n in args.only.split(",") if n] or BENCHES
    # Log as `dta run` does with the example settings (warning level, JSON on stderr), so
    # no benchmark pays for, or prints, info lines the daemon would not.
    from executor.log_setup import configure_logging

    configure_logging("warning")
    results: dict[str, Any] = {}
    rows: list[tuple[str, Row]] = []
    started = time.perf_counter()
    meta = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "quick": args.quick}
    for name in names:
        print(f"\n=== {name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ImportError as exc:
            print(f"skipped: {exc}")
            continue
        t = time.perf_counter()
        try:
            if hasattr(module, "main"):
                own_args = ["--quick"] if args.quick else []
                if name in QUICK_ARGS:
                    own_args = QUICK_ARGS[name] if args.quick else []
                results[name] = _run_module(module, own_args)
            else:
                results[name] = module.run()
                print(json.dumps(results[name], indent=2, default=str))
        except SystemExit as exc:  # a benchmark that cannot run here says why and skips
            print(exc)
            results[name] = f"skipped: {exc}"
            continue
        except Exception:
            traceback.print_exc()
            results[name] = "error"
            rows.append((name, ("(failed)", "error", "-", "-")))
            continue
        print(f"[{name}: {time.perf_counter() - t:.0f} s]", flush=True)
        r = results[name]
        if isinstance(r, dict):
            to_rows = getattr(module, "summary_rows", None) or ROWS.get(name)
            if to_rows is not None:
                try:
                    rows.extend((name, row) for row in to_rows(r))
                except (KeyError, TypeError, ValueError) as exc:
                    rows.append((name, ("(summary unavailable)", repr(exc), "-", "-")))
    meta["loadavg_end"] = os.getloadavg()
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["_meta"] = meta
    table = _table(rows)
    print(f"\n=== combined ({meta['cpus']} CPUs, Python {meta['python']}, "
          f"{meta['elapsed_s']:.0f} s, load average {meta['loadavg_start'][0]:.1f} at start, "
          f"{meta['loadavg_end'][0]:.1f} at end)")
    print(table)
    here = Path(__file__).parent
    (here / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (here / "results.md").write_text(
        f"# Benchmark figures ({meta['when']}, {meta['cpus']} CPUs, Python "
        f"{meta['python']}{', --quick' if args.quick else ''})\n\n"
        f"Load average {meta['loadavg_start'][0]:.1f} at start, "
        f"{meta['loadavg_end'][0]:.1f} at end; {meta['elapsed_s']:.0f} s in all.\n\n"
        f"{table}\n")
    print(f"\nresults written to {here / 'results.json'} and {here / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
