"""Strategies: domain types, SMC snapshot building and reference trade logic. Pure, no I/O."""

from domain import (
    Bar,
    Direction,
    MarketSnapshot,
    Position,
    Proposal,
    Signal,
)
from strategies.logic import StrategyContext, TradeLogic
from strategies.snapshot import SnapshotBuilder

__all__ = [
    "Bar",
    "Direction",
    "MarketSnapshot",
    "Position",
    "Proposal",
    "Signal",
    "SnapshotBuilder",
    "StrategyContext",
    "TradeLogic",
]
