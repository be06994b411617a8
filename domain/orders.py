"""Orders and their state table, fills and positions.

The transition table is the one place that says which order state may follow which; the
router and the tracker both go through ``Order.transition``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.bars import ensure_utc
from domain.errors import InvalidTransition
from domain.structure import Direction


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"  # a protective stop-loss leg (a position's exit, held by the venue)
    TAKE_PROFIT = "take_profit"  # a protective take-profit leg

    @property
    def protective(self) -> bool:
        return self in _PROTECTIVE_KIND


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


# The order type of each protective leg and the fill kind its execution is booked as (the
# kinds paper and MT5 use for an exit the venue triggered on the position).
_PROTECTIVE_KIND = {OrderType.STOP: "stop_loss", OrderType.TAKE_PROFIT: "take_profit"}
PROTECTIVE_TYPE = {kind: t for t, kind in _PROTECTIVE_KIND.items()}
_SUFFIX = {"stop_loss": "sl", "take_profit": "tp"}
_PROTECTIVE_ID = re.compile(r"^(?P<entry>.+?)(?P<suffix>sl|tp)(?P<generation>[0-9]*)$")

_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})
# Sent, with the broker's answer not known: settled by a lookup by client id, never re-sent.
UNRESOLVED_STATES = frozenset({OrderState.SUBMITTING, OrderState.UNKNOWN})

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


def protective_id(entry_client_id: str, kind: str, generation: int = 0) -> str:
    """The client id of an entry's protective leg: the entry's id, ``sl``/``tp``, and the
    generation when a leg had to be placed again (a first send proven lost). Deterministic,
    so after a crash the legs of any journaled entry are found by id; 27 characters at
    most for our 24-character ids (Binance allows 36)."""
    return f"{entry_client_id}{_SUFFIX[kind]}{generation or ''}"


def protected_entry(client_id: str) -> tuple[str, str, int] | None:
    """(entry client id, leg kind, generation) of a protective id; None for any other id.
    Our entry ids end in hex digits, which never spell ``sl`` or ``tp``."""
    m = _PROTECTIVE_ID.match(client_id)
    if m is None:
        return None
    kind = "stop_loss" if m["suffix"] == "sl" else "take_profit"
    return m["entry"], kind, int(m["generation"] or 0)


def protective_intent(entry: OrderIntent, kind: str, volume: float,
                      generation: int = 0) -> OrderIntent:
    """The intent of one protective leg of ``entry``: the opposite side, reduce-only,
    for ``volume`` (the lots filled), triggered at the entry's stop or target (``price``)."""
    trigger = entry.stop_loss if kind == "stop_loss" else entry.take_profit
    if trigger is None:
        raise ValueError(f"order {entry.client_order_id} has no {kind}")
    return replace(
        entry, client_order_id=protective_id(entry.client_order_id, kind, generation),
        side=OrderSide.SELL if entry.side is OrderSide.BUY else OrderSide.BUY,
        volume=volume, order_type=PROTECTIVE_TYPE[kind], price=trigger, stop_loss=None,
        take_profit=None, reduce_only=True)


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

    @property
    def protective_kind(self) -> str | None:
        """``stop_loss``/``take_profit`` for a protective leg, else None."""
        return _PROTECTIVE_KIND.get(self.intent.order_type)

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
