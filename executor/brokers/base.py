"""The broker seam. ``live`` brokers (MT5, ccxt) and the ``paper`` simulator implement it;
the router is the only caller, and only after the order row is journaled."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from domain import Bar, Fill, Order, OrderSide, OrderState, Position


@dataclass(frozen=True, slots=True)
class BrokerFill:
    """A fill as the broker reports it, with the order state it leaves behind.

    ``kind`` is ``entry`` for the order's own execution, ``stop_loss``/``take_profit`` for a
    protective exit the broker triggered on the position the order opened.
    """

    fill: Fill
    kind: str
    realized_pnl: float
    order: Order | None = None


@dataclass(frozen=True, slots=True)
class VolumeRules:
    """What the venue accepts as an order's size: multiples of ``step``, at least ``min``
    (MT5 ``volume_step``/``volume_min``; a ccxt market's amount precision and minimum).
    The daemon rounds a decision's volume down to the step *before* the guardrails judge
    it, and a volume below the minimum is a veto, never an order the venue will refuse."""

    step: float
    min: float

    def round_down(self, volume: float) -> float:
        if self.step <= 0:
            return volume
        steps = math.floor(volume / self.step + 1e-9)
        decimals = max(0, -math.floor(math.log10(self.step))) + 2 if self.step < 1 else 2
        return round(steps * self.step, decimals)


class Broker(Protocol):
    name: str
    # True when "sending" is a call into this process's own simulator (paper, shadow):
    # nothing leaves the machine, and a crash loses the simulator's state together with
    # the uncommitted journal rows, so the router need not commit before the call.
    simulated: bool

    def submit(self, order: Order) -> Order:
        """Send a ``submitting`` order; return it accepted, filled, rejected or ``unknown``.
        Raise nothing for broker-side outcomes: ambiguity is the ``unknown`` state."""
        ...

    def lookup(self, client_order_id: str) -> Order | None:
        """The broker's view of an order we sent, found by our client order id."""
        ...

    def on_bar(self, bar: Bar) -> Sequence[BrokerFill]:
        """Fills that happened up to this closed bar (a simulator executes here)."""
        ...

    def position(self, symbol: str) -> Position: ...

    def positions(self) -> dict[str, Position]: ...

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        """Rebuild in-process state after a restart from what the journal recorded."""
        ...


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker lists it, ours or not.

    ``client_order_id`` is our id when the broker order carries it (MT5 comment token,
    exchange clientOrderId), else ``None`` or the foreign id; ``ours`` tells which.
    Reconciliation adopts ours and flags the rest.
    """

    client_order_id: str | None
    broker_order_id: str
    symbol: str
    side: OrderSide
    volume: float
    filled_volume: float
    state: OrderState
    ours: bool = True
    price: float | None = None
    avg_fill_price: float | None = None
    time: datetime | None = None


class ReconcilableBroker(Broker, Protocol):
    """A broker start-up reconciliation can compare with the journal (live brokers, paper).

    Kept apart from ``Broker`` so a broker that cannot list its orders (a pure shadow
    sink) still satisfies the seam the router needs.
    """

    def open_orders(self) -> list[BrokerOrder]:
        """Orders working at the broker now, ours and foreign (``ours`` tells which)."""
        ...

    def recent_fills(self, since: datetime) -> list[BrokerFill]:
        """Our fills executed at or after ``since`` (aware UTC), oldest first, each with a
        stable ``fill_id`` so recording one twice is detectable."""
        ...


@runtime_checkable
class ProtectingBroker(Broker, Protocol):
    """A venue that holds a position's protective exits as orders of their own (Binance
    USD-M conditional orders, a spot OCO), which the daemon places after the entry fills,
    instead of as attributes of the position (MT5's SL/TP) or of a simulated one.

    The engine's ``ProtectiveOrders`` (executor/engine/protection.py) is the only caller:
    each leg is an ``Order`` whose intent is ``protective_intent(entry, kind, volume)``
    (order type ``stop``/``take_profit``, the trigger in ``price``, reduce-only, the
    opposite side, client id ``protective_id(entry, kind, generation)``), journaled
    ``submitting`` before it is handed here, exactly like an entry through the router.
    ``lookup(client_id)`` finds legs too; a leg that fired is reported by ``on_bar`` as a
    fill credited to its *entry* with kind ``stop_loss``/``take_profit`` (the convention
    of paper and MT5), and its own state by ``lookup``.
    """

    # True when this account's protective exits are orders the daemon must place (a swap,
    # a spot account that places OCOs, a paper model of either); False where the venue
    # attaches them to the position itself (MT5, the MT5-like paper model).
    separate_protection: bool

    def place_protection(self, legs: Sequence[Order]) -> list[Order]:
        """Send the ``submitting`` legs of one entry (a venue may send them together, as
        one OCO); return each accepted, rejected (``reason`` says why; a trigger the
        price already passed is a rejection: the position must be closed) or unknown
        (no answer: looked up later, never re-sent under the same id). Raise nothing."""
        ...

    def cancel_protection(self, legs: Sequence[Order]) -> list[Order]:
        """Cancel working legs (their position closed another way); each returned in the
        state the venue leaves it: cancelled, or filled when it fired first. A leg the
        venue no longer holds is returned as it was (its lookup tells the rest)."""
        ...

    def protective_orders(self, symbol: str) -> list[BrokerOrder]:
        """Protective (conditional) orders working at the venue on ``symbol``, ours and
        foreign (``ours`` tells which), for start-up reconciliation."""
        ...

    def within_bar(self, bar: Bar) -> Sequence[BrokerFill]:
        """Legs placed after ``bar``'s fills that the rest of the bar fired. A simulator
        places them at the bar's open and fires them on its range, as a live venue fires
        them on its price path before the next close; a live venue reports such fills at
        its next poll (nothing here)."""
        ...
