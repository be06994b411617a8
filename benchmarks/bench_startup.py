"""CLI start-up: `dta --help` and `dta status` wall time in fresh processes, plus what
`python -X importtime` says `dta --help` spends its imports on.

Each command runs ``--runs`` times as a new process (the installed ``.venv/bin/dta``
console script, cwd the checkout); the figure is the median wall time. ``dta status``
reads the `make run` demo journal (the example settings over the whole sample, as
``bench_console.demo_journal`` makes it) with the example config: issue 18's goal is
under 300 ms there. The interpreter's own start-up (``python -c pass``) is measured too:
it is the floor no change to our code can go under.

The commands run with a warm bytecode cache of their own (``PYTHONPYCACHEPREFIX`` in a
temporary directory, one untimed warm-up run each), as an installed ``dta`` runs: a session
with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile every module of ours from source
on each run. ``dta status`` is also timed with the environment as it is, for comparison.

    .venv/bin/python -m benchmarks.bench_startup [--quick] [--runs 7] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_HELP_MS = 300.0
GOAL_STATUS_MS = 300.0  # issue 18, on the `make run` demo journal

from benchmarks.bench_console import demo_journal  # noqa: E402

BIN = Path(sys.executable).parent
CONFIG = ROOT / "config" / "dta.example.toml"
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s+)(\S.*)$")


def _dta() -> list[str]:
    script = BIN / "dta"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runbooks.cli"]


_PYCACHE: dict[str, str] = {}  # PYTHONPYCACHEPREFIX for the run, set by run()


def _env(*, as_is: bool = False, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DTA_CONFIG", None)
    if not as_is and _PYCACHE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(_PYCACHE)
    env.update(extra)
    return env


def time_command(cmd: list[str], runs: int, *, as_is: bool = False,
                 **env: str) -> dict[str, Any]:
    times: list[float] = []
    codes: set[int] = set()
    if not as_is:  # untimed: writes the bytecode cache
        subprocess.run(cmd, cwd=ROOT, env=_env(**env), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(as_is=as_is, **env),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - started) * 1000)
        codes.add(proc.returncode)
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "max_ms": max(times), "runs": runs, "exit_codes": sorted(codes)}


def import_times(args: list[str], top: int) -> dict[str, Any]:
    """`python -X importtime` of `dta ARGS`: the heaviest imports at the top two levels
    (cumulative) and the heaviest single modules (self time), in milliseconds."""
    code = (f"import sys; sys.argv = ['dta', *{args!r}]\n"
            "from runbooks.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, check=False)
    rows: list[tuple[int, int, int, str]] = []
    for line in proc.stderr.splitlines():
        m = _LINE.match(line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            rows.append((int(m.group(1)), int(m.group(2)), depth, m.group(4).strip()))
    total = sum(r[0] for r in rows) / 1000
    top_level = sorted((r for r in rows if r[2] <= 1), key=lambda r: -r[1])[:top]
    by_self = sorted(rows, key=lambda r: -r[0])[:top]
    return {"total_import_ms": total, "modules": len(rows),
            "top_cumulative": [{"module": r[3], "cumulative_ms": r[1] / 1000,
                                "self_ms": r[0] / 1000, "depth": r[2]} for r in top_level],
            "top_self": [{"module": r[3], "self_ms": r[0] / 1000, "depth": r[2]}
                         for r in by_self]}


def status_args(url: str) -> list[str]:
    return ["status", "--config", str(CONFIG), "--journal-url", url]


def run(*, runs: int = 7, top: int = 15) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dta-bench-startup-") as tmp:
        _PYCACHE["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        try:
            url = f"sqlite:///{Path(tmp) / 'journal.sqlite'}"
            demo_journal(url)  # the `make run` journal the issue's 300 ms is about
            dta = _dta()
            out = {
                "python_floor": time_command([sys.executable, "-c", "pass"], runs),
                "help": time_command([*dta, "--help"], runs),
                # The same with typer's rich help formatter off (the apps already set
                # `rich_markup_mode=None`, so this should match `help`).
                "help_no_rich": time_command([*dta, "--help"], runs, TYPER_USE_RICH="0"),
                "status": time_command([*dta, *status_args(url)], runs),
                "status_env_as_is": time_command([*dta, *status_args(url)], runs,
                                                 as_is=True),
            }
            out["importtime_status"] = import_times(status_args(url), top)
            out["importtime_help"] = import_times(["--help"], top)
        finally:
            _PYCACHE.clear()
    out["bytecode_env"] = os.environ.get("PYTHONDONTWRITEBYTECODE", "")
    out["goal_help_ms"] = GOAL_HELP_MS
    out["loadavg"] = os.getloadavg()
    return out


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    h, s = r["help"], r["status"]
    return [
        ("`dta --help` wall time, fresh process (median)",
         f"{h['median_ms']:.0f} ms (python floor {r['python_floor']['median_ms']:.0f} ms)",
         f"< {GOAL_HELP_MS:g} ms", "MET" if h["median_ms"] < GOAL_HELP_MS else "MISSED"),
        ("`dta status` wall time, fresh process, bytecode cached (median)",
         f"{s['median_ms']:.0f} ms (the make run journal)", f"< {GOAL_STATUS_MS:g} ms",
         "MET" if s["median_ms"] < GOAL_STATUS_MS else "MISSED"),
    ]


LAST_RESULTS: dict[str, Any] | None = None


def main(argv: list[str] | None = None) -> None:
    global LAST_RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per command")
    parser.add_argument("--runs", type=int, default=None, help="runs per command (7)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv or [])
    r = run(runs=args.runs or (3 if args.quick else 7), top=args.top)
    LAST_RESULTS = results = r
    print(f"fresh processes, bytecode cached, median of {r['help']['runs']} runs (load average "
          f"{r['loadavg'][0]:.1f})")
    print(f"{'command':<22}{'median ms':>10}{'min ms':>9}{'max ms':>9}  exit   goal")
    for key, label, goal in (("python_floor", "python -c pass", ""),
                             ("help", "dta --help",
                              f"< {GOAL_HELP_MS:g} ms: "
                              + ("MET" if r["help"]["median_ms"] < GOAL_HELP_MS
                                 else "MISSED")),
                             ("help_no_rich", "  TYPER_USE_RICH=0", ""),
                             ("status", "dta status", ""),
                             ("status_env_as_is", "  env as is", "PYTHONDONTWRITEBYTECODE="
                              + (r["bytecode_env"] or "(unset)"))):
        t = r[key]
        print(f"{label:<22}{t['median_ms']:>10.0f}{t['min_ms']:>9.0f}{t['max_ms']:>9.0f}"
              f"  {','.join(map(str, t['exit_codes'])):<5}  {goal}")
    for key, label in (("importtime_help", "dta --help"), ("importtime_status", "dta status")):
        imp = r[key]
        print(f"\n`python -X importtime` of `{label}`: {imp['modules']} modules, "
              f"{imp['total_import_ms']:.0f} ms of imports (importtime inflates); heaviest "
              "imports, top two levels (cumulative):")
        for row in imp["top_cumulative"]:
            print(f"  {row['cumulative_ms']:>8.1f} ms  {'  ' * row['depth']}{row['module']}")
        print("  heaviest single modules (self time): " + ", ".join(
            f"{row['module']} {row['self_ms']:.1f}" for row in imp["top_self"][:8]))
    if args.json:
        print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
