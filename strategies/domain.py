"""Domain values shared by every layer.

This module imports nothing of ours, so `ensemble`, `guardrails` and `executor` can all
depend on it without depending on each other. Every value is immutable: state lives in a
few named owners (journal, position book, kill switch), never in these objects.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

# --------------------------------------------------------------------------- time frames

_TF_UNITS = {"S": 1, "M": 60, "H": 3600, "D": 86400, "W": 604800}
_CCXT_UNITS = {"s": "S", "m": "M", "h": "H", "d": "D", "w": "W"}


@lru_cache(maxsize=256)
def timeframe_seconds(timeframe: str) -> int:
    """Length of a bar in seconds, from MT5 names (``M15``, ``H1``) or ccxt names (``15m``)."""
    tf = normalize_timeframe(timeframe)
    return _TF_UNITS[tf[0]] * int(tf[1:])


@lru_cache(maxsize=256)
def normalize_timeframe(timeframe: str) -> str:
    """Canonical MT5-style name: ``15m`` -> ``M15``, ``1h`` -> ``H1``, ``M15`` stays."""
    tf = timeframe.strip()
    if len(tf) >= 2 and tf[0].upper() in _TF_UNITS and tf[1:].isdigit() and int(tf[1:]) > 0:
        return tf[0].upper() + str(int(tf[1:]))
    if len(tf) >= 2 and tf[-1] in _CCXT_UNITS and tf[:-1].isdigit() and int(tf[:-1]) > 0:
        return _CCXT_UNITS[tf[-1]] + str(int(tf[:-1]))
    raise ValueError(
        f"unknown timeframe {timeframe!r}: use MT5 names like M1, M15, H1, D1 "
        "or ccxt names like 1m, 15m, 1h, 1d"
    )


def ensure_utc(ts: datetime) -> datetime:
    """Reject naive datetimes: every timestamp inside the program is aware UTC."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts!r}: convert at the edge with the server offset")
    return ts.astimezone(UTC)


# --------------------------------------------------------------------------- bars


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed OHLCV bar. ``time`` is the UTC-aware *open* time of the bar.

    The constructor does not validate prices: a feed hands raw bars to ``BarValidator``,
    which rejects bad ones with a journaled reason. Only validated bars reach strategies.
    """

    symbol: str
    timeframe: str
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    spread: float = 0.0  # in price units (already multiplied by the symbol's point)

    @property
    def close_time(self) -> datetime:
        return self.time + timedelta(seconds=timeframe_seconds(self.timeframe))


# --------------------------------------------------------------------------- SMC vocabulary


class Direction(StrEnum):
    LONG = "long"
    SHORT = "short"
    FLAT = "flat"

    @property
    def sign(self) -> int:
        return 1 if self is Direction.LONG else -1 if self is Direction.SHORT else 0


class Trend(StrEnum):
    BULLISH = "bullish"
    BEARISH = "bearish"
    NEUTRAL = "neutral"


class SwingKind(StrEnum):
    HIGH = "high"
    LOW = "low"


class BreakKind(StrEnum):
    BOS = "bos"
    CHOCH = "choch"


@dataclass(frozen=True, slots=True)
class Swing:
    """A swing high or low at bar ``index``, known only from bar ``confirmed_index`` on."""

    kind: SwingKind
    index: int
    time: datetime
    price: float
    confirmed_index: int
    confirmed_time: datetime


@dataclass(frozen=True, slots=True)
class StructureBreak:
    """A break of structure (BOS) or change of character (CHoCH/SMS).

    ``swing_index`` is the bar of the broken swing (the reference bar the
    ``smartmoneyconcepts`` package labels); ``index`` is the breaking bar, at which the
    event became known.
    """

    kind: BreakKind
    direction: Direction
    level: float
    swing_index: int
    index: int
    time: datetime


@dataclass(frozen=True, slots=True)
class LiquidityPool:
    """Equal highs (buy-side) or equal lows (sell-side) resting liquidity."""

    side: SwingKind
    level: float
    swing_indices: tuple[int, ...]
    index: int  # bar at which the pool became known (its last swing confirmed)
    swept_index: int | None = None


@dataclass(frozen=True, slots=True)
class LiquiditySweep:
    """A wick through a pool (or swing) with the close back inside."""

    side: SwingKind
    level: float
    pool_index: int  # first swing bar of the swept pool (the swing's own bar for a lone swing)
    index: int
    time: datetime


@dataclass(frozen=True, slots=True)
class OrderBlock:
    """The last opposing candle before a displacement that broke structure.

    A *mitigation block* is the same record with ``mitigated_index`` set: price came back
    into the block after it formed.
    """

    direction: Direction
    top: float
    bottom: float
    index: int  # the block candle
    known_index: int  # bar at which the block was identified
    mitigated_index: int | None = None
    broken_index: int | None = None
    break_kind: BreakKind | None = None  # the structure break that formed the block
    swing_index: int | None = None  # the swing that break took out


@dataclass(frozen=True, slots=True)
class FairValueGap:
    direction: Direction
    top: float
    bottom: float
    index: int  # middle candle of the three-bar pattern
    known_index: int  # third candle: the gap is known once it closes
    filled_index: int | None = None  # price traded through the whole gap
    touched_index: int | None = None  # price first traded into the gap


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Everything a strategy or provider may know at the close of bar ``index``.

    Built only from closed bars up to and including ``bar``: the snapshot after bar t equals
    what a fresh ``SnapshotBuilder`` computes from bars[:t+1].
    """

    symbol: str
    timeframe: str
    index: int
    bar: Bar
    bars: tuple[Bar, ...] = ()
    atr: float | None = None
    trend: Trend = Trend.NEUTRAL
    swings: tuple[Swing, ...] = ()
    bos: tuple[StructureBreak, ...] = ()
    choch: tuple[StructureBreak, ...] = ()
    sweeps: tuple[LiquiditySweep, ...] = ()
    liquidity_pools: tuple[LiquidityPool, ...] = ()
    order_blocks: tuple[OrderBlock, ...] = ()
    mitigation_blocks: tuple[OrderBlock, ...] = ()
    fvgs: tuple[FairValueGap, ...] = ()
    dealing_range: tuple[float, float] | None = None  # (low, high) between last swings
    premium_discount: str | None = None  # "premium" | "discount" | "equilibrium"
    session: str | None = None  # "asia" | "london" | "new_york" | None

    @property
    def time(self) -> datetime:
        return self.bar.time

    def summary(self) -> dict[str, Any]:
        """A compact JSON-able view for the journal and `dta trace`."""
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "index": self.index,
            "time": self.bar.time.isoformat(),
            "close": self.bar.close,
            "atr": self.atr,
            "trend": self.trend.value,
            "last_swings": [
                {"kind": s.kind.value, "index": s.index, "price": s.price}
                for s in self.swings[-4:]
            ],
            "last_bos": [_break_dict(b) for b in self.bos[-2:]],
            "last_choch": [_break_dict(b) for b in self.choch[-2:]],
            "premium_discount": self.premium_discount,
            "session": self.session,
        }


def _break_dict(b: StructureBreak) -> dict[str, Any]:
    return {"direction": b.direction.value, "level": b.level, "index": b.index}


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a strategy would like to do. Never an order: the ensemble and guardrails decide."""

    strategy: str
    symbol: str
    timeframe: str
    bar_time: datetime
    direction: Direction
    entry: float
    stop: float
    target: float
    reason: str
    tags: tuple[str, ...] = ()

    @property
    def risk(self) -> float:
        return abs(self.entry - self.stop)


@dataclass(frozen=True, slots=True)
class Signal:
    """One provider's answer. An abstention (``abstain_reason`` set) is never a vote."""

    provider: str
    direction: Direction
    confidence: float
    rationale: str = ""
    tags: tuple[str, ...] = ()
    abstain_reason: str | None = None
    latency_ms: float = 0.0

    @property
    def abstained(self) -> bool:
        return self.abstain_reason is not None


@dataclass(frozen=True, slots=True)
class Decision:
    """The ensemble's combined view of one proposal."""

    proposal: Proposal
    direction: Direction
    confidence: float
    agreement: int
    voters: int
    signals: tuple[Signal, ...]
    contributions: tuple[tuple[str, float], ...]
    params_hash: str
    # Per-provider call telemetry (ensemble.telemetry.ProviderCall), journaled by the
    # executor; typed loosely so this module keeps importing nothing of ours.
    calls: tuple[Any, ...] = ()
    # The fraction of the configured order volume to send: the risk stage may resize (the
    # smallest factor any reviewer gave); 0 when the decision is flat.
    size_factor: float = 1.0
    # Why the ensemble itself vetoed (a quorum not met, a risk or execution reviewer's
    # veto): the decision is flat, and the consensus check shows this reason, not "no
    # consensus".
    veto_reason: str | None = None

    @property
    def provider_mix(self) -> tuple[str, ...]:
        return tuple(s.provider for s in self.signals)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One guardrail's answer. ``escalate`` marks a failure a human may override through
    the approval queue (conflict, low confidence); hard limits never escalate.
    ``environmental`` marks a failure that says the moment is wrong, not the decision:
    trading halted, stale data, outside trading hours, providers down, no clearance,
    equity unknown. Such a veto does not count as evidence against the parameter set (the
    veto-spike rollback trigger skips it)."""

    name: str
    passed: bool
    reason: str
    escalate: bool = False
    environmental: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """All guardrail checks for one decision; ``approved`` only if every one passed."""

    checks: tuple[CheckResult, ...]

    @property
    def approved(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {c.reason}" for c in self.checks if not c.passed)

    @property
    def needs_approval(self) -> bool:
        """Every failed check is one a human may override: queue it, do not drop it."""
        failed = [c for c in self.checks if not c.passed]
        return bool(failed) and all(c.escalate for c in failed)


# --------------------------------------------------------------------------- orders


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class OrderState(StrEnum):
    NEW = "new"
    SUBMITTING = "submitting"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})

# Explicit transition table. ``unknown`` is where an ambiguous broker outcome (timeout,
# dropped connection) parks an order until a lookup by client id resolves it; it is never
# resolved by sending again.
ORDER_TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.NEW: frozenset({OrderState.SUBMITTING, OrderState.CANCELLED}),
    OrderState.SUBMITTING: frozenset(
        {OrderState.ACCEPTED, OrderState.REJECTED, OrderState.UNKNOWN, OrderState.FILLED,
         OrderState.PARTIALLY_FILLED}
    ),
    OrderState.ACCEPTED: frozenset(
        {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED,
         OrderState.UNKNOWN}
    ),
    OrderState.PARTIALLY_FILLED: frozenset(
        {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED,
         OrderState.UNKNOWN}
    ),
    OrderState.UNKNOWN: frozenset(
        {OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.FILLED,
         OrderState.CANCELLED, OrderState.REJECTED}
    ),
    OrderState.FILLED: frozenset(),
    OrderState.CANCELLED: frozenset(),
    OrderState.REJECTED: frozenset(),
}


class InvalidTransition(ValueError):
    pass


def client_order_id(account: str, symbol: str, bar_time: datetime, intent: str) -> str:
    """Deterministic id: the same cycle re-run after a crash yields the same id.

    Kept to 24 characters of base-32 hash so it fits an MT5 comment (31 chars) with a
    prefix and satisfies exchanges' clientOrderId rules (alphanumeric, <= 36 chars).
    """
    key = "|".join((account, symbol, ensure_utc(bar_time).isoformat(), intent))
    digest = hashlib.sha256(key.encode()).hexdigest()
    return "dta" + digest[:21]


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What the router is asked to send, after every guardrail passed."""

    client_order_id: str
    account: str
    symbol: str
    side: OrderSide
    volume: float
    order_type: OrderType
    bar_time: datetime
    price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    reduce_only: bool = False
    params_hash: str = ""
    decision_id: int | None = None


@dataclass(frozen=True, slots=True)
class Order:
    intent: OrderIntent
    state: OrderState = OrderState.NEW
    filled_volume: float = 0.0
    avg_fill_price: float | None = None
    broker_order_id: str | None = None
    reason: str = ""

    @property
    def client_order_id(self) -> str:
        return self.intent.client_order_id

    def transition(self, new_state: OrderState, **changes: Any) -> Order:
        if new_state not in ORDER_TRANSITIONS[self.state]:
            raise InvalidTransition(
                f"order {self.client_order_id}: {self.state.value} -> {new_state.value} "
                "is not an allowed transition"
            )
        return replace(self, state=new_state, **changes)


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    fill_id: str
    symbol: str
    side: OrderSide
    time: datetime
    price: float
    volume: float
    fee: float = 0.0


@dataclass(frozen=True, slots=True)
class Position:
    """Net position in one symbol; ``volume`` is signed (positive long)."""

    symbol: str
    volume: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    stop_loss: float | None = None
    take_profit: float | None = None
    opened_by: str | None = None  # client order id of the opening order
    # Lots over every open ticket, long and short, on an account that holds positions
    # apart (MT5 hedging); None where one net position per symbol is all there is.
    gross_volume: float | None = None

    @property
    def hedged_volume(self) -> float:
        """Lots held long and short at once (both tickets open at the broker), which the
        net ``volume`` hides: 0.3 long and 0.1 short is net 0.2 with 0.2 hedged."""
        if self.gross_volume is None:
            return 0.0
        return max(0.0, round(self.gross_volume - abs(self.volume), 10))

    @property
    def is_flat(self) -> bool:
        return abs(self.volume) < 1e-12

    @property
    def direction(self) -> Direction:
        if self.is_flat:
            return Direction.FLAT
        return Direction.LONG if self.volume > 0 else Direction.SHORT

    def unrealized_pnl(self, price: float, contract_size: float) -> float:
        return (price - self.avg_price) * self.volume * contract_size if not self.is_flat else 0.0


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class ParameterSet:
    """Strategy parameters, ensemble weights and guardrail limits as one hashed document."""

    values: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return stable_hash(self.values)


def stable_hash(value: Any) -> str:
    """SHA-256 of canonical JSON: key order and float formatting never change the hash."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)
