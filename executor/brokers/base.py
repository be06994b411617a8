"""The broker seam. ``live`` brokers (MT5, ccxt) and the ``paper`` simulator implement it;
the router is the only caller, and only after the order row is journaled."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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
