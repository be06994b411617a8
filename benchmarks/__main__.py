"""`make bench`: run every benchmark, print a table each, write benchmarks/results.json."""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

BENCHES = ["bench_replay", "bench_smc"]


def main() -> int:
    results = {}
    for name in BENCHES:
        print(f"\n=== {name}")
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ImportError as exc:
            print(f"skipped: {exc}")
            continue
        try:
            if hasattr(module, "main"):
                module.main()
                results[name] = getattr(module, "LAST_RESULTS", None) or "printed"
            else:
                results[name] = module.run()
                print(json.dumps(results[name], indent=2, default=str))
        except Exception:
            traceback.print_exc()
            results[name] = "error"
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
