"""A position's protective exits at the venue: placed right after its entry fills,
journaled before they are sent, the other leg cancelled when one fires or the position
closes another way, reconciled at every start.

Where the venue holds the stop-loss and take-profit as orders of their own (Binance USD-M
conditional orders, a spot OCO: ``ProtectingBroker.separate_protection``), a position the
daemon opened is protected only once those orders are at the venue; until then a crash,
the VPS or the network going away leaves it without a stop. So:

- **placed at once**: when an entry with a stop or target has filled (its send's answer, or
  its fills at the next bar), each leg is an order of its own: ``protective_intent`` (the
  opposite side, reduce-only, for the position's size; the trigger in ``price``) under the
  deterministic ``protective_id(entry, kind, generation)``, journaled ``submitting`` and
  committed before the venue is called, exactly as the router sends an entry. A leg whose
  answer is lost is looked up by the resolver, never sent again under its id.
- **closed when it cannot be protected**: a leg the venue refuses (a trigger the price has
  already passed, Binance -2021; any other refusal) means the position stands without its
  stop: it is closed at once with a reduce-only market order (its own deterministic id, so
  a re-run never closes twice) and an incident says why.
- **placed again only when provably never placed**: a leg the resolver declared lost (not
  at the venue after the grace, which exceeds the venue's recvWindow) is placed again as the
  next generation (``...sl1``), at most ``MAX_GENERATIONS`` times.
- **an order against the position**: its legs are cancelled before it goes out (a spot OCO
  locks the coins the sell needs) and placed again for what remains once it is answered.
- **one leg fires, the other goes**: a ``stop_loss``/``take_profit`` fill credited to the
  entry moves that leg to ``filled`` and cancels the other (Binance does not: a reduce-only
  leg left behind would close a later position).
- **the position closed another way** (an exit order, a liquidation, an operator at the
  venue): at the symbol's next bar its legs are cancelled.
- **restart** (``reconcile``): every open position has exactly one stop and at most one
  target at the venue: missing legs placed, extra ones (another entry's, an older
  generation's, a leg for a position that is gone) cancelled, never two stops for one
  position. A stop that fired while the daemon was down is the broker's fill, journaled as
  the position's exit by start-up reconciliation and the next poll.

The legs of a position are its *current entry's*: the latest filled entry in the position's
direction that carries a stop or target (one-way netting, as MT5 netting keeps the latest
SL/TP on the position), sized to the whole position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeGuard

import structlog

from domain import Order, OrderIntent, OrderSide, OrderState, OrderType, client_order_id
from domain.orders import (
    ORDER_TRANSITIONS,
    PROTECTIVE_TYPE,
    UNRESOLVED_STATES,
    protected_entry,
    protective_intent,
)
from executor.brokers.base import BrokerFill, BrokerOrder, ProtectingBroker, VolumeRules
from executor.engine.router import OrderRouter
from executor.journal.store import Journal

log = structlog.get_logger("dta.protection")

KINDS = ("stop_loss", "take_profit")
MAX_GENERATIONS = 100  # placed again: a lost send, or legs resized after a reduction
_EPS = 1e-12
_OPEN = (OrderState.NEW, OrderState.SUBMITTING, OrderState.ACCEPTED,
         OrderState.PARTIALLY_FILLED, OrderState.UNKNOWN)


def separate_protection(broker: object) -> TypeGuard[ProtectingBroker]:
    """Does this account need its protective exits placed as orders by the daemon?"""
    return isinstance(broker, ProtectingBroker) and bool(broker.separate_protection)


def moved(before: Order, seen: Order) -> Order | None:
    """``before`` in the state the venue reports in ``seen``, by allowed steps (through
    ``unknown`` when no direct one exists); None when nothing moved or no path exists."""
    if seen.state is before.state and abs(seen.filled_volume - before.filled_volume) < _EPS:
        return None
    current = before
    if seen.state not in ORDER_TRANSITIONS[current.state]:
        if OrderState.UNKNOWN not in ORDER_TRANSITIONS[current.state] or \
                seen.state not in ORDER_TRANSITIONS[OrderState.UNKNOWN]:
            return None
        current = current.transition(OrderState.UNKNOWN)
    return current.transition(seen.state, filled_volume=seen.filled_volume,
                              avg_fill_price=seen.avg_fill_price or before.avg_fill_price,
                              broker_order_id=seen.broker_order_id or before.broker_order_id,
                              reason=seen.reason or before.reason)


class ProtectiveOrders:
    def __init__(self, journal: Journal, broker: ProtectingBroker, router: OrderRouter,
                 account: str) -> None:
        self.journal = journal
        self.broker = broker
        self.router = router
        self.account = account
        # The latest leg of each kind per entry, and those entries, in the order they
        # were sent (the last one in a position's direction is its current entry).
        self.legs: dict[str, dict[str, Order]] = {}
        self.entries: dict[str, Order] = {}
        self._sizes: dict[str, VolumeRules | None] = {}  # the venue's steps, asked once
        self._durable = not getattr(broker, "simulated", False)

    # ------------------------------------------------------------------ events

    def before_order(self, intent: OrderIntent) -> None:
        """An order against the position is about to go out: its legs are cancelled first
        (a spot OCO locks the coins it would sell: Binance refuses the sell with -2010;
        the legs of what remains are placed again, sized to it, by ``after_order``)."""
        if intent.order_type.protective:
            return
        held = self._position(intent.symbol)
        if held is None or abs(held) < _EPS or (held > 0) == (intent.side is OrderSide.BUY):
            return
        for entry_id in self._entries_on(intent.symbol):
            self._cancel([o for o in self.legs.get(entry_id, {}).values() if o.state in _OPEN])

    def after_order(self, order: Order) -> None:
        """An order's send answered (or its fills moved it): the position as it is now
        carries its current entry's legs, and no other entry's."""
        if order.protective_kind is not None or not (order.state.terminal or
                                                      order.filled_volume > _EPS):
            return
        if (_is_entry(order) and order.filled_volume > _EPS and order.state.terminal
                and (order.intent.stop_loss is not None or order.intent.take_profit is not None)):
            self.entries.setdefault(order.client_order_id, order)
        symbol = order.intent.symbol
        held = self._position(symbol)
        if held is None:
            return  # the next bar tries again
        self._drop_stale(symbol, held)
        current = self._current_entry(symbol, held)
        if current is not None:
            self.protect(current, held)

    def after_bar(self, symbol: str, fills: Sequence[BrokerFill]) -> None:
        """The bar's fills are booked: entries that filled get their legs, a fired leg
        cancels its sibling, and a position gone another way loses its legs."""
        for bf in fills:
            coid = bf.fill.client_order_id
            if bf.kind in KINDS:
                self._fired(coid, bf.kind)
            elif bf.kind == "entry":
                order = self.journal.orders.get_order(coid)
                if order is not None:
                    self.after_order(order)
        self._follow_up(symbol)
        if any(self._working(e) for e in self._entries_on(symbol)):
            self._drop_stale(symbol, self._position(symbol))

    def _follow_up(self, symbol: str) -> None:
        """Legs whose send's answer was lost: what the resolver journaled since (found, or
        declared lost: then placed again as the next generation)."""
        for entry_id in self._entries_on(symbol):
            legs = self.legs[entry_id]
            if not any(o.state in UNRESOLVED_STATES for o in legs.values()):
                continue
            for leg in list(legs.values()):
                now = self.journal.orders.get_order(leg.client_order_id)
                if now is not None and now.state is not leg.state:
                    self._store(now)
            entry = self.entries.get(entry_id)
            if entry is not None and any(_lost(o) for o in self.legs[entry_id].values()):
                self.protect(entry)

    # ------------------------------------------------------------------ placing

    def protect(self, entry: Order, position: float | None = None) -> None:
        """Make sure ``entry``'s legs are at the venue while its position is open."""
        if entry.intent.stop_loss is None and entry.intent.take_profit is None:
            return
        held = self._position(entry.intent.symbol) if position is None else position
        if held is None:
            return  # the position cannot be read now: the next bar tries again
        self.entries.setdefault(entry.client_order_id, entry)
        if not _same_way(entry, held):
            return  # closed (or reversed) already: nothing to protect
        current = self._current_entry(entry.intent.symbol, held)
        if current is not None and current.client_order_id != entry.client_order_id:
            return  # a later entry owns the position now: its legs protect it
        legs = self._latest(entry)
        missing: list[Order] = []
        for kind in KINDS:
            if _trigger(entry.intent, kind) is None:
                continue
            leg = legs.get(kind)
            if leg is None:
                missing.append(self._leg(entry, kind, abs(held), 0))
            elif leg.state in _OPEN or leg.state is OrderState.FILLED:
                continue
            elif leg.state is OrderState.REJECTED and not _lost(leg):
                self._fail(entry, leg, held)
                return
            else:  # lost, or cancelled while the position is still open: place again
                generation = (protected_entry(leg.client_order_id) or ("", "", 0))[2] + 1
                if generation >= MAX_GENERATIONS:
                    self._fail(entry, leg, held)
                    return
                missing.append(self._leg(entry, kind, abs(held), generation))
        if missing:
            self._place(entry, missing, held)

    def _leg(self, entry: Order, kind: str, volume: float, generation: int) -> Order:
        return Order(protective_intent(entry.intent, kind, volume, generation))

    def _place(self, entry: Order, legs: list[Order], held: float) -> None:
        """Journal each leg ``submitting`` (committed: durable before the venue hears of
        it), send them together, journal the answers."""
        sending = []
        for leg in legs:
            submitting = leg.transition(OrderState.SUBMITTING)
            self.journal.orders.insert_sending(leg, submitting, f"sending to {self.broker.name}",
                                               commit=self._durable)
            sending.append(submitting)
        try:
            answers = self.broker.place_protection(sending)
        except Exception as exc:  # an unexpected error is still an unknown outcome
            answers = [s.transition(OrderState.UNKNOWN, reason=f"{type(exc).__name__}: {exc}")
                       for s in sending]
        by_id = {a.client_order_id: a for a in answers}
        for submitting in sending:
            answer = by_id.get(submitting.client_order_id)
            after = moved(submitting, answer) if answer is not None else None
            if after is None and answer is None:
                after = submitting.transition(OrderState.UNKNOWN, reason="no answer")
            if after is not None:
                self.journal.orders.update_order(submitting, after,
                                                 detail=after.reason or "venue answered",
                                                 commit=False)
            self._store(after or submitting)
            log.info("protective_order", entry=entry.client_order_id,
                     client_order_id=submitting.client_order_id,
                     state=(after or submitting).state.value)
        for leg in self._latest(entry).values():
            if leg.state is OrderState.REJECTED and not _lost(leg):
                self._fail(entry, leg, held)
                return

    # ------------------------------------------------------------------ failing safe

    def _fail(self, entry: Order, leg: Order, held: float) -> None:
        """The position cannot be protected: cancel what stands, close it, and say so."""
        self._cancel([o for o in self._latest(entry).values() if o.state in _OPEN])
        intent = entry.intent
        close = OrderIntent(
            client_order_id(self.account, intent.symbol, intent.bar_time,
                            f"protect-close:{entry.client_order_id}"),
            self.account, intent.symbol,
            OrderSide.SELL if held > 0 else OrderSide.BUY, abs(held), OrderType.MARKET,
            intent.bar_time, reduce_only=True, params_hash=intent.params_hash,
            decision_id=intent.decision_id)
        known = self.journal.orders.order_state(close.client_order_id) is not None
        result = self.router.submit(close)
        if known:
            return  # closed (or closing) on an earlier pass: one incident, one close
        message = (f"{intent.symbol} position of {entry.client_order_id} could not be "
                   f"protected ({leg.protective_kind} {leg.client_order_id}: "
                   f"{leg.reason or leg.state.value}); closed at market "
                   f"({close.client_order_id}: {result.state.value})")
        log.error("protective_order_failed", entry=entry.client_order_id,
                  leg=leg.client_order_id, reason=leg.reason[:200], close=result.state.value)
        self.journal.incidents.open_incident("critical", "protective_order_failed", message, {
            "entry": entry.client_order_id, "leg": leg.client_order_id,
            "reason": leg.reason, "close": close.client_order_id,
            "close_state": result.state.value})

    # ------------------------------------------------------------------ fired, stale

    def _fired(self, entry_id: str, kind: str) -> None:
        """A leg fired: journal it filled, cancel the other one."""
        legs = self._latest_by_id(entry_id)
        fired = legs.get(kind)
        if fired is not None and fired.state in _OPEN:
            self._refresh(entry_id, fired)
        self._cancel([o for k, o in legs.items() if k != kind and o.state in _OPEN])
        self._forget_done(entry_id)

    def _drop_stale(self, symbol: str, held: float | None) -> None:
        """Cancel the legs of entries whose position is no longer theirs."""
        if held is None:
            return
        current = self._current_entry(symbol, held)
        for entry_id in self._entries_on(symbol):
            if current is not None and entry_id == current.client_order_id:
                continue
            self._cancel([o for o in self.legs.get(entry_id, {}).values() if o.state in _OPEN])
            self._forget_done(entry_id)

    def _forget_done(self, entry_id: str) -> None:
        """An entry whose legs are all finished leaves memory (it stays in the journal):
        what is kept grows with the open positions, not with the run."""
        legs = self.legs.get(entry_id, {})
        if all(o.state.terminal and not _lost(o) for o in legs.values()):
            self.legs.pop(entry_id, None)
            self.entries.pop(entry_id, None)

    def _cancel(self, legs: Iterable[Order]) -> None:
        legs = list(legs)
        if not legs:
            return
        try:
            answers = {a.client_order_id: a for a in self.broker.cancel_protection(legs)}
        except Exception as exc:
            log.warning("protective_cancel_failed", error=str(exc)[:200],
                        legs=[o.client_order_id for o in legs])
            return  # still working: tried again at the next bar
        for leg in legs:
            seen = answers.get(leg.client_order_id)
            after = moved(leg, seen) if seen is not None else None
            if after is not None:
                self.journal.orders.update_order(leg, after, detail=after.reason or "cancelled",
                                                 commit=False)
                self._store(after)

    def _refresh(self, entry_id: str, leg: Order) -> None:
        try:
            seen = self.broker.lookup(leg.client_order_id)
        except Exception as exc:
            log.warning("protective_lookup_failed", client_order_id=leg.client_order_id,
                        error=str(exc)[:200])
            return
        after = moved(leg, seen) if seen is not None else None
        if after is not None:
            self.journal.orders.update_order(leg, after, detail="looked up", commit=False)
            self._store(after)

    # ------------------------------------------------------------------ start-up

    def restore(self) -> None:
        """The legs journaled, by entry, and the entries that may need them (every start,
        before reconciliation): one read of the account's orders."""
        self.legs.clear()
        self.entries.clear()
        for order in self.journal.orders.all(self.account):
            if order.protective_kind is not None:
                self._store(order)
            elif (_is_entry(order) and order.filled_volume > _EPS
                  and (order.intent.stop_loss is not None
                       or order.intent.take_profit is not None)):
                self.entries[order.client_order_id] = order

    def reconcile(self) -> list[str]:
        """Start-up: exactly one stop and at most one target per open position at the
        venue. Returns what it did, one line each, for the log."""
        self.restore()
        done: list[str] = []
        currents: set[str] = set()
        for symbol in self._symbols():
            held = self._position(symbol)
            if held is None:
                continue
            for entry_id in self._entries_on(symbol):
                for leg in list(self.legs.get(entry_id, {}).values()):
                    if leg.state in _OPEN:
                        self._refresh(entry_id, leg)
            current = self._current_entry(symbol, held)
            self._drop_stale(symbol, held)
            done += self._cancel_extras(symbol, current)
            if current is not None:
                currents.add(current.client_order_id)
                self.protect(current, held)
                done.append(f"{symbol}: {held:+.8g} protected by "
                            f"{current.client_order_id}'s legs")
        # Entries of closed positions are history: only the current ones stay in memory.
        self.entries = {k: e for k, e in self.entries.items()
                        if k in currents or self._working(k)}
        self.journal.commit()
        if done:
            log.info("protection_reconciled", actions=done)
        return done

    def _cancel_extras(self, symbol: str, current: Order | None) -> list[str]:
        """Our protective orders at the venue that are not the current entry's latest
        legs: cancelled (a leg the journal lost track of would close a later position)."""
        keep = {o.client_order_id for o in self._latest(current).values()} if current else set()
        try:
            working = self.broker.protective_orders(symbol)
        except Exception as exc:
            log.warning("protective_orders_unreadable", symbol=symbol, error=str(exc)[:200])
            return []
        extras, unknown = [], []
        for bo in working:
            cid = bo.client_order_id or ""
            if not bo.ours or cid in keep or protected_entry(cid) is None:
                continue
            known = self.journal.orders.get_order(cid)
            if known is not None:
                extras.append(known)
            else:
                unknown.append(_foreign_leg(self.account, bo))
        self._cancel(extras)
        if unknown:  # no journal row to move, nothing to remember: only gone
            try:
                self.broker.cancel_protection(unknown)
            except Exception as exc:
                log.warning("protective_cancel_failed", error=str(exc)[:200],
                            legs=[o.client_order_id for o in unknown])
        extras += unknown
        return [f"{symbol}: cancelled extra {o.client_order_id}" for o in extras]

    # ------------------------------------------------------------------ what is known

    def _store(self, leg: Order) -> None:
        found = protected_entry(leg.client_order_id)
        if found is None:
            return
        entry_id, kind, generation = found
        known = self.legs.setdefault(entry_id, {}).get(kind)
        old = (protected_entry(known.client_order_id) or ("", "", -1))[2] if known else -1
        if generation >= old:
            self.legs[entry_id][kind] = leg

    def _latest(self, entry: Order | None) -> dict[str, Order]:
        return {} if entry is None else self._latest_by_id(entry.client_order_id)

    def _latest_by_id(self, entry_id: str) -> dict[str, Order]:
        return dict(self.legs.get(entry_id, {}))

    def _working(self, entry_id: str) -> bool:
        return any(o.state in _OPEN for o in self.legs.get(entry_id, {}).values())

    def _entries_on(self, symbol: str) -> list[str]:
        return [e for e, legs in self.legs.items()
                if any(o.intent.symbol == symbol for o in legs.values())]

    def _symbols(self) -> list[str]:
        return list(dict.fromkeys(
            [e.intent.symbol for e in self.entries.values()]
            + [o.intent.symbol for legs in self.legs.values() for o in legs.values()]))

    def _current_entry(self, symbol: str, held: float) -> Order | None:
        """The entry whose legs the open position should carry: the latest filled entry
        in its direction with a stop or target."""
        if abs(held) < _EPS:
            return None
        found = None
        for order in self.entries.values():
            if order.intent.symbol == symbol and _same_way(order, held):
                found = order
        return found

    def _position(self, symbol: str) -> float | None:
        """The position in what the venue can trade: rounded down to its volume step, and
        0 below its minimum. Dust (a spot close leaves the part of the buy's base-asset fee
        the step cannot sell) is no position: no leg can protect it, no order close it."""
        try:
            held = self.broker.position(symbol).volume
        except Exception as exc:
            log.warning("position_unreadable", symbol=symbol, error=str(exc)[:200])
            return None
        rules = self._rules(symbol)
        if rules is None:
            return held
        size = rules.round_down(abs(held))
        return 0.0 if size < rules.min - _EPS else (size if held > 0 else -size)

    def _rules(self, symbol: str) -> VolumeRules | None:
        if symbol not in self._sizes:
            ask = getattr(self.broker, "volume_rules", None)
            try:
                self._sizes[symbol] = ask(symbol) if callable(ask) else None
            except Exception as exc:  # asked again next time
                log.warning("volume_rules_unreadable", symbol=symbol, error=str(exc)[:200])
                return None
        return self._sizes[symbol]


def _is_entry(order: Order) -> bool:
    return order.protective_kind is None and not order.intent.reduce_only


def _same_way(entry: Order, held: float) -> bool:
    return abs(held) > _EPS and (held > 0) == (entry.intent.side is OrderSide.BUY)


def _trigger(intent: OrderIntent, kind: str) -> float | None:
    return intent.stop_loss if kind == "stop_loss" else intent.take_profit


def _lost(leg: Order) -> bool:
    """Declared lost by the resolver: provably never placed."""
    return leg.state is OrderState.REJECTED and leg.reason.startswith("lost:")


def _foreign_leg(account: str, bo: BrokerOrder) -> Order:
    """A protective order of ours the journal has no row for, as an order to cancel."""
    found = protected_entry(bo.client_order_id or "")
    kind = found[1] if found else "stop_loss"
    return Order(OrderIntent(
        bo.client_order_id or bo.broker_order_id, account, bo.symbol, bo.side, bo.volume,
        PROTECTIVE_TYPE[kind], bo.time or datetime.now(UTC), price=bo.price,
        reduce_only=True), OrderState.ACCEPTED, broker_order_id=bo.broker_order_id)
