"""The values every layer shares, importing nothing of ours.

``strategies``, ``ensemble``, ``guardrails`` and ``executor`` all depend on this package and
never on each other's internals for these types: bars and time frames (``bars``), market
structure and the snapshot (``structure``), proposals, signals, decisions and verdicts
(``decisions``), orders with their state table, fills and positions (``orders``), the
parameter set (``params``) and the one error tree (``errors``). Every value is immutable:
state lives in a few named owners (journal, position book, trading state), never here.
"""

from __future__ import annotations

from domain.bars import (
    Bar,
    ensure_utc,
    is_finite,
    normalize_timeframe,
    timeframe_seconds,
)
from domain.decisions import CheckResult, Decision, Proposal, Signal, Verdict
from domain.errors import InvalidTransition
from domain.orders import (
    ORDER_TRANSITIONS,
    Fill,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    client_order_id,
)
from domain.params import ParameterSet, stable_hash
from domain.structure import (
    BreakKind,
    Direction,
    FairValueGap,
    LiquidityPool,
    LiquiditySweep,
    MarketSnapshot,
    OrderBlock,
    StructureBreak,
    Swing,
    SwingKind,
    Trend,
)

__all__ = [
    "ORDER_TRANSITIONS", "Bar", "BreakKind", "CheckResult", "Decision", "Direction",
    "FairValueGap", "Fill", "InvalidTransition", "LiquidityPool", "LiquiditySweep",
    "MarketSnapshot", "Order", "OrderBlock", "OrderIntent", "OrderSide", "OrderState",
    "OrderType", "ParameterSet", "Position", "Proposal", "Signal", "StructureBreak", "Swing",
    "SwingKind", "Trend", "Verdict", "client_order_id", "ensure_utc", "is_finite",
    "normalize_timeframe", "stable_hash", "timeframe_seconds",
]
