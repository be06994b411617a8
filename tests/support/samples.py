"""The repository's real sample data, as the tests read it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
EXAMPLE = ROOT / "config" / "dta.example.toml"


def write_sample_head(path: Path, rows: int) -> Path:
    """The first ``rows`` bars of the real sample, as an MT5 CSV export."""
    with SAMPLE.open() as src:
        lines = [next(src) for _ in range(rows + 1)]
    path.write_text("".join(lines).rstrip("\n") + "\n")
    return path
