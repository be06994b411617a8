"""The strategy seam: ``TradeLogic.on_bar`` turns a snapshot into proposals, never orders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from domain import MarketSnapshot, Position, Proposal


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy may know besides the market: its own position and parameters."""

    position: Position
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TradeLogic(Protocol):
    """A strategy. Pure: no I/O, no clock, no randomness; the same snapshots give the same
    proposals, which is what makes replays and restarts exact. A desk's own class needs
    nothing of ours but this shape: settings name it by entry point or import path
    (strategies/registry.py)."""

    name: str

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]: ...
