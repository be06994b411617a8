"""Per-bar cost of the incremental SnapshotBuilder vs recomputing `smartmoneyconcepts`.

A live loop that used the batch package would have to rerun it over a rolling window on
every closed bar (its results for the last bars change as new bars arrive). This measures
exactly that, on a sample of windows to keep the run short, against our incremental
update over the whole file. Prints numbers; never fails a test run.

    .venv/bin/python benchmarks/bench_smc.py [--windows 200] [--window 500]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without an install
    sys.path.insert(0, str(ROOT))

from domain import Bar  # noqa: E402
from strategies.snapshot import SnapshotBuilder  # noqa: E402

SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"


def load_bars(path: Path = SAMPLE) -> list[Bar]:
    with path.open(newline="") as fh:
        return [
            Bar(
                "EURUSD",
                "M15",
                datetime.strptime(r["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC),
                float(r["Open"]),
                float(r["High"]),
                float(r["Low"]),
                float(r["Close"]),
                float(r["Tickvol"]),
                int(r["Spread"]) * 0.00001,
            )
            for r in csv.DictReader(fh)
        ]


def bench_builder(bars: list[Bar], repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds per bar for a full incremental pass over ``bars``."""
    best = float("inf")
    for _ in range(repeats):
        builder = SnapshotBuilder()
        start = time.perf_counter()
        for bar in bars:
            builder.update(bar)
        best = min(best, (time.perf_counter() - start) / len(bars))
    return best


def _import_smc() -> Any:
    """The package prints a banner on import; keep the benchmark's output to numbers."""
    with contextlib.redirect_stdout(io.StringIO()):
        from smartmoneyconcepts import smc  # type: ignore[import-untyped,import-not-found,unused-ignore]
    return smc


def bench_package(bars: list[Bar], windows: int, window: int, seed: int = 7) -> float:
    """Mean seconds to recompute swings, BOS/CHoCH, OB, FVG and liquidity on one window."""
    import pandas as pd  # type: ignore[import-untyped,import-not-found,unused-ignore]

    smc = _import_smc()
    frame = pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        }
    )
    ends = random.Random(seed).sample(range(window, len(bars) + 1), windows)
    # Windows are cut before timing: slicing is the caller's cost, not the package's.
    cuts = [frame.iloc[end - window : end].reset_index(drop=True) for end in ends]

    def recompute(df: Any) -> None:
        shl = smc.swing_highs_lows(df, swing_length=5)
        smc.bos_choch(df, shl)
        smc.ob(df, shl)
        smc.fvg(df)
        smc.liquidity(df, shl)

    with contextlib.redirect_stdout(io.StringIO()):
        recompute(cuts[0])  # warm-up: first-call imports and caches
        start = time.perf_counter()
        for df in cuts:
            recompute(df)
        elapsed = time.perf_counter() - start
    return elapsed / len(cuts)


def run(windows: int = 200, window: int = 500) -> dict[str, Any]:
    """Measure both and return the figures (seconds and microseconds per bar)."""
    bars = load_bars()
    ours = bench_builder(bars)
    result: dict[str, Any] = {
        "bars": len(bars),
        "builder_us_per_bar": ours * 1e6,
        "builder_bars_per_s": 1.0 / ours,
    }
    try:
        _import_smc()
    except ImportError as exc:
        result["package"] = f"skipped: smartmoneyconcepts not importable ({exc})"
        return result
    theirs = bench_package(bars, windows, window)
    result.update(
        package="smartmoneyconcepts",
        windows=windows,
        window=window,
        package_us_per_bar=theirs * 1e6,
        ratio=theirs / ours,
    )
    return result


LAST_RESULTS: dict[str, Any] | None = None  # what the last main() measured, for runners


def main(argv: list[str] | None = None) -> None:
    """Print the figures. ``argv`` defaults to none (not ``sys.argv``), so a runner that
    imports this module never has its own command line parsed here."""
    global LAST_RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args(argv or [])
    r = LAST_RESULTS = run(args.windows, args.window)
    print(f"SnapshotBuilder.update      {r['builder_us_per_bar']:10.1f} us/bar "
          f"({r['builder_bars_per_s']:,.0f} bars/s over {r['bars']:,} bars)")
    if "ratio" not in r:
        print(f"smartmoneyconcepts          {r['package']}")
        return
    print(f"smartmoneyconcepts rolling  {r['package_us_per_bar']:10.1f} us/bar "
          f"(recompute over a {r['window']}-bar window, {r['windows']} windows sampled)")
    print(f"ratio                       {r['ratio']:10.0f}x faster incremental")


if __name__ == "__main__":
    main(sys.argv[1:])
