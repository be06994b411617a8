"""Bar intake: where bars come from (feeds) and the gate they pass (``BarValidator``).

Only stdlib-backed modules are re-exported here; broker-backed feeds (MT5, ccxt) are
imported from their own modules so ``import executor.feeds`` stays cheap.
"""

from __future__ import annotations

from executor.feeds.base import Feed, RawRejection
from executor.feeds.files import LoadedBars, load_bars
from executor.feeds.replay import ReplayFeed
from executor.feeds.validator import REJECTION_REASONS, BarCheck, BarValidator

__all__ = [
    "REJECTION_REASONS",
    "BarCheck",
    "BarValidator",
    "Feed",
    "LoadedBars",
    "RawRejection",
    "ReplayFeed",
    "load_bars",
]
