"""Replay throughput against backtesting.py and NautilusTrader: the same SMA 10/30 flip on
the same bars.

Ours: the bundled EURUSD M15 sample through ``executor.wiring.build_daemon`` (paper
broker, validator, incremental snapshot builder, ensemble, every guardrail of the example
settings, order router) into a SQLite *file* journal (WAL, synchronous=FULL; per-bar rows
batched, every order row committed durably before the broker sees it), with two
benchmark substitutions, both in ``benchmarks/sma_flip.py``: the active parameter set's
strategy is ``sma_flip`` (registered at run time) and its ensemble is one ``SmaFlipVoter``
(so the ensemble confirms every crossing instead of vetoing half of them). The example
guardrails stay, with a 1,000,000 balance and a 100,000 daily-loss limit so that no
drawdown trigger halts a strategy that is not meant to make money.

Theirs: ``backtesting.Backtest(...).run()`` with the same rule (``SmaFlipBT`` below),
indicators vectorised up front as that library does, no journal; and NautilusTrader's
``BacktestEngine.run()`` (``bench_vs_nautilus``: netting FX margin account, bar execution,
an event-driven loop like ours, in-memory cache, no journal), when it is installed. Same
bars, same process, same run. Figures are bars per second of the replay loop
(``run_replay`` for ours, ``run()`` for theirs; loading the CSV and building each engine
are outside all of them), and the orders and trades each did, so the ratios compare
comparable work. Every loop runs with the process as `dta run` leaves it after start-up
(``bench_latency.as_dta_run``: the start-up heap frozen out of the garbage collector), so
none pays for rescanning what another built. NautilusTrader runs last, so nothing its
engine leaves in the process is there while ours is measured.

    .venv/bin/python -m benchmarks.bench_vs_backtesting [--quick] [--repeats 3] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_latency import as_dta_run, bench_settings  # noqa: E402
from benchmarks.sma_flip import (  # noqa: E402
    FAST,
    SLOW,
    UNITS,
    flip_side,
    ohlcv_frame,
    register,
    sample_file,
    sma_parameter_set,
    with_sma_voter,
)
from domain import Bar  # noqa: E402
from executor.engine.clock import SimulatedClock  # noqa: E402
from executor.feeds.files import load_bars  # noqa: E402
from executor.journal.store import Journal  # noqa: E402
from executor.wiring import build_daemon  # noqa: E402

GOAL_RATIO = 1.0


def round_trips(fills: Iterable[Any]) -> tuple[int, int]:
    """(closed trades, still open) from journaled fills: a trade closes each time a
    symbol's net position returns to (or crosses) zero."""
    net: dict[str, float] = {}
    closed = 0
    for f in fills:
        before = net.get(f.symbol, 0.0)
        after = before + (f.volume if f.side == "buy" else -f.volume)
        if abs(before) > 1e-9 and (abs(after) < 1e-9 or (before > 0) != (after > 0)):
            closed += 1
        net[f.symbol] = after
    return closed, sum(1 for v in net.values() if abs(v) > 1e-9)


def run_ours(url: str, data: Path, profile: bool = False,
             strategy: str = "sma_flip") -> dict[str, Any]:
    register()
    settings = bench_settings(url, guardrails={"max_daily_loss": 100_000.0},
                              paper={"initial_balance": 1_000_000.0})
    journal = Journal.open(url)
    daemon = build_daemon(settings, journal, data=data)
    ex = daemon.executor
    ex.settings_params = sma_parameter_set(settings.parameter_set().values, strategy=strategy)
    ex.component_factory = with_sma_voter(ex.component_factory)
    ex.start()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    with as_dta_run():
        if profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        ex.run_replay(SimulatedClock(), daemon.feed.next_close_time)
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
    summary = ex.stop("completed")
    closed, still_open = round_trips(journal.orders.fills())
    journal.close()
    out = {"bars": summary["bars_processed"], "elapsed_s": elapsed,
           "bars_per_s": summary["bars_processed"] / elapsed,
           "orders": sum(summary["orders"].values()), "proposals": summary["proposals"],
           "vetoes": summary["vetoes"], "trades": closed + still_open,
           "trades_closed": closed, "pnl": summary.get("pnl", {}).get("realized")}
    if profiler is not None:
        import pstats

        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        out["profile"] = buf.getvalue()
    return out


# Tables a replay's own run set-up writes once (not per bar or per decision).
_SETUP_TABLES = frozenset({"alembic_version", "runs", "parameter_sets", "param_events",
                           "param_versions"})


def journal_floor(journal_file: Path, scratch: Path, repeats: int = 3) -> dict[str, Any]:
    """What writing our journal costs with no pipeline at all: every row the replay
    journaled (bars, proposals, decisions, provider calls, verdicts, orders, order events,
    fills), read back as tuples, inserted into a fresh journal of the same schema by
    SQLite's own ``executemany`` in one transaction (WAL, synchronous=NORMAL as a paper
    replay runs), best of ``repeats``. No Python builds a row, no object is made, nothing
    is decided: a lower bound on the journal's share of any replay that writes these rows.
    Its time against backtesting.py's whole run bounds the ratio from above."""
    import sqlite3

    src = sqlite3.connect(journal_file)
    try:
        names = [n for (n,) in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            if n not in _SETUP_TABLES]
        tables = {}
        for name in names:
            cols = [c[1] for c in src.execute(f"PRAGMA table_info({name})")]
            rows = src.execute(f"SELECT * FROM {name}").fetchall()
            if rows:
                tables[name] = (cols, rows)
    finally:
        src.close()
    times = []
    for k in range(repeats):
        target = scratch / f"floor-{k}.sqlite"
        Journal.open(f"sqlite:///{target}").close()  # the same schema, migrated
        dst = sqlite3.connect(target)
        try:
            dst.execute("PRAGMA journal_mode=WAL")
            dst.execute("PRAGMA synchronous=NORMAL")
            started = time.perf_counter()
            for name, (cols, rows) in tables.items():
                dst.executemany(f"INSERT INTO {name} ({', '.join(cols)}) VALUES "
                                f"({', '.join('?' * len(cols))})", rows)
            dst.commit()
            times.append(time.perf_counter() - started)
        finally:
            dst.close()
    return {"rows": {n: len(r) for n, (_c, r) in tables.items()},
            "rows_total": sum(len(r) for _c, r in tables.values()),
            "elapsed_s": min(times), "elapsed_all_s": times}


def _sma(values: Any, n: int) -> Any:
    import pandas as pd

    return pd.Series(values).rolling(n).mean().to_numpy()


def run_theirs(bars: list[Bar], repeats: int) -> dict[str, Any]:
    from backtesting import Backtest, Strategy

    class SmaFlipBT(Strategy):  # type: ignore[misc]
        fast, slow = FAST, SLOW

        def init(self) -> None:
            self.f = self.I(_sma, self.data.Close, self.fast)
            self.s = self.I(_sma, self.data.Close, self.slow)

        def next(self) -> None:
            f, s = self.f[-1], self.s[-1]
            size = self.position.size
            side = flip_side(1 if f > s else -1 if f < s else 0,
                             1 if size > 0 else -1 if size < 0 else 0)
            if not side:
                return
            if size:
                self.position.close()
            elif side > 0:
                self.buy(size=UNITS)
            else:
                self.sell(size=UNITS)

    frame = ohlcv_frame(bars).rename(columns=str.title)
    frame.index = frame.index.tz_localize(None)
    bt = Backtest(frame, SmaFlipBT, cash=1_000_000, finalize_trades=True)
    times = []
    stats: Any = None
    for _ in range(repeats):  # with the heap frozen as for ours: the same process state
        with (as_dta_run(), warnings.catch_warnings(),
              contextlib.redirect_stderr(io.StringIO())):
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            stats = bt.run()
            times.append(time.perf_counter() - started)
    best = sorted(times)[len(times) // 2]
    return {"bars": len(frame), "elapsed_s": best, "elapsed_all_s": times,
            "bars_per_s": len(frame) / best, "trades": int(stats["# Trades"]),
            "pnl": float(stats["Equity Final [$]"]) - 1_000_000}


def run_nautilus_if_installed(bars: list[Bar], repeats: int) -> dict[str, Any]:
    """NautilusTrader's figure, or why there is none: it comes with the `bench` extra, and
    the comparison with backtesting.py stands without it."""
    try:
        from benchmarks.bench_vs_nautilus import run_nautilus
    except ImportError as exc:
        return {"skipped": f"NautilusTrader is not installed ({exc}); "
                           "pip install -e '.[bench]'"}
    return run_nautilus(bars, repeats)


def run(*, quick: bool = False, repeats: int = 3, profile: bool = False,
        memory_journal: bool = False) -> dict[str, Any]:
    try:
        import backtesting
    except ImportError as exc:  # the `bench` extra is not installed
        raise SystemExit(f"bench_vs_backtesting: skipped, backtesting.py is not installed "
                         f"({exc}); pip install -e '.[bench]'") from None

    with tempfile.TemporaryDirectory(prefix="dta-bench-vsbt-") as tmp_name:
        tmp = Path(tmp_name)
        data = sample_file(tmp, 8000 if quick else None)
        bars = list(load_bars(data).bars)
        theirs = run_theirs(bars, repeats)
        ours = run_ours(f"sqlite:///{tmp / 'journal.sqlite'}", data, profile=profile)
        rows_only = journal_floor(tmp / "journal.sqlite", tmp)
        floor = run_ours(f"sqlite:///{tmp / 'floor.sqlite'}", data, strategy="no_trade")
        ours_mem = run_ours("sqlite://", data) if memory_journal else None
        nautilus = run_nautilus_if_installed(bars, repeats)  # last: see the docstring
    out: dict[str, Any] = {
        "bars": len(bars), "backtesting_version": backtesting.__version__,
        "ours_sqlite_file": ours, "ours_no_trade_floor": floor, "backtesting_py": theirs,
        "ratio": ours["bars_per_s"] / theirs["bars_per_s"], "goal_ratio": GOAL_RATIO,
        "ratio_floor": floor["bars_per_s"] / theirs["bars_per_s"],
        "journal_rows_only": rows_only,
        "ratio_ceiling_journal": theirs["elapsed_s"] / rows_only["elapsed_s"],
        # What the pipeline costs beyond its journal's own floor, against backtesting.py's
        # whole run: the figure a goal that keeps our journal on could be stated in.
        "beyond_journal_vs_theirs": (ours["elapsed_s"] - rows_only["elapsed_s"])
                                    / theirs["elapsed_s"],
        "nautilus": nautilus, "loadavg": os.getloadavg()}
    if "bars_per_s" in nautilus:
        out["ratio_nautilus"] = ours["bars_per_s"] / nautilus["bars_per_s"]
    if ours_mem is not None:
        out["ours_sqlite_memory"] = ours_mem
        out["ratio_memory_journal"] = ours_mem["bars_per_s"] / theirs["bars_per_s"]
    return out


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    o, t = r["ours_sqlite_file"], r["backtesting_py"]
    return [(f"replay vs backtesting.py, SMA {FAST}/{SLOW} flip ({r['bars']:,} bars)",
             f"{r['ratio']:.3f}x ({o['bars_per_s']:,.0f} vs {t['bars_per_s']:,.0f} bars/s; "
             f"trades {o['trades']} vs {t['trades']})",
             f">= {GOAL_RATIO:g}x", "MET" if r["ratio"] >= GOAL_RATIO else "MISSED"),
            *_nautilus_rows(r),
            ("- ceiling with our journal on: its rows alone, SQLite from ready tuples",
             f"{r['ratio_ceiling_journal']:.2f}x ({r['journal_rows_only']['rows_total']:,} "
             f"rows in {r['journal_rows_only']['elapsed_s']:.3f} s vs backtesting.py's "
             f"{t['elapsed_s']:.3f} s)", "", ""),
            ("- our pipeline beyond its journal's floor, in backtesting.py runs",
             f"{r['beyond_journal_vs_theirs']:.1f}x (({o['elapsed_s']:.2f} - "
             f"{r['journal_rows_only']['elapsed_s']:.2f} s) / {t['elapsed_s']:.3f} s)",
             "", "")]


def _nautilus_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    n, o = r["nautilus"], r["ours_sqlite_file"]
    name = f"replay vs NautilusTrader, SMA {FAST}/{SLOW} flip ({r['bars']:,} bars)"
    if "ratio_nautilus" not in r:
        return [(name, n.get("skipped", "not run"), f">= {GOAL_RATIO:g}x", "-")]
    return [(f"replay vs NautilusTrader {n['version']}, SMA {FAST}/{SLOW} flip "
             f"({r['bars']:,} bars)",
             f"{r['ratio_nautilus']:.3f}x ({o['bars_per_s']:,.0f} vs {n['bars_per_s']:,.0f} "
             f"bars/s; orders {o['orders']} vs {n['orders']}, trades {o['trades']} vs "
             f"{n['trades']})",
             f">= {GOAL_RATIO:g}x", "MET" if r["ratio_nautilus"] >= GOAL_RATIO else "MISSED")]


def _engine_table(r: dict[str, Any]) -> str:
    engines = [("ours, full pipeline, SQLite file journal", r["ours_sqlite_file"])]
    if "ours_sqlite_memory" in r:
        engines.append(("ours, full pipeline, in-memory SQLite", r["ours_sqlite_memory"]))
    engines += [("ours, same, strategy never proposes", r["ours_no_trade_floor"]),
                ("backtesting.py run(), no journal", r["backtesting_py"])]
    if "ratio_nautilus" in r:
        engines.append(("NautilusTrader engine.run(), no journal", r["nautilus"]))
    return "\n".join(
        [f"{'engine':<40}{'bars/s':>10}{'seconds':>9}{'trades':>8}{'orders':>8}"]
        + [f"{name:<40}{e['bars_per_s']:>10,.0f}{e['elapsed_s']:>9.2f}{e['trades']:>8}"
           f"{e.get('orders', '-'):>8}" for name, e in engines])


LAST_RESULTS: dict[str, Any] | None = None


def main(argv: list[str] | None = None) -> None:
    global LAST_RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 8,000 bars only")
    parser.add_argument("--repeats", type=int, default=3,
                        help="backtesting.py and NautilusTrader runs (median taken)")
    parser.add_argument("--memory", action="store_true",
                        help="also run ours on an in-memory SQLite journal (the same rows, "
                             "no file: what the disk costs)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile our replay loop and print the top functions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv or [])
    r = run(quick=args.quick, repeats=args.repeats, profile=args.profile,
            memory_journal=args.memory)
    LAST_RESULTS = results = r
    o, t = r["ours_sqlite_file"], r["backtesting_py"]
    print(f"SMA {FAST}/{SLOW} flip on {r['bars']:,} EURUSD M15 bars, same process "
          f"(backtesting.py {r['backtesting_version']}; load average "
          f"{r['loadavg'][0]:.1f})")
    print(_engine_table(r))
    n = r["nautilus"]
    verdict = "MET" if r["ratio"] >= GOAL_RATIO else "MISSED"
    print(f"ratio ours/backtesting.py: {r['ratio']:.3f}x   goal >= {GOAL_RATIO:g}x: {verdict}")
    if "ratio_nautilus" in r:
        verdict = "MET" if r["ratio_nautilus"] >= GOAL_RATIO else "MISSED"
        print(f"ratio ours/NautilusTrader {n['version']}: {r['ratio_nautilus']:.3f}x   "
              f"goal >= {GOAL_RATIO:g}x: {verdict}")
    else:
        print(f"NautilusTrader: {n.get('skipped')}")
    print(f"ceiling if decisions and orders were free (no-trade floor / theirs): "
          f"{r['ratio_floor']:.3f}x")
    j = r["journal_rows_only"]
    print(f"our journal alone: the same {j['rows_total']:,} rows inserted by SQLite from "
          f"ready tuples, no pipeline: {j['elapsed_s']:.3f} s = "
          f"{j['elapsed_s'] / t['elapsed_s']:.0%} of backtesting.py's whole run; ceiling "
          f"of the ratio with this journal on: {r['ratio_ceiling_journal']:.2f}x")
    print(f"our pipeline beyond that floor: {o['elapsed_s'] - j['elapsed_s']:.2f} s = "
          f"{r['beyond_journal_vs_theirs']:.1f} x backtesting.py's whole run")
    if "ratio_memory_journal" in r:
        print(f"ratio with an in-memory journal: {r['ratio_memory_journal']:.3f}x (the same "
              "rows without a file: the disk is not where the time goes)")
    if o["vetoes"]:
        print(f"our vetoes: {o['vetoes']}")
    if args.profile:
        print(o["profile"])
    if args.json:
        print(json.dumps({k: v for k, v in results.items()}, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
