"""Paper broker: a fill simulator with positions and PnL, for ``paper`` mode and replays,
trading like the venue it is configured as (``paper_venue``: MT5 netting or hedging,
Binance spot or USD-M swap).

Fill model (documented so results can be checked by hand):
- a market order accepted during bar t fills at bar t+1's open, plus half the bar's spread
  for a buy and minus half for a sell, less what the venue will not execute (a spot sell
  beyond the coins held and free, a reduce-only order beyond the position);
- a protective stop or target is checked against the bar's low/high: a level the bar opens
  beyond fills at the open (gap); when a stop and a target are both inside one bar, the
  stop is assumed first (conservative). On the MT5 models they are the position's own
  (each ticket's on hedging), checked from the fill bar on; on spot and swap they are
  orders the engine places after the fill (``place_protection``, ``paper_protection``),
  checked from the bar after;
- commission per fill at ``fee_rate`` of the notional, in the venue's asset; on a swap,
  funding at every funding time since the symbol's last bar, on the position held then
  (a time inside a bar: after the entries that filled at its open, before a stop inside
  it), valued at the bar's open and reported as a ``funding`` fill of no volume whose
  ``fee`` is the payment (negative: received), credited to the order that opened the
  position: the journal books it as a cost and the position does not move;
- PnL is in the quote currency: price change x lots x contract size; equity is the initial
  balance plus realised PnL less fees plus the open positions at the last close.
Its "exchange" state lives in the journal, so a restart rebuilds it exactly (``restore``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta

from domain import Bar, Fill, Order, OrderSide, OrderState, OrderType, Position
from executor.brokers.base import BrokerFill, BrokerOrder, VolumeRules
from executor.brokers.paper_book import PaperBook
from executor.brokers.paper_protection import ProtectiveLegs, entry_of
from executor.brokers.paper_venue import (
    EPS,
    INSUFFICIENT,
    REDUCE_ONLY,
    PaperVenue,
    trigger_price,
    would_trigger,
)

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
                 volume_rules: VolumeRules | None = None, venue: PaperVenue | None = None):
        self.contract_size = contract_size
        self.initial_balance = initial_balance
        self.venue = venue or PaperVenue()
        self.holds_shorts = self.venue.holds_shorts  # read by the guardrails' no_shorts
        self.separate_protection = self.venue.separate_protection  # ProtectingBroker
        self._volume_rules = volume_rules
        self._pending: dict[str, Order] = {}
        self._known: dict[str, Order] = {}
        self.book = PaperBook(contract_size, hedging=self.venue.hedging)
        self._last_price: dict[str, float] = {}
        # The bar being processed per symbol, and the legs placed for entries it filled:
        # those are placed at its open (where the entry filled), so the rest of the bar
        # can still fire them (``within_bar``), as the venue's price path would.
        self._bar: dict[str, Bar] = {}
        self._placed_in_bar: dict[str, list[str]] = {}
        self.legs = ProtectiveLegs(self.venue, last_price=self._placing_price,
                                   held=self._projected)
        self._funded_to: dict[str, datetime] = {}  # funding charged up to, per symbol
        self.realized_pnl = 0.0
        self.fees_paid = 0.0  # commission and funding, in the quote currency
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
        elif why := self._refusal(order):
            result = order.transition(OrderState.REJECTED, reason=why)
        else:
            result = order.transition(OrderState.ACCEPTED,
                                      broker_order_id=f"{self.name}-{intent.client_order_id}")
            self._pending[intent.client_order_id] = result
        self._remember(result)
        return result

    def _refusal(self, order: Order) -> str:
        """Why the venue would refuse this market order now; empty when it would not."""
        intent, symbol = order.intent, order.intent.symbol
        last = self._last_price.get(symbol)
        exit_side = OrderSide.SELL if intent.side is OrderSide.BUY else OrderSide.BUY
        for kind, level in (("stop_loss", intent.stop_loss),
                            ("take_profit", intent.take_profit)):
            if level is not None and last is not None and not intent.reduce_only and \
                    would_trigger(kind, exit_side, level, last):
                return self.venue.stops_refused(kind, level, last)
        held = self._projected(symbol)
        if intent.reduce_only and held * intent.side.sign >= -EPS:
            return (REDUCE_ONLY if self.venue.kind == "swap" else
                    f"reduce_only: no {symbol} position against a {intent.side.value} "
                    "to reduce")
        if self.venue.spot and intent.side is OrderSide.SELL:
            if held <= EPS:
                return f"{INSUFFICIENT} (spot holds no shorts: no {symbol} held to sell)"
            free = held - self.legs.locked(symbol)
            if min(intent.volume, held) > free + EPS:
                return (f"{INSUFFICIENT} ({max(free, 0.0):.8g} of the {held:.8g} held is "
                        "free: working protective orders lock the rest)")
        return ""

    def _projected(self, symbol: str) -> float:
        """Net lots once the accepted market orders have executed (a venue executes them
        at once; paper at the next bar's open)."""
        net = self.book.net(symbol)
        for o in self._pending.values():
            if o.intent.symbol == symbol:
                taken = self.venue.fee_in_base(o.intent.side, o.intent.volume)
                net += (o.intent.volume - taken) * o.intent.side.sign
        return net

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
        return self.book.position(symbol)

    def positions(self) -> dict[str, Position]:
        return {s: p for s in self.book.symbols() if not (p := self.book.position(s)).is_flat}

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        self._bar.pop(bar.symbol, None)
        self._placed_in_bar[bar.symbol] = []
        if self.venue.funding_rate:
            # From where the last bar of the symbol left off: a gap is charged too, a time
            # another stream of the symbol (timeframe) charged already is not.
            since = self._funded_to.get(bar.symbol, bar.time)
            self._funded_to[bar.symbol] = max(since, bar.close_time)
            fills = self._funding(bar, since, bar.time)  # before this bar's entries
            fills.extend(self._fill_entries(bar))
            fills.extend(self._funding(bar, max(since, bar.time), bar.close_time))
        else:
            fills = self._fill_entries(bar)
        if any(f.kind == "entry" for f in fills):
            self._bar[bar.symbol] = bar  # legs placed now are placed at its open
        fills.extend(self._fire_legs(bar) if self.separate_protection
                     else self._attached_exits(bar))
        self._last_price[bar.symbol] = bar.close
        return self._booked(bar, fills)

    def within_bar(self, bar: Bar) -> list[BrokerFill]:
        """Legs placed after this bar's entries filled at its open, fired by the rest of
        the bar (stops first), as the live venue fires them on its price path between two
        bar closes; the engine books these with the bar's own fills."""
        placed = self._placed_in_bar.pop(bar.symbol, [])
        self._bar.pop(bar.symbol, None)  # later placements are judged at the close
        out: list[BrokerFill] = []
        for leg in self.legs.firing_order(bar.symbol):
            kind, level = leg.protective_kind, leg.intent.price
            if leg.client_order_id not in placed or kind is None or level is None:
                continue
            if leg.client_order_id not in self.legs.working:
                continue  # cancelled by its OCO in this bar
            price = trigger_price(kind, leg.intent.side, level, bar)
            if price is not None:
                out.extend(self._fire(leg, kind, price, bar))
        return self._booked(bar, out)

    def _placing_price(self, symbol: str) -> float | None:
        """The price a leg is judged against when placed: the open of the bar whose
        entries just filled (the legs go out right after the fill), else the last close."""
        bar = self._bar.get(symbol)
        return bar.open if bar is not None else self._last_price.get(symbol)

    def _booked(self, bar: Bar, fills: list[BrokerFill]) -> list[BrokerFill]:
        if fills:
            for f in fills:
                self.fees_paid += f.fill.fee
                self.realized_pnl += f.realized_pnl
            self._fills.extend(fills)
            horizon = bar.time - _RECENT
            while self._fills[0].fill.time < horizon:
                self._fills.popleft()
        return fills

    # ------------------------------------------------------------------ execution

    def _fill_entries(self, bar: Bar) -> list[BrokerFill]:
        out: list[BrokerFill] = []
        half = bar.spread / 2.0
        for coid in [c for c, o in self._pending.items() if o.intent.symbol == bar.symbol]:
            order = self._pending.pop(coid)
            side = order.intent.side
            price = bar.open + half if side is OrderSide.BUY else bar.open - half
            volume, note = self._executable(order)
            if volume <= EPS:  # nothing the venue would execute (defensive: refused first)
                self._remember(order.transition(OrderState.CANCELLED, reason=note))
                continue
            fee, base = self.venue.commission(side, price, volume, self.contract_size)
            fill = Fill(coid, f"{coid}:entry", bar.symbol, side, bar.time, price, volume, fee)
            realized = self.book.apply(fill, order, attach=not self.separate_protection)
            filled = order.transition(OrderState.FILLED, filled_volume=volume,
                                      avg_fill_price=price, reason=note or order.reason)
            self._remember(filled)
            out.append(BrokerFill(fill, "entry", realized, filled))
            if base > 0:  # spot: the buy's fee taken from the coins bought
                taken = Fill(coid, f"{fill.fill_id}:fee", bar.symbol, OrderSide.SELL,
                             bar.time, price, base, 0.0)
                out.append(BrokerFill(taken, "fee", self.book.apply(taken, None), None))
        return out

    def _executable(self, order: Order) -> tuple[float, str]:
        """The lots the venue executes now, and a note when fewer than asked."""
        intent = order.intent
        net = self.book.net(intent.symbol)
        if self.venue.spot and intent.side is OrderSide.SELL:
            can, what = max(net, 0.0) - self.legs.locked(intent.symbol), "our free holding"
        elif intent.reduce_only:
            can, what = max(-net * intent.side.sign, 0.0), "the position"
        else:
            return intent.volume, ""
        if intent.volume <= can + EPS:
            return intent.volume, ""
        return max(can, 0.0), f"{intent.side.value} cut from {intent.volume:.8g} to {what} " \
                              f"{max(can, 0.0):.8g}"

    def _funding(self, bar: Bar, start: datetime, end: datetime) -> list[BrokerFill]:
        """Funding at each funding time in [start, end) on the position held (swap only)."""
        out = []
        for t in self.venue.funding_times(start, end):
            pos = self.book.position(bar.symbol)
            if pos.is_flat or pos.opened_by is None:
                continue
            paid = pos.volume * bar.open * self.contract_size * self.venue.funding_rate
            side = OrderSide.BUY if pos.volume > 0 else OrderSide.SELL
            fill = Fill(pos.opened_by, f"{pos.opened_by}:funding:{t:%Y%m%dT%H%M}", bar.symbol,
                        side, t, bar.open, 0.0, paid)
            out.append(BrokerFill(fill, "funding", 0.0, None))
        return out

    def _attached_exits(self, bar: Bar) -> list[BrokerFill]:
        """The MT5 models: each position's (ticket's) own SL/TP."""
        out = []
        for ex in self.book.exits(bar):
            fee = self.venue.commission(ex.side, ex.price, ex.volume, self.contract_size)[0]
            fill = Fill(ex.opened_by, f"{ex.opened_by}:{ex.kind}", bar.symbol, ex.side,
                        bar.time, ex.price, ex.volume, fee)
            out.append(BrokerFill(fill, ex.kind, self.book.apply(fill, None,
                                                                 closes=ex.opened_by), None))
        return out

    def _fire_legs(self, bar: Bar) -> list[BrokerFill]:
        """Spot and swap: the working legs the bar reaches, each for at most what is held
        on its side; a spot OCO's other leg is cancelled when one fires."""
        out = []
        for leg in self.legs.firing_order(bar.symbol):
            kind, level = leg.protective_kind, leg.intent.price
            if leg.client_order_id not in self.legs.working or kind is None or level is None:
                continue  # cancelled by its OCO in this bar
            price = trigger_price(kind, leg.intent.side, level, bar)
            if price is not None:
                out.extend(self._fire(leg, kind, price, bar))
        return out

    def _fire(self, leg: Order, kind: str, price: float, bar: Bar) -> list[BrokerFill]:
        coid, side = leg.client_order_id, leg.intent.side
        del self.legs.working[coid]
        held = max(-self.book.net(bar.symbol) * side.sign, 0.0)
        volume = min(leg.intent.volume - leg.filled_volume, held)
        if volume <= EPS:
            self._remember(leg.transition(OrderState.CANCELLED, reason=(
                f"expired: fired at {price:g} with no {bar.symbol} position to reduce "
                "(reduce-only)")))
            return []
        entry = entry_of(leg)
        fee = self.venue.commission(side, price, volume, self.contract_size)[0]
        fill = Fill(entry, f"{coid}:fill", bar.symbol, side, bar.time, price, volume, fee)
        realized = self.book.apply(fill, None, closes=entry)
        self._remember(leg.transition(OrderState.FILLED, filled_volume=volume,
                                      avg_fill_price=price))
        if self.venue.spot:  # one OCO: "activation of one order immediately cancels the other"
            for other in self.legs.siblings(leg):
                del self.legs.working[other.client_order_id]
                self._remember(other.transition(OrderState.CANCELLED,
                                                reason=f"OCO: the {kind} leg filled"))
        return [BrokerFill(fill, kind, realized, None)]

    # ------------------------------------------------------------------ protective legs

    def place_protection(self, legs: Sequence[Order]) -> list[Order]:
        results = self.legs.place(legs)
        for order in results:
            self._remember(order)
            symbol = order.intent.symbol
            if order.state is OrderState.ACCEPTED and symbol in self._bar:
                self._placed_in_bar.setdefault(symbol, []).append(order.client_order_id)
        return results

    def cancel_protection(self, legs: Sequence[Order]) -> list[Order]:
        out = []
        for leg in legs:
            working = self.legs.working.pop(leg.client_order_id, None)
            if working is None:
                out.append(self._known.get(leg.client_order_id) or leg)
                continue
            cancelled = working.transition(OrderState.CANCELLED, reason="cancelled")
            self._remember(cancelled)
            out.append(cancelled)
        return out

    def protective_orders(self, symbol: str) -> list[BrokerOrder]:
        return self.legs.listed(symbol)

    # ------------------------------------------------------------------ restart

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        """Replay journaled fills in order; orders that may have reached the simulator but
        have no fill yet are pending again, and legs working again (the simulator is the
        journal's own exchange). A leg whose fill is journaled fired."""
        by_id = {o.client_order_id: o for o in orders}
        self._known = dict(by_id)
        fired: dict[str, Fill] = {}
        for fill, kind in zip(fills, fill_kinds, strict=True):
            order = by_id.get(fill.client_order_id) if kind == "entry" else None
            closes = fill.client_order_id if kind in ("stop_loss", "take_profit") else None
            realized = self.book.apply(fill, order, attach=not self.separate_protection,
                                       closes=closes)
            self.realized_pnl += realized
            self.fees_paid += fill.fee
            self._fills.append(BrokerFill(fill, kind, realized, None))
            if closes is not None and fill.fill_id.endswith(":fill"):
                fired[fill.fill_id.removesuffix(":fill")] = fill
        self._pending = {c: _accepted(o) for c, o in by_id.items()
                         if o.state in _PENDING_STATES and not o.intent.order_type.protective}
        for c, o in by_id.items():
            if not o.intent.order_type.protective or o.state not in _PENDING_STATES:
                continue
            if c in fired:
                self._known[c] = _accepted(o).transition(
                    OrderState.FILLED, filled_volume=fired[c].volume,
                    avg_fill_price=fired[c].price)
            else:
                self.legs.working[c] = self._known[c] = _accepted(o)

    # ------------------------------------------------------------------ reconciliation

    def open_orders(self) -> list[BrokerOrder]:
        """Accepted orders waiting for the next bar's open (legs: ``protective_orders``)."""
        return [BrokerOrder(c, o.broker_order_id or f"paper-{c}", o.intent.symbol,
                            o.intent.side, o.intent.volume, 0.0, OrderState.ACCEPTED)
                for c, o in self._pending.items()]

    def recent_fills(self, since: datetime) -> list[BrokerFill]:
        return [f for f in self._fills if f.fill.time >= since]

    # ------------------------------------------------------------------ accounting

    def unrealized_pnl(self) -> float:
        return sum(self.book.unrealized(s, self._last_price[s]) for s in self.book.symbols()
                   if s in self._last_price)

    def equity(self) -> float:
        return self.initial_balance + self.realized_pnl - self.fees_paid + self.unrealized_pnl()


def _accepted(order: Order) -> Order:
    return order if order.state is OrderState.ACCEPTED else order.transition(OrderState.ACCEPTED)
