"""Protective legs held apart from the position (paper ``spot`` and ``swap``): the orders a
venue keeps after the entry filled, placed by the engine (``ProtectingBroker``).

A leg is a pending conditional order (``protective_intent``: the opposite side,
reduce-only, its trigger in ``price``). Placement refuses what the venue refuses:
- a trigger the last close already passed: "would trigger immediately" (Binance -2021;
  the engine then closes the position);
- on spot, a buy leg (no short to protect) and a quantity the free balance cannot cover
  (-2010): an entry's legs are one OCO whose quantity is locked while it works, so legs
  bigger than the coins held after the buy's fee are refused, and the coins they lock
  cannot be sold by another order. The OCO is accepted or refused whole.
On later bars a working leg fires with the fill model of attached exits (a gap fills at
the open; stops before targets when one bar reaches both) for at most what is held on its
side: a reduce-only order never opens or grows a position, and one with nothing left to
reduce expires (cancelled, no fill). On spot the other leg of the OCO is cancelled when
one fires; on a swap it stays working until the engine cancels it, as Binance leaves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from domain import Order, OrderSide, OrderState
from domain.orders import protected_entry
from executor.brokers.base import BrokerOrder
from executor.brokers.paper_venue import EPS, INSUFFICIENT, PaperVenue, would_trigger

_OPEN = frozenset({OrderState.SUBMITTING, OrderState.UNKNOWN, OrderState.NEW})


class ProtectiveLegs:
    def __init__(self, venue: PaperVenue, *, last_price: Callable[[str], float | None],
                 held: Callable[[str], float]) -> None:
        self.venue = venue
        self._last_price = last_price
        self._held = held  # net signed lots of a symbol (pending entries projected)
        self.working: dict[str, Order] = {}  # accepted legs by client id, placement order

    # ------------------------------------------------------------------ reading

    def on(self, symbol: str) -> list[Order]:
        return [o for o in self.working.values() if o.intent.symbol == symbol]

    def locked(self, symbol: str) -> float:
        """Lots held back by working legs: one OCO locks its quantity once (spot)."""
        per_entry: dict[str, float] = {}
        for o in self.on(symbol):
            key = entry_of(o)
            per_entry[key] = max(per_entry.get(key, 0.0), o.intent.volume - o.filled_volume)
        return sum(per_entry.values())

    def listed(self, symbol: str) -> list[BrokerOrder]:
        return [BrokerOrder(o.client_order_id, o.broker_order_id or f"paper-{o.client_order_id}",
                            symbol, o.intent.side, o.intent.volume, o.filled_volume,
                            OrderState.ACCEPTED, price=o.intent.price)
                for o in self.on(symbol)]

    def firing_order(self, symbol: str) -> list[Order]:
        """Working legs in the order a bar fires them: stops first, then by placement."""
        legs = self.on(symbol)
        return sorted(legs, key=lambda o: o.protective_kind != "stop_loss")

    def siblings(self, leg: Order) -> list[Order]:
        """The other working legs of the same entry."""
        key = entry_of(leg)
        return [o for o in self.working.values()
                if o.client_order_id != leg.client_order_id and entry_of(o) == key]

    # ------------------------------------------------------------------ placing

    def place(self, legs: Sequence[Order]) -> list[Order]:
        """Each leg accepted or rejected with the venue's reason (spot: all or none)."""
        answers = [(leg, self._refusal(leg)) for leg in legs]
        if self.venue.spot and any(why for _, why in answers):
            first = next(why for _, why in answers if why)
            answers = [(leg, why or f"OCO refused: {first}") for leg, why in answers]
        if self.venue.spot:
            answers = self._check_balance(answers)
        return [self._answer(leg, why) for leg, why in answers]

    def _refusal(self, leg: Order) -> str:
        intent = leg.intent
        if not self.venue.separate_protection:
            return (f"the {self.venue.kind} paper account holds SL/TP on the position: it "
                    "takes no separate protective orders")
        kind = leg.protective_kind
        if kind is None or intent.price is None:
            return f"{intent.order_type.value} is no protective order with a trigger"
        if not intent.volume > 0:
            return "volume must be positive"
        if self.venue.spot and intent.side is OrderSide.BUY:
            return f"{INSUFFICIENT} (spot holds no shorts: a buy exit protects nothing)"
        last = self._last_price(intent.symbol)
        if last is not None and would_trigger(kind, intent.side, intent.price, last):
            return self.venue.stops_refused(kind, intent.price, last)
        return ""

    def _check_balance(self, answers: list[tuple[Order, str]]) -> list[tuple[Order, str]]:
        """Spot: the OCO's quantity must be free (held less what other legs lock)."""
        wanted = max((leg.intent.volume for leg, why in answers if not why), default=0.0)
        if wanted <= 0:
            return answers
        symbol = answers[0][0].intent.symbol
        free = max(self._held(symbol), 0.0) - self.locked(symbol)
        if wanted <= free + EPS:
            return answers
        why = (f"{INSUFFICIENT} (the exits ask {wanted:.8g}, {max(free, 0.0):.8g} is free: a "
               "buy's fee is paid in the base asset, and working exits lock what they sell)")
        return [(leg, old or why) for leg, old in answers]

    def _answer(self, leg: Order, why: str) -> Order:
        known = self.working.get(leg.client_order_id)
        if known is not None:
            return known  # already working under this id: never placed twice
        if leg.state is OrderState.NEW:
            leg = leg.transition(OrderState.SUBMITTING)
        if leg.state not in _OPEN:
            return leg
        if why:
            return leg.transition(OrderState.REJECTED, reason=why)
        accepted = leg.transition(OrderState.ACCEPTED,
                                  broker_order_id=f"paper-{leg.client_order_id}")
        self.working[leg.client_order_id] = accepted
        return accepted


def entry_of(leg: Order) -> str:
    """The client id of the entry a leg protects."""
    found = protected_entry(leg.client_order_id)
    return found[0] if found is not None else leg.client_order_id
