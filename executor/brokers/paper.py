"""Paper broker: a fill simulator with positions and PnL, for ``paper`` mode and replays.

Fill model (documented so results can be checked by hand):
- a market order accepted during bar t fills at bar t+1's open, plus half the bar's spread
  for a buy and minus half for a sell;
- protective stops and targets are checked on every bar from the fill bar on, against the
  bar's low/high. A level the bar opens beyond fills at the open (gap); when the stop and
  the target are both inside one bar, the stop is assumed first (conservative);
- PnL is in the quote currency: price change x lots x contract size.
Its "exchange" state lives in the journal, so a restart rebuilds it exactly (``restore``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from domain import (
    Bar,
    Fill,
    Order,
    OrderSide,
    OrderState,
    OrderType,
    Position,
)
from executor.brokers.base import BrokerFill, BrokerOrder, VolumeRules

# What the simulator remembers besides open orders and positions: finished orders and
# fills of the last day of market time (reconciliation looks back minutes to hours; older
# ones are in the journal), and never more than these counts. Memory stays flat over a
# long run instead of growing with every trade (benchmarks/bench_memory.py).
_RECENT = timedelta(days=1)
_KNOWN_MAX = 20_000
_FILLS_MAX = 10_000
_PENDING_STATES = frozenset({OrderState.SUBMITTING, OrderState.ACCEPTED, OrderState.UNKNOWN})


class PaperBroker:
    name = "paper"
    simulated = True

    def __init__(self, *, contract_size: float = 100_000.0, initial_balance: float = 10_000.0,
                 volume_rules: VolumeRules | None = None):
        self.contract_size = contract_size
        self.initial_balance = initial_balance
        self._volume_rules = volume_rules
        self._pending: dict[str, Order] = {}
        self._known: dict[str, Order] = {}
        self._positions: dict[str, Position] = {}
        self._last_price: dict[str, float] = {}
        self.realized_pnl = 0.0
        # Recent fills only, for recent_fills (reconciliation looks back days, not years).
        self._fills: deque[BrokerFill] = deque(maxlen=_FILLS_MAX)
        self._sweep_at = 256  # finished orders kept before the next sweep by age

    # ------------------------------------------------------------------ Broker protocol

    def submit(self, order: Order) -> Order:
        intent = order.intent
        if intent.order_type is not OrderType.MARKET:
            result = order.transition(OrderState.REJECTED,
                                      reason=f"paper broker supports market orders only, "
                                             f"got {intent.order_type.value}")
        elif not intent.volume > 0:
            result = order.transition(OrderState.REJECTED, reason="volume must be positive")
        else:
            result = order.transition(OrderState.ACCEPTED,
                                      broker_order_id=f"{self.name}-{intent.client_order_id}")
            self._pending[intent.client_order_id] = result
        self._remember(result)
        return result

    def lookup(self, client_order_id: str) -> Order | None:
        return self._known.get(client_order_id)

    def _remember(self, order: Order) -> None:
        """Keep every open order and the most recent finished ones: bounded memory over a
        long run (a lookup of an old filled order falls back to the journal's record)."""
        self._known[order.client_order_id] = order
        if len(self._known) > self._sweep_at:
            horizon = order.intent.bar_time - _RECENT
            for coid in [c for c, o in self._known.items()
                         if o.state.terminal and o.intent.bar_time < horizon]:
                del self._known[coid]
            if len(self._known) > _KNOWN_MAX:
                for coid in [c for c, o in self._known.items() if o.state.terminal][
                        :len(self._known) - _KNOWN_MAX // 2]:
                    del self._known[coid]
            self._sweep_at = len(self._known) + 256

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """The simulated venue's sizes (``[paper] volume_step``/``volume_min``)."""
        del symbol
        return self._volume_rules

    def position(self, symbol: str) -> Position:
        return self._positions.get(symbol) or Position(symbol)

    def positions(self) -> dict[str, Position]:
        return {s: p for s, p in self._positions.items() if not p.is_flat}

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        fills: list[BrokerFill] = []
        for coid in [c for c, o in self._pending.items() if o.intent.symbol == bar.symbol]:
            order = self._pending.pop(coid)
            half = bar.spread / 2.0
            price = bar.open + half if order.intent.side is OrderSide.BUY else bar.open - half
            fill = Fill(coid, f"{coid}:entry", bar.symbol, order.intent.side, bar.time, price,
                        order.intent.volume)
            realized = self._apply(fill, order)
            filled = order.transition(OrderState.FILLED, filled_volume=order.intent.volume,
                                      avg_fill_price=price)
            self._remember(filled)
            fills.append(BrokerFill(fill, "entry", realized, filled))
        exit_fill = self._check_protection(bar)
        if exit_fill is not None:
            fills.append(exit_fill)
        self._last_price[bar.symbol] = bar.close
        if fills:
            self._fills.extend(fills)
            horizon = bar.time - _RECENT
            while self._fills[0].fill.time < horizon:
                self._fills.popleft()
        return fills

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        """Replay journaled fills in order; orders that may have reached the simulator but
        have no fill yet are pending again (the simulator is the journal's own exchange)."""
        by_id = {o.client_order_id: o for o in orders}
        self._known = dict(by_id)
        for fill, kind in zip(fills, fill_kinds, strict=True):
            order = by_id.get(fill.client_order_id)
            realized = self._apply(fill, order if kind == "entry" else None)
            self._fills.append(BrokerFill(fill, kind, realized, None))
        self._pending = {c: (o.transition(OrderState.ACCEPTED) if o.state is not
                             OrderState.ACCEPTED else o)
                         for c, o in by_id.items() if o.state in _PENDING_STATES}

    # ------------------------------------------------------------------ reconciliation

    def open_orders(self) -> list[BrokerOrder]:
        """Accepted orders waiting for the next bar's open."""
        return [BrokerOrder(c, o.broker_order_id or f"paper-{c}", o.intent.symbol,
                            o.intent.side, o.intent.volume, 0.0, OrderState.ACCEPTED)
                for c, o in self._pending.items()]

    def recent_fills(self, since: datetime) -> list[BrokerFill]:
        return [f for f in self._fills if f.fill.time >= since]

    # ------------------------------------------------------------------ accounting

    def unrealized_pnl(self) -> float:
        return sum(p.unrealized_pnl(self._last_price.get(s, p.avg_price), self.contract_size)
                   for s, p in self._positions.items())

    def equity(self) -> float:
        return self.initial_balance + self.realized_pnl + self.unrealized_pnl()

    def _apply(self, fill: Fill, order: Order | None) -> float:
        """Update the net position with one fill; return the PnL it realises."""
        pos = self.position(fill.symbol)
        signed = fill.volume * fill.side.sign
        realized = 0.0
        if pos.is_flat or (pos.volume > 0) == (signed > 0):
            new_volume = pos.volume + signed
            avg = (pos.avg_price * abs(pos.volume) + fill.price * fill.volume) / abs(new_volume)
            pos = replace(pos, volume=new_volume, avg_price=avg)
            if order is not None:
                pos = replace(pos, stop_loss=order.intent.stop_loss,
                              take_profit=order.intent.take_profit,
                              opened_by=order.client_order_id)
        else:
            closed = min(abs(signed), abs(pos.volume))
            direction = 1 if pos.volume > 0 else -1
            realized = (fill.price - pos.avg_price) * closed * direction * self.contract_size
            remainder = pos.volume + signed
            if abs(remainder) < 1e-12:
                pos = Position(fill.symbol, realized_pnl=pos.realized_pnl + realized)
            elif (remainder > 0) == (pos.volume > 0):
                pos = replace(pos, volume=remainder, realized_pnl=pos.realized_pnl + realized)
            else:  # flipped through zero: the rest opens a new position at the fill price
                pos = Position(fill.symbol, volume=remainder, avg_price=fill.price,
                               realized_pnl=pos.realized_pnl + realized,
                               stop_loss=order.intent.stop_loss if order else None,
                               take_profit=order.intent.take_profit if order else None,
                               opened_by=order.client_order_id if order else None)
        self._positions[fill.symbol] = pos
        self.realized_pnl += realized
        return realized

    def _check_protection(self, bar: Bar) -> BrokerFill | None:
        pos = self._positions.get(bar.symbol)
        if pos is None or pos.is_flat or pos.opened_by is None:
            return None
        long = pos.volume > 0
        sl, tp = pos.stop_loss, pos.take_profit
        price: float | None = None
        kind = ""
        if sl is not None and (bar.low <= sl if long else bar.high >= sl):
            price = min(bar.open, sl) if long else max(bar.open, sl)
            kind = "stop_loss"
        elif tp is not None and (bar.high >= tp if long else bar.low <= tp):
            price = max(bar.open, tp) if long else min(bar.open, tp)
            kind = "take_profit"
        if price is None:
            return None
        side = OrderSide.SELL if long else OrderSide.BUY
        fill = Fill(pos.opened_by, f"{pos.opened_by}:{kind}", bar.symbol, side, bar.time, price,
                    abs(pos.volume))
        realized = self._apply(fill, None)
        return BrokerFill(fill, kind, realized, None)
