"""The paper account's positions: tickets per symbol, netted as the venue nets them.

A netting account (MT5 netting, a Binance spot holding, a one-way swap) keeps at most one
ticket per symbol: a fill in its direction adds to it at the average price (and, with an
order, takes the order's SL/TP and opener: the netting rule the simulator always had), an
opposite fill reduces, closes or reverses it. A hedging account (MT5 hedging) keeps a
ticket per entry, each with its own open price, SL and TP; an opposite fill closes tickets
oldest first, each at its own price (what the daemon's MT5 adapter does by naming them),
and opens what is left as a ticket of its own. An exit the venue triggered on a ticket
(``closes``: its opener's id) closes that ticket first.

PnL is in the quote currency: price change x lots x contract size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from domain import Bar, Fill, Order, OrderSide, Position
from executor.brokers.paper_venue import EPS, trigger_price


@dataclass(slots=True)
class Ticket:
    volume: float  # signed: positive long
    price: float
    stop_loss: float | None = None
    take_profit: float | None = None
    opened_by: str | None = None


@dataclass(frozen=True, slots=True)
class Exit:
    """A ticket's SL or TP the bar reached: where it fills."""

    opened_by: str
    kind: str
    side: OrderSide
    price: float
    volume: float


class PaperBook:
    def __init__(self, contract_size: float, *, hedging: bool) -> None:
        self.contract_size = contract_size
        self.hedging = hedging
        self._tickets: dict[str, list[Ticket]] = {}
        self._realized: dict[str, float] = {}  # per symbol, over its closed positions

    # ------------------------------------------------------------------ reading

    def net(self, symbol: str) -> float:
        return sum(t.volume for t in self._tickets.get(symbol, ()))

    def position(self, symbol: str) -> Position:
        """The net position; on several tickets (hedging) the average of those on the net
        side, the first ticket's SL/TP and opener, and the lots over all as
        ``gross_volume`` (as ``mt5_positions.net_positions`` reads a live account)."""
        realized = self._realized.get(symbol, 0.0)
        tickets = self._tickets.get(symbol)
        if not tickets:
            return Position(symbol, realized_pnl=realized)
        first = tickets[0]
        if len(tickets) == 1:
            return Position(symbol, first.volume, first.price, realized, first.stop_loss,
                            first.take_profit, first.opened_by)
        net = sum(t.volume for t in tickets)
        same = [t for t in tickets if (t.volume > 0) == (net > 0)]
        lots = sum(abs(t.volume) for t in same)
        avg = sum(abs(t.volume) * t.price for t in same) / lots if abs(net) >= EPS else 0.0
        return Position(symbol, net if abs(net) >= EPS else 0.0, avg, realized,
                        first.stop_loss, first.take_profit, first.opened_by,
                        gross_volume=sum(abs(t.volume) for t in tickets))

    def symbols(self) -> Iterator[str]:
        return iter([s for s, t in self._tickets.items() if t])

    def unrealized(self, symbol: str, price: float) -> float:
        return sum((price - t.price) * t.volume * self.contract_size
                   for t in self._tickets.get(symbol, ()))

    # ------------------------------------------------------------------ fills

    def apply(self, fill: Fill, order: Order | None, *, attach: bool = True,
              closes: str | None = None) -> float:
        """Book one fill; return the PnL it realises. ``order``: the entry this fill
        executes (its SL/TP go on the ticket when ``attach``); None for an exit or a fee.
        A fill of no volume (a funding payment) moves nothing."""
        signed = fill.volume * fill.side.sign
        if abs(signed) < EPS:
            return 0.0
        tickets = self._tickets.setdefault(fill.symbol, [])
        realized, left = self._close(tickets, fill, signed, closes)
        self._realized[fill.symbol] = self._realized.get(fill.symbol, 0.0) + realized
        if abs(left) < EPS:
            return realized
        sl = order.intent.stop_loss if order is not None and attach else None
        tp = order.intent.take_profit if order is not None and attach else None
        opener = order.client_order_id if order is not None else None
        if self.hedging or left != signed or not tickets:
            # A ticket of its own. On netting: opened from flat at the fill price (as the
            # simulator always computed it), or the rest of a reversal at the fill price.
            price = (fill.price * fill.volume / abs(left)
                     if not self.hedging and left == signed else fill.price)
            tickets.append(Ticket(left, price, sl, tp, opener))
            return realized
        t = tickets[0]  # netting, same direction: added at the average price
        volume = t.volume + left
        t.price = (t.price * abs(t.volume) + fill.price * fill.volume) / abs(volume)
        t.volume = volume
        if order is not None:
            t.stop_loss, t.take_profit, t.opened_by = sl, tp, opener
        return realized

    def _close(self, tickets: list[Ticket], fill: Fill, signed: float,
               closes: str | None) -> tuple[float, float]:
        """Close opposite tickets with ``signed`` lots: the one ``closes`` names first,
        then oldest first. Returns (PnL realised, signed lots left over)."""
        opposite = [t for t in tickets if (t.volume > 0) != (signed > 0)]
        opposite.sort(key=lambda t: t.opened_by != closes)  # stable: oldest first after
        realized, left = 0.0, signed
        for t in opposite:
            if abs(left) < EPS:
                break
            closed = min(abs(left), abs(t.volume))
            direction = 1 if t.volume > 0 else -1
            realized += (fill.price - t.price) * closed * direction * self.contract_size
            remainder = t.volume + left
            if abs(remainder) < EPS:
                tickets.remove(t)
                left = 0.0
            elif (remainder > 0) == (t.volume > 0):
                t.volume = remainder
                left = 0.0
            else:  # through zero: the rest goes on
                tickets.remove(t)
                left = remainder
        return realized, left

    # ------------------------------------------------------------------ attached exits

    def exits(self, bar: Bar) -> list[Exit]:
        """The SL/TP of ``bar.symbol``'s tickets the bar reaches; the stop is assumed first
        when both are inside the bar (conservative)."""
        out = []
        for t in self._tickets.get(bar.symbol, ()):
            if t.opened_by is None:
                continue
            side = OrderSide.SELL if t.volume > 0 else OrderSide.BUY
            for kind, level in (("stop_loss", t.stop_loss), ("take_profit", t.take_profit)):
                price = trigger_price(kind, side, level, bar) if level is not None else None
                if price is not None:
                    out.append(Exit(t.opened_by, kind, side, price, abs(t.volume)))
                    break
        return out
