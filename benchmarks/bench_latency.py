"""Decision latency, live-like: from a bar being available to its order reaching the broker.

The live daemon runs one cycle per bar close (APScheduler tick at close + settle delay);
each cycle polls the journal for parameter and approval changes (at most once a wall
second, so on every live cycle), fetches the closed bar, and runs validator -> paper fills
-> snapshot -> strategy -> ensemble -> guardrails -> router (journal first, durable, then
broker). This benchmark drives that same ``run_cycle`` back to back, one bar per stream
per cycle, with ``now`` = the bar's close + the configured settle delay (what the
scheduler passes), the journal polls forced on every cycle as live, the bundled EURUSD M15
sample, the example settings (deterministic structure + momentum providers), and a SQLite
*file* journal (WAL, synchronous=FULL), timing on the wall clock:

- **order latency**: cycle start (the scheduler tick: the bar is available) -> the
  broker's ``submit`` is called, for bars that produced an order; also measured from the
  feed's hand-over of the bar, which excludes the per-cycle journal polls;
- **all-bars latency**: cycle start -> that stream's processing is done (the next stream's
  fetch, or the cycle's end), for every bar.

The first ``--warmup`` cycles are not counted (first-call imports and caches). Network
time to fetch a bar from MT5/ccxt is not included: the feed here is in memory.

    .venv/bin/python -m benchmarks.bench_latency [--quick] [--symbols N] [--pause-ms X]

This module also holds the helpers the other live-like benchmarks share (settings, the
in-memory live feed, derived symbols, executor construction as ``build_daemon`` does it).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without an install
    sys.path.insert(0, str(ROOT))

from domain import Bar, Order  # noqa: E402
from executor.brokers.paper import PaperBroker  # noqa: E402
from executor.daemon import RealtimeExecutor  # noqa: E402
from executor.feeds.files import LoadedBars, load_bars  # noqa: E402
from executor.feeds.validator import BarValidator  # noqa: E402
from executor.heap import settle_after_start_up  # noqa: E402
from executor.journal.store import Journal  # noqa: E402
from executor.log_setup import configure_logging  # noqa: E402
from executor.settings import Settings, load_settings  # noqa: E402
from executor.wiring import component_factory  # noqa: E402

SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
CONFIG = ROOT / "config" / "dta.example.toml"
GOAL_P99_MS = 5.0
IDLE_MS = 200.0  # idle before an order bar's cycle in the second pass (live: minutes)

Stream = tuple[str, str]


# ---------------------------------------------------------------------------- shared helpers


def bench_settings(url: str, **overrides: Any) -> Settings:
    """The example settings with the journal at ``url``; logging set up as `dta run` does
    (JSON to stderr at the configured level, warning), so log volume costs what it costs
    in production and no more."""
    settings = load_settings(CONFIG, journal={"url": url}, **overrides)
    configure_logging(settings.log_level, settings.secret_values())
    return settings


# Many streams share one paper account: limits sized for that, so no drawdown halt or
# exposure cap stops the decisions half-way and the run keeps doing the same work
# throughout (every check still runs on every decision).
MANY_SYMBOL_OVERRIDES: dict[str, Any] = {
    "guardrails": {"max_gross_exposure_lots": 1000.0, "max_orders_per_minute": 10_000,
                   "max_daily_loss": 1e7},
    "paper": {"initial_balance": 1e8},
}


def load_sample() -> LoadedBars:
    return load_bars(SAMPLE)


def derived_bars(base: Sequence[Bar], symbol: str, timeframe: str, start: datetime,
                 count: int, *, row_offset: int = 0, price_offset: float = 0.0,
                 step: timedelta | None = None) -> list[Bar]:
    """``count`` bars of a synthetic symbol on a contiguous time grid from ``start``:
    OHLC of the sample's rows from ``row_offset`` on (wrapping), plus ``price_offset``."""
    step = step or timedelta(minutes=15)
    n = len(base)
    out: list[Bar] = []
    for i in range(count):
        b = base[(row_offset + i) % n]
        out.append(Bar(symbol, timeframe, start + i * step, b.open + price_offset,
                       b.high + price_offset, b.low + price_offset, b.close + price_offset,
                       b.volume, b.spread))
    return out


class LiveFeed:
    """An in-memory ``Feed`` that releases bars the way a live one does: only what the
    driver has released (the bars that "closed" since the last tick), in order, and only
    once. Records when each stream's bars were handed over (``perf_counter_ns``)."""

    def __init__(self, streams: dict[Stream, Sequence[Bar]]) -> None:
        self._bars = {k: list(v) for k, v in streams.items()}
        self._cursor = dict.fromkeys(self._bars, 0)
        self.released = 0
        self.handover_ns: dict[Stream, int] = {}

    def release(self, n: int = 1) -> None:
        self.released += n

    def closed_bars(self, symbol: str, timeframe: str, since: datetime | None,
                    now: datetime) -> list[Bar]:
        key = (symbol, timeframe)
        bars, i = self._bars[key], self._cursor[key]
        j = min(self.released, len(bars))
        while j > i and bars[j - 1].close_time > now:
            j -= 1
        if j <= i:
            return []
        self._cursor[key] = j
        self.handover_ns[key] = time.perf_counter_ns()
        return bars[i:j]


class TimedPaperBroker(PaperBroker):
    """The paper broker standing in for a real one: noting when each order is handed to
    it (``perf_counter_ns``), and not ``simulated``, so the router pays the durable
    journal commit before the call exactly as it does in front of MT5 or an exchange."""

    simulated = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submits: list[tuple[int, str]] = []

    def submit(self, order: Order) -> Order:
        self.submits.append((time.perf_counter_ns(), order.intent.symbol))
        return super().submit(order)


def build_executor(settings: Settings, journal: Journal, feed: Any, streams: Sequence[Stream],
                   broker: PaperBroker | None = None, points: dict[str, float] | None = None,
                   mode: str | None = None) -> RealtimeExecutor:
    """A ``RealtimeExecutor`` wired exactly as ``executor.wiring.build_daemon`` wires it,
    with a feed of our choosing (as tests/integration/test_scheduler.py does).

    ``mode="live"`` gives the live daemon's journal cadence (a commit at the end of every
    cycle) while orders still go to the paper broker: no broker network in the figures.
    ``paper`` commits per-bar rows only every ``journal.batch_bars`` rows."""
    mode = mode or settings.mode
    return RealtimeExecutor(
        mode=mode, account=settings.account, journal=journal, feed=feed,
        streams=list(streams),
        broker=broker or PaperBroker(contract_size=settings.paper.contract_size,
                                     initial_balance=settings.paper.initial_balance),
        components=_factory(settings, journal),
        settings_params=settings.parameter_set().values, validator=BarValidator(),
        settings_hash=settings.content_hash,
        batch_bars=1 if mode == "live" else settings.journal.batch_bars,
        points=points, contract_size=settings.paper.contract_size)


def _factory(settings: Settings, journal: Journal) -> Any:
    """``component_factory`` takes the settings (or, in older trees, the mode string)."""
    first = next(iter(inspect.signature(component_factory).parameters))
    return component_factory(settings if first == "settings" else settings.mode, journal)


@contextlib.contextmanager
def as_dta_run() -> Iterator[None]:
    """The process as `dta run` leaves it once the executor has started
    (``executor.heap.settle_after_start_up``): a full collection, the start-up heap frozen
    out of the collector, glibc's malloc thresholds pinned. Measured without it, every full
    collection rescans everything the benchmark process imported and built before (other
    benchmarks' objects included), which the daemon never pays for. Unfrozen afterwards,
    so the next measurement in this process starts alike."""
    settle_after_start_up()
    try:
        yield
    finally:
        gc.unfreeze()


def force_live_polls(executor: RealtimeExecutor) -> None:
    """A daemon without the housekeeping job (``hand_over_housekeeping`` not called) polls
    the journal inside the cycle at most once a wall second: on every live cycle, since
    those are at least a bar apart; back-to-back cycles would skip them."""
    executor.housekeeper.param_checked = 0.0
    executor.approvals.checked = 0.0


def between_bar_closes(executor: RealtimeExecutor) -> None:
    """What the live daemon does between two bar closes, untimed: its 1 s housekeeping
    job (journal polls for parameter, provider and approval changes; the WAL checkpoint),
    as ``run_scheduled`` installs it. Live cycles are at least a bar apart, so it runs
    between every two of them; back-to-back cycles here get one call each."""
    executor.housekeeping()


def fsync_floor(directory: Path, n: int = 300, size: int = 16384,
                gap_s: float = 0.0) -> dict[str, float]:
    """The disk's own cost of one durable commit, measured where the journal lives: append
    ``size`` bytes (a commit's WAL frames are ~4-20 pages) and fsync, ``n`` times (ms),
    ``gap_s`` apart (a live daemon's disk is idle between bar closes; on a VM an fsync
    after idle costs more than one right after another)."""
    import os

    path = directory / "fsync.probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    times: list[float] = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * size)
            t = time.perf_counter_ns()
            os.fsync(fd)
            times.append((time.perf_counter_ns() - t) / 1e6)
            if gap_s:
                time.sleep(gap_s)
    finally:
        os.close(fd)
        path.unlink()
    return dist(times)


class CommitTimer:
    """Wraps a journal's commit (its unit of work's, which every repository commits
    through) and notes each call's (start, end) ``perf_counter_ns``, so an order's latency
    can be split into the durable pre-send commit and the rest."""

    def __init__(self, journal: Journal) -> None:
        self.spans: list[tuple[int, int]] = []
        real = journal.uow.commit

        def commit(*, durable: bool = False) -> None:
            t = time.perf_counter_ns()
            try:
                real(durable=durable)
            finally:
                self.spans.append((t, time.perf_counter_ns()))

        journal.uow.commit = commit  # type: ignore[method-assign]

    def within(self, start: int, end: int) -> int:
        return sum(b - a for a, b in self.spans if a >= start and b <= end)


def pct(data: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``data`` (the executor's own convention)."""
    if not data:
        return float("nan")
    k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
    return data[k]


def dist(values: Sequence[float]) -> dict[str, float]:
    data = sorted(values)
    return {"n": len(data), "p50": pct(data, 50), "p90": pct(data, 90), "p99": pct(data, 99),
            "max": data[-1] if data else float("nan"),
            "mean": sum(data) / len(data) if data else float("nan")}


def rss_bytes() -> int:
    """Resident set size now, from /proc/self/statm (pages)."""
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------- the benchmark


def run(*, quick: bool = False, symbols: int = 1, warmup: int = 200,
        pause_ms: float = 0.0, mode: str = "live", idle_before: frozenset[int] = frozenset(),
        idle_ms: float = IDLE_MS) -> dict[str, Any]:
    """``idle_before``: bar indices whose cycle starts after ``idle_ms`` of idle (after the
    between-bar-closes housekeeping), as every live cycle does: bars close minutes apart.
    The replay is deterministic, so the indices of a first run's order bars are the order
    bars of the next: idle is spent only where it matters."""
    loaded = load_sample()
    bars = list(loaded.bars[: 6000 if quick else None])
    streams: dict[Stream, list[Bar]] = {(loaded.symbol, loaded.timeframe): bars}
    for k in range(1, symbols):  # extra symbols: the sample shifted in price
        sym = f"{loaded.symbol}.{k}"
        streams[(sym, loaded.timeframe)] = [
            replace(b, symbol=sym, open=b.open + k * 0.01, high=b.high + k * 0.01,
                    low=b.low + k * 0.01, close=b.close + k * 0.01) for b in bars]
    order = list(streams)
    with (tempfile.TemporaryDirectory(prefix="dta-bench-latency-") as tmp,
          contextlib.ExitStack() as started_up):
        settings = bench_settings(f"sqlite:///{Path(tmp) / 'journal.sqlite'}")
        settle = timedelta(seconds=settings.scheduler.settle_delay_seconds)
        journal = Journal.open(settings.journal.url)
        feed = LiveFeed(streams)
        broker = TimedPaperBroker(contract_size=settings.paper.contract_size,
                                  initial_balance=settings.paper.initial_balance)
        points = {s: loaded.point for s, _ in order} if loaded.point else None
        executor = build_executor(settings, journal, feed, order, broker, points, mode)
        executor.start()
        started_up.enter_context(as_dta_run())
        if mode == "live":
            executor.hand_over_housekeeping()  # as run_scheduled does
        commits = CommitTimer(journal)
        all_from_tick: dict[str, list[float]] = {s: [] for s, _ in order}
        all_from_feed: dict[str, list[float]] = {s: [] for s, _ in order}
        orders_from_tick: dict[str, list[float]] = {s: [] for s, _ in order}
        orders_from_feed: dict[str, list[float]] = {s: [] for s, _ in order}
        orders_commit: dict[str, list[float]] = {s: [] for s, _ in order}
        orders_rest: dict[str, list[float]] = {s: [] for s, _ in order}
        cycles: list[float] = []
        order_bars: list[int] = []
        started = time.perf_counter()
        for i, bar in enumerate(bars):
            feed.release(1)
            feed.handover_ns.clear()
            if mode == "live":
                between_bar_closes(executor)
            if i in idle_before:
                time.sleep(idle_ms / 1000)
            mark = len(broker.submits)
            commits.spans.clear()
            t0 = time.perf_counter_ns()
            executor.run_cycle(bar.close_time + settle)
            t1 = time.perf_counter_ns()
            if pause_ms:
                time.sleep(pause_ms / 1000)
            if len(broker.submits) > mark:
                order_bars.append(i)
            if i < warmup:
                continue
            cycles.append((t1 - t0) / 1e6)
            hand = [feed.handover_ns.get(k) for k in order]
            for n, (sym, _tf) in enumerate(order):
                h = hand[n]
                if h is None:
                    continue
                done = next((x for x in hand[n + 1:] if x is not None), t1)
                all_from_tick[sym].append((done - t0) / 1e6)
                all_from_feed[sym].append((done - h) / 1e6)
            seen: set[str] = set()
            for ns, sym in broker.submits[mark:]:
                if sym in seen:
                    continue
                seen.add(sym)
                orders_from_tick[sym].append((ns - t0) / 1e6)
                durable = commits.within(t0, ns)  # the commit before the send
                orders_commit[sym].append(durable / 1e6)
                orders_rest[sym].append((ns - t0 - durable) / 1e6)
                h = feed.handover_ns.get((sym, loaded.timeframe))
                if h is not None:
                    orders_from_feed[sym].append((ns - h) / 1e6)
        elapsed = time.perf_counter() - started
        summary = executor.stop("completed")
        journal.close()
        floor = fsync_floor(Path(tmp))
        floor_idle = fsync_floor(Path(tmp), n=40, gap_s=idle_ms / 1000) if idle_before \
            else None
    per_symbol = {
        sym: {"all_bars_from_tick_ms": dist(all_from_tick[sym]),
              "all_bars_from_feed_ms": dist(all_from_feed[sym]),
              "orders_from_tick_ms": dist(orders_from_tick[sym]),
              "orders_from_feed_ms": dist(orders_from_feed[sym]),
              "orders_durable_commit_ms": dist(orders_commit[sym]),
              "orders_without_commit_ms": dist(orders_rest[sym])}
        for sym, _ in order}
    return {
        "bars": len(bars) * len(order), "cycles_measured": len(cycles), "warmup": warmup,
        "symbols": len(order), "elapsed_s": elapsed, "pause_ms": pause_ms, "mode": mode,
        "orders": sum(summary["orders"].values()), "proposals": summary["proposals"],
        "cycle_ms": dist(cycles), "per_symbol": per_symbol,
        "executor_process_bar_us": executor.stats.latency_percentiles(),
        "fsync_floor_ms": floor, "fsync_floor_idle_ms": floor_idle,
        "order_bars": order_bars, "idle_ms": idle_ms if idle_before else 0.0,
        "goal_p99_ms": GOAL_P99_MS,
    }


def _ok(value: float, goal: float) -> str:
    return "MET" if value <= goal else "MISSED"


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, goal, verdict) rows for the combined table."""
    rows = []
    for sym, s in r["per_symbol"].items():
        o, a = s["orders_from_tick_ms"], s["all_bars_from_tick_ms"]
        rows.append((f"decision latency {sym}, bars with an order: p50 / p99",
                     f"{o['p50']:.2f} / {o['p99']:.2f} ms (n={o['n']})",
                     f"p99 <= {GOAL_P99_MS:g} ms", _ok(o["p99"], GOAL_P99_MS)))
        w, d = s["orders_without_commit_ms"], s["orders_durable_commit_ms"]
        rows.append(("  same, all but the durable pre-send commit: p50 / p99",
                     f"{w['p50']:.2f} / {w['p99']:.2f} ms", "", ""))
        rows.append((f"  the durable commit itself (disk fsync p99 "
                     f"{r['fsync_floor_ms']['p99']:.2f} ms): p50 / p99",
                     f"{d['p50']:.2f} / {d['p99']:.2f} ms", "", ""))
        rows.append((f"decision latency {sym}, all bars: p50 / p99",
                     f"{a['p50']:.3f} / {a['p99']:.3f} ms (n={a['n']})",
                     f"p99 <= {GOAL_P99_MS:g} ms", _ok(a["p99"], GOAL_P99_MS)))
    idle = r.get("after_idle")
    if idle:
        for sym, s in idle["per_symbol"].items():
            o, d = s["orders_from_tick_ms"], s["orders_durable_commit_ms"]
            w = s["orders_without_commit_ms"]
            rows.append((f"decision latency {sym}, order bars after {idle['idle_ms']:g} ms "
                         "idle (as live): p50 / p99",
                         f"{o['p50']:.2f} / {o['p99']:.2f} ms (n={o['n']})",
                         f"p99 <= {GOAL_P99_MS:g} ms", _ok(o["p99"], GOAL_P99_MS)))
            f = idle["fsync_floor_idle_ms"]
            rows.append((f"  all but the durable commit / the commit (disk fsync after idle "
                         f"p50 {f['p50']:.2f}, p99 {f['p99']:.2f} ms): p99",
                         f"{w['p99']:.2f} / {d['p99']:.2f} ms", "", ""))
    return rows


LAST_RESULTS: dict[str, Any] | None = None


def main(argv: list[str] | None = None) -> None:
    global LAST_RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 6,000 bars only")
    parser.add_argument("--symbols", type=int, default=1,
                        help="streams per cycle (extra ones: the sample shifted in price)")
    parser.add_argument("--warmup", type=int, default=200, help="cycles not counted")
    parser.add_argument("--pause-ms", type=float, default=0.0,
                        help="idle time between cycles (live cycles are 15 min apart)")
    parser.add_argument("--mode", choices=["live", "paper"], default="live",
                        help="journal cadence: live commits every cycle (default), paper "
                             "every journal.batch_bars rows")
    parser.add_argument("--no-idle", action="store_true",
                        help="skip the second pass (order bars after idle, as live)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv or [])
    r = run(quick=args.quick, symbols=args.symbols, warmup=args.warmup,
            pause_ms=args.pause_ms, mode=args.mode)
    _print(r)
    if not args.no_idle:
        idle = run(quick=args.quick, symbols=args.symbols, warmup=args.warmup,
                   pause_ms=args.pause_ms, mode=args.mode,
                   idle_before=frozenset(r["order_bars"]))
        print(f"\nsecond pass, the same bars and orders, each order bar's cycle starting after "
              f"{idle['idle_ms']:g} ms of idle (live cycles are minutes apart):")
        _print(idle)
        r["after_idle"] = idle
    LAST_RESULTS = results = r
    if args.json:
        print(json.dumps(results, indent=2, default=str))


def _print(r: dict[str, Any]) -> None:
    print(f"decision latency, live-like cycles: {r['bars']:,} bars, {r['symbols']} symbol(s), "
          f"{r['cycles_measured']:,} cycles measured after {r['warmup']} warm-up, "
          f"{r['orders']} orders, SQLite file journal (WAL, synchronous=FULL), "
          f"{r['mode']} commit cadence")
    print(f"{'symbol':<10}{'measured':<34}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"   goal")
    labels = [("orders_from_tick_ms", "bar available -> order at broker"),
              ("orders_from_feed_ms", "  (from the feed's hand-over)"),
              ("orders_durable_commit_ms", "  of which the durable commit"),
              ("orders_without_commit_ms", "  all but the durable commit"),
              ("all_bars_from_tick_ms", "bar available -> bar done, all"),
              ("all_bars_from_feed_ms", "  (from the feed's hand-over)")]
    for sym, s in r["per_symbol"].items():
        for key, label in labels:
            d = s[key]
            goal = f"p99 <= {GOAL_P99_MS:g} ms: {_ok(d['p99'], GOAL_P99_MS)}" \
                if not label.startswith(" ") else ""
            print(f"{sym:<10}{label:<34}{d['n']:>7}{d['p50']:>9.3f}{d['p99']:>9.3f}"
                  f"{d['max']:>9.2f}   {goal}")
    f = r["fsync_floor_ms"]
    print(f"the disk's floor, one 16 KiB append + fsync in the journal's directory: p50 "
          f"{f['p50']:.3f} ms, p99 {f['p99']:.3f} ms, max {f['max']:.2f} ms (n={f['n']})")
    c = r["cycle_ms"]
    e = r["executor_process_bar_us"]
    print(f"whole cycle (polls + all streams + batch commits): p50 {c['p50']:.3f} ms, "
          f"p99 {c['p99']:.3f} ms, max {c['max']:.1f} ms")
    print(f"executor's own per-bar timer (validator .. after-bar checks): p50 {e['p50_us']:.0f} "
          f"us, p99 {e['p99_us']:.0f} us, max {e['max_us']:.0f} us")
    fi = r.get("fsync_floor_idle_ms")
    if fi:
        print(f"the disk's floor after {r['idle_ms']:g} ms idle, one 16 KiB append + fsync: p50 "
              f"{fi['p50']:.3f} ms, p99 {fi['p99']:.3f} ms, max {fi['max']:.2f} ms "
              f"(n={fi['n']})")


if __name__ == "__main__":
    main(sys.argv[1:])
