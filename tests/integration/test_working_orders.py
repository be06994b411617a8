"""Working (sent, not yet filled) orders count toward the position limits.

Worst case per side: every working order on the new order's side fills in full, none on the
other side does (``guardrails.base.AccountState``). Covered here: the checks on their own,
a property test over interleavings of proposals, broker outcomes (accept, fill, partial
fill, reject, timeout), fill reports, cancels, lookups and restarts, the router's working
set, and the paper daemon with a broker that accepts but does not fill.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from support.builders import (
    a_broker_fill,
    a_decision,
    a_fill,
    a_position,
    a_proposal,
    a_signal,
    an_intent,
)
from support.daemon_helpers import AlwaysBuy, registered_always_buy, settings_for
from support.samples import write_sample_head

from domain import (
    Bar,
    Decision,
    Direction,
    Fill,
    MarketSnapshot,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    Position,
    Proposal,
)
from domain.errors import TemporaryVenueError
from executor.brokers.base import BrokerFill
from executor.brokers.config import ResolverSettings
from executor.brokers.paper import PaperBroker
from executor.daemon import RealtimeExecutor
from executor.engine.clock import SimulatedClock
from executor.engine.resolver import OrderResolver
from executor.engine.router import OrderRouter
from executor.journal.models import VerdictRow
from executor.journal.store import Journal
from executor.wiring import build_daemon
from guardrails.base import AccountState, WorkingExposure
from guardrails.limits import DailyLossCheck, MaxGrossExposureCheck, MaxPositionCheck
from guardrails.state import TradingState, TradingStateCheck, set_state

T0 = datetime(2023, 3, 1, 10, 0, tzinfo=UTC)
EPS = 1e-9


def decision(direction: Direction = Direction.LONG, symbol: str = "EURUSD") -> Decision:
    entry, stop = 1.1, 1.1 - 0.002 * direction.sign
    p = a_proposal(strategy="s", symbol=symbol, timeframe="M15", bar_time=T0, direction=direction,
                   entry=entry, stop=stop, target=entry + 2 * (entry - stop), reason="test")
    signals = (a_signal(provider="a", direction=direction, confidence=0.8),)
    return a_decision(proposal=p, direction=direction, confidence=0.8, agreement=1, voters=1,
                      signals=signals, contributions=(("a", 0.8 * direction.sign),),
                      params_hash="h")


def account(position: float = 0.0, buy: float = 0.0, sell: float = 0.0, *,
            volume: float = 0.1, symbol: str = "EURUSD",
            others: dict[str, tuple[float, float, float]] | None = None,
            **kw: Any) -> AccountState:
    """``others``: symbol -> (position, working buy, working sell)."""
    positions = ({symbol: a_position(symbol=symbol, volume=position, avg_price=1.1)}
                 if position else {})
    working = {symbol: WorkingExposure(buy, sell)} if buy or sell else {}
    for s, (p, b, v) in (others or {}).items():
        if p:
            positions[s] = a_position(symbol=s, volume=p, avg_price=1.2)
        if b or v:
            working[s] = WorkingExposure(b, v)
    return AccountState(positions=positions, working=working, order_volume=volume, now=T0,
                        **kw)


# ---------------------------------------------------------------- the checks


def test_a_working_buy_and_a_new_buy_add_up() -> None:
    check = MaxPositionCheck(0.15)
    assert check.check(decision(), account()).passed  # alone: +0.1
    vetoed = check.check(decision(), account(buy=0.1))
    assert not vetoed.passed
    assert vetoed.reason == "position would be +0.2 lots incl. 0.1 working, limit 0.15"
    # the journaled reason of the brief's example
    r = MaxPositionCheck(0.2).check(decision(), account(0.1, buy=0.1))
    assert r.reason == "position would be +0.3 lots incl. 0.1 working, limit 0.2"


def test_a_working_order_on_the_other_side_does_not_make_a_new_one_look_smaller() -> None:
    check = MaxPositionCheck(0.15)
    # Long 0.1 with a working sell of 0.1: netting would call a new buy "+0.1 after", but
    # the sell may be cancelled while the buy fills: +0.2.
    r = check.check(decision(), account(0.1, sell=0.1))
    assert not r.passed and "+0.2 lots" in r.reason
    r = check.check(decision(Direction.SHORT), account(-0.1, buy=0.1))
    assert not r.passed and "-0.2 lots" in r.reason


def test_reducing_is_never_blocked() -> None:
    check = MaxPositionCheck(0.2)
    # a working reducing order does not block closing the rest
    assert check.check(decision(Direction.SHORT), account(0.3, sell=0.1)).passed
    # still above a limit lowered since: shrinking it must pass
    assert check.check(decision(Direction.SHORT), account(0.5)).passed
    assert check.check(decision(Direction.LONG), account(-0.5, buy=0.2)).passed
    # working buys on the far side do not block a sell that reduces a long
    assert check.check(decision(Direction.SHORT), account(0.3, buy=0.4)).passed
    # ... but closing with working closes already on the way flips past the limit
    r = check.check(decision(Direction.SHORT), account(0.1, sell=0.3, volume=0.1))
    assert not r.passed and r.reason == ("position would be -0.3 lots incl. 0.3 working, "
                                         "limit 0.2")


def test_gross_exposure_counts_working_orders_per_symbol_worst_end() -> None:
    check = MaxGrossExposureCheck(0.45)
    # GBPUSD short 0.1 with a working sell 0.2: -0.3 in the worst case.
    others = {"GBPUSD": (-0.1, 0.0, 0.2)}
    r = check.check(decision(), account(0.1, others=others))
    assert not r.passed
    assert r.reason == "gross exposure would be 0.5 lots incl. 0.2 working, limit 0.45"
    # without the working order it fits
    assert check.check(decision(), account(0.1, others={"GBPUSD": (-0.1, 0.0, 0.0)})).passed
    # a working order in a symbol with no position counts too
    assert not check.check(decision(), account(0.1, others={"USDJPY": (0.0, 0.3, 0.0)})).passed
    # the two ends of one symbol never happen together: only the larger counts
    r = MaxGrossExposureCheck(0.3).check(decision(), account(0.0, sell=0.3))
    assert r.passed and r.reason == "gross exposure 0.3 lots incl. 0.3 working"


def test_gross_over_the_limit_lets_only_reducing_orders_through() -> None:
    check = MaxGrossExposureCheck(0.3)
    over = {"GBPUSD": (0.5, 0.0, 0.0)}
    assert check.check(decision(Direction.SHORT), account(0.2, others=over)).passed
    assert not check.check(decision(Direction.LONG), account(-0.2, buy=0.2,
                                                             others=over)).passed
    # A fill the router has not seen yet counts twice (position and working): an order
    # must not pass by "not raising" that inflated sum. Short 0.3 filled, and its working
    # sell 0.3 still counted: a buy of 0.9 stays inside [-0.6, +0.6] but really goes +0.6.
    r = check.check(decision(), account(-0.3, sell=0.3, volume=0.9))
    assert not r.passed


def test_increases_exposure_counts_working_orders_on_its_side() -> None:
    short = account(-0.5, buy=0.5)  # a close already on the way
    assert short.increases_exposure(decision(Direction.LONG))  # both fill: long 0.1
    assert not account(-0.5, buy=0.2).increases_exposure(decision(Direction.LONG))
    assert not account(-0.5, sell=0.4).increases_exposure(decision(Direction.LONG))
    assert account(0.0, sell=0.4).increases_exposure(decision(Direction.LONG))
    # the checks built on it follow
    loss = DailyLossCheck(100)
    assert not loss.check(decision(), account(-0.5, buy=0.5, equity=9_800.0,
                                              day_start_equity=10_000.0)).passed
    assert loss.check(decision(), account(-0.5, buy=0.2, equity=9_800.0,
                                          day_start_equity=10_000.0)).passed


def test_reducing_state_counts_working_orders(tmp_path: Path) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.sqlite'}")
    set_state(journal.trading_state, TradingState.REDUCING, operator="test", reason="wind down")
    check = TradingStateCheck(journal.trading_state)
    assert check.check(decision(), account(-0.3, buy=0.1)).passed
    r = check.check(decision(), account(-0.3, buy=0.3))
    assert not r.passed and "add exposure" in r.reason
    journal.close()


lots = st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
signed = st.sampled_from([-0.5, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5])


@given(position=signed, buy=lots, sell=lots, volume=lots.filter(bool),
       direction=st.sampled_from([Direction.LONG, Direction.SHORT]),
       limit=st.sampled_from([0.1, 0.2, 0.35, 0.6]))
def test_max_position_property(position: float, buy: float, sell: float, volume: float,
                               direction: Direction, limit: float) -> None:
    """Passing means: whichever working orders fill, the order cannot take the position past
    the limit on its side; and an order that shrinks the position on its side (working
    orders on its side included) always passes."""
    acct = account(position, buy, sell, volume=volume)
    passed = MaxPositionCheck(limit).check(decision(direction), acct).passed
    s = direction.sign
    own_end = position + s * ((buy if s > 0 else sell) + volume)
    if passed:
        assert s * own_end <= limit + EPS
        # no subset of fills can take the position past the limit in the order's direction
        for b in (0.0, buy):
            for v in (0.0, sell):
                assert s * (position + b - v + s * volume) <= max(limit, s * position) + EPS
    if not acct.increases_exposure(decision(direction)):
        assert passed


# ---------------------------------------------------------------- the router's working set


def intent(coid: str, *, side: OrderSide = OrderSide.BUY, volume: float = 0.1,
           symbol: str = "EURUSD", acct: str = "acct") -> OrderIntent:
    return an_intent(client_order_id=coid, account=acct, symbol=symbol, side=side,
                     volume=volume, order_type=OrderType.MARKET, bar_time=T0, stop_loss=None,
                     take_profit=None)


def fill_of(order: Order, lots: float, fill_id: str, kind: str = "entry",
            attach: Order | None = None) -> BrokerFill:
    i = order.intent
    return a_broker_fill(fill=a_fill(client_order_id=order.client_order_id, fill_id=fill_id,
                                     symbol=i.symbol, side=i.side, time=T0, price=1.1,
                                     volume=lots),
                         kind=kind, realized_pnl=0.0, order=attach)


class LiveLike(PaperBroker):
    """Not simulated (the router commits before the call); ``fail`` makes submit time out
    after the broker took the order (``keep``) or before it did."""

    simulated = False

    def __init__(self, fail: bool = False, keep: bool = True) -> None:
        super().__init__()
        self.fail, self.keep, self.calls = fail, keep, 0

    def submit(self, order: Order) -> Order:
        self.calls += 1
        if self.fail and not self.keep:
            raise TemporaryVenueError("connect timeout")
        result = super().submit(order)
        if self.fail:
            raise TemporaryVenueError("read timeout after send")
        return result


def exposure(router: OrderRouter) -> dict[str, tuple[float, float]]:
    return {s: (round(w.buy, 9), round(w.sell, 9))
            for s, w in router.tracker.working_exposure().items()}


def test_accepted_stays_working_until_its_fill(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    router = OrderRouter(journal, PaperBroker())
    a = router.submit(intent("dta-a"))
    b = router.submit(intent("dta-b", side=OrderSide.SELL, volume=0.3, symbol="GBPUSD"))
    assert a.state is b.state is OrderState.ACCEPTED
    assert exposure(router) == {"EURUSD": (0.1, 0.0), "GBPUSD": (0.0, 0.3)}
    # a protective exit attributed to the order does not fill it
    router.tracker.observe_fill(fill_of(a, 0.1, "x:sl", kind="stop_loss"))
    assert exposure(router)["EURUSD"] == (0.1, 0.0)
    # the paper broker's fill carries the filled order: it leaves the set
    router.tracker.observe_fill(fill_of(a, 0.1, "a:entry", attach=a.transition(
        OrderState.FILLED, filled_volume=0.1, avg_fill_price=1.1)))
    assert exposure(router) == {"GBPUSD": (0.0, 0.3)}
    # a live broker reports fills without the order: counted by volume, once per fill id
    router.tracker.observe_fill(fill_of(b, 0.1, "b:1"))
    router.tracker.observe_fill(fill_of(b, 0.1, "b:1"))
    assert exposure(router) == {"GBPUSD": (0.0, 0.2)}
    router.tracker.observe(b.transition(OrderState.PARTIALLY_FILLED, filled_volume=0.1))
    assert exposure(router) == {"GBPUSD": (0.0, 0.2)}  # the same 0.1, not twice
    router.tracker.observe_fill(fill_of(b, 0.2, "b:2"))
    assert router.tracker.working == {} and router.tracker.working_exposure() == {}
    # a late report of a finished order does not bring it back
    router.tracker.observe(b.transition(OrderState.PARTIALLY_FILLED, filled_volume=0.1))
    assert router.tracker.working == {}
    journal.close()


def test_cancelled_and_rejected_leave(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    router = OrderRouter(journal, PaperBroker())
    a = router.submit(intent("dta-a"))
    router.tracker.observe(a.transition(OrderState.PARTIALLY_FILLED, filled_volume=0.04))
    assert exposure(router) == {"EURUSD": (0.06, 0.0)}
    router.tracker.observe(a.transition(OrderState.CANCELLED, filled_volume=0.04))
    assert router.tracker.working == {}
    bad = router.submit(replace(intent("dta-b"), order_type=OrderType.LIMIT))
    assert bad.state is OrderState.REJECTED and router.tracker.working == {}
    journal.close()


def test_unknown_stays_working_until_resolved(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    broker = LiveLike(fail=True)
    router = OrderRouter(journal, broker)
    order = router.submit(intent("dta-u"))
    assert order.state is OrderState.UNKNOWN
    assert exposure(router) == {"EURUSD": (0.1, 0.0)}
    assert router.tracker.resolve(order).state is OrderState.ACCEPTED  # the broker has it
    assert exposure(router) == {"EURUSD": (0.1, 0.0)}
    journal.commit()

    lost_broker = LiveLike(fail=True, keep=False)
    router = OrderRouter(journal, lost_broker)
    lost = router.submit(intent("dta-lost"))
    assert lost.state is OrderState.UNKNOWN
    assert router.tracker.resolve(lost).state is OrderState.UNKNOWN  # not found: still in doubt
    assert "dta-lost" in router.tracker.working
    # The live resolver (executor/reconcile.py) declares it lost in the journal; the
    # router picks that up at the next bar's refresh.
    resolver = OrderResolver(journal, lost_broker, ResolverSettings(grace_lookups=1,
                                                                    grace_seconds=0.0))
    resolver.resolve_pending("acct")
    assert journal.orders.order_state("dta-lost") is OrderState.REJECTED
    assert "dta-lost" in router.tracker.working
    router.tracker.refresh()
    assert "dta-lost" not in router.tracker.working
    assert lost_broker.calls == 1  # never sent again
    journal.close()


def test_working_set_is_rebuilt_from_the_journal_after_restart(journal_url: str) -> None:
    journal = Journal.open(journal_url)
    router = OrderRouter(journal, LiveLike())
    done = router.submit(intent("dta-done"))
    part = router.submit(intent("dta-part", side=OrderSide.SELL, volume=0.5))
    router.submit(intent("dta-other", acct="someone-else"))
    OrderRouter(journal, LiveLike(fail=True)).submit(intent("dta-unk", volume=0.2))
    # as the daemon's fill loop does: fills journaled, the paper-style one moves the row
    filled = done.transition(OrderState.FILLED, filled_volume=0.1, avg_fill_price=1.1)
    journal.orders.record_fill(fill_of(done, 0.1, "done:1").fill, "entry", 0.0)
    journal.orders.update_order(done, filled, detail="entry fill")
    journal.orders.record_fill(fill_of(part, 0.2, "part:1").fill, "entry", 0.0)  # live: row stays
    journal.orders.record_fill(fill_of(part, 0.5, "part:sl").fill, "stop_loss", 0.0)  # not a fill
    journal.commit()
    journal.close()

    journal = Journal.open(journal_url)  # the restart
    router = OrderRouter(journal, LiveLike())
    router.tracker.rebuild("acct")
    assert sorted(router.tracker.working) == ["dta-part", "dta-unk"]
    assert exposure(router) == {"EURUSD": (0.2, 0.3)}
    # the start-up lookup settles the unknown one: the broker never got it, so it stays
    assert [o.state for o in router.tracker.resolve_open("acct")] == [OrderState.UNKNOWN]
    assert exposure(router) == {"EURUSD": (0.2, 0.3)}
    journal.close()


# ---------------------------------------------------------------- any interleaving

LIMIT, GROSS = 0.3, 0.5
SYMBOLS = ("EURUSD", "GBPUSD")
_ids = itertools.count()


class ScriptedBroker:
    """A live-like broker whose outcomes the test picks. ``book`` holds what the broker
    really has working (a timed-out order included); fills update ``pos`` at once but reach
    the daemon only when polled (``reports``), as with MT5 and ccxt."""

    name = "scripted"
    simulated = False

    def __init__(self) -> None:
        self.outcome = "accept"
        self.book: dict[str, Order] = {}
        self.done: dict[str, Order] = {}
        self.pos: dict[str, float] = {}
        self.reports: list[BrokerFill] = []
        self.sent: list[str] = []

    def submit(self, order: Order) -> Order:
        self.sent.append(order.client_order_id)
        if self.outcome == "lost":
            raise TemporaryVenueError("connect timeout")
        if self.outcome == "reject":
            return order.transition(OrderState.REJECTED, reason="not enough money")
        self.book[order.client_order_id] = order.transition(OrderState.ACCEPTED)
        if self.outcome == "fill":
            self.fill(order.client_order_id, order.intent.volume, attach=False)
        elif self.outcome == "partial":
            self.fill(order.client_order_id, order.intent.volume / 2, attach=False)
        if self.outcome == "timeout":
            raise TemporaryVenueError("read timeout after send")
        return self.lookup(order.client_order_id) or order

    def fill(self, coid: str, lots: float, attach: bool) -> None:
        o = self.book[coid]
        lots = min(lots, o.intent.volume - o.filled_volume)
        filled = o.filled_volume + lots
        full = filled >= o.intent.volume - EPS
        o = o.transition(OrderState.FILLED if full else OrderState.PARTIALLY_FILLED,
                         filled_volume=filled, avg_fill_price=1.1)
        self.pos[o.intent.symbol] = self.pos.get(o.intent.symbol, 0.0) + \
            o.intent.side.sign * lots
        if full:
            self.done[coid] = self.book.pop(coid)
            self.done[coid] = o
        else:
            self.book[coid] = o
        self.reports.append(fill_of(o, lots, f"{coid}:{next(_ids)}",
                                    attach=o if attach else None))

    def cancel(self, coid: str) -> Order:
        o = self.book.pop(coid).transition(OrderState.CANCELLED)
        self.done[coid] = o
        return o

    def lookup(self, client_order_id: str) -> Order | None:
        return self.book.get(client_order_id) or self.done.get(client_order_id)

    def on_bar(self, bar: Bar) -> Sequence[BrokerFill]:
        out, self.reports = self.reports, []
        return out

    def position(self, symbol: str) -> Position:
        return a_position(symbol=symbol, volume=self.pos.get(symbol, 0.0))

    def positions(self) -> dict[str, Position]:
        return {s: a_position(symbol=s, volume=v) for s, v in self.pos.items() if abs(v) > EPS}

    def restore(self, orders: Sequence[Order], fills: Sequence[Fill],
                fill_kinds: Sequence[str]) -> None:
        return None


class Interleavings(RuleBasedStateMachine):
    """The daemon's side of the seam, step by step: decisions checked against the broker's
    positions and the router's working set, then sent; fills polled and handed to the
    router (``_process_bar``'s fill loop); the resolver writing the journal; restarts.
    The invariant: whatever the broker really has working could all fill (or any part of
    it) without any position or the gross exposure going past its limit."""

    journal: Journal

    @initialize()
    def setup(self) -> None:
        self.account = f"acct{next(_ids)}"
        self.broker = ScriptedBroker()
        self.router = OrderRouter(self.journal, self.broker)
        self.checks = (MaxPositionCheck(LIMIT), MaxGrossExposureCheck(GROSS))

    def _state(self, volume: float) -> AccountState:
        return AccountState(positions=self.broker.positions(), order_volume=volume,
                            working=self.router.tracker.working_exposure())

    @rule(symbol=st.sampled_from(SYMBOLS), direction=st.sampled_from([Direction.LONG,
                                                                      Direction.SHORT]),
          volume=st.sampled_from([0.05, 0.1, 0.2, 0.3]),
          outcome=st.sampled_from(["accept", "accept", "fill", "partial", "reject",
                                   "timeout", "lost"]))
    def propose(self, symbol: str, direction: Direction, volume: float, outcome: str) -> None:
        d = decision(direction, symbol)
        state = self._state(volume)
        if all(c.check(d, state).passed for c in self.checks):
            side = OrderSide.BUY if direction is Direction.LONG else OrderSide.SELL
            self.broker.outcome = outcome
            self.router.submit(intent(f"dta{next(_ids)}", side=side, volume=volume, symbol=symbol,
                                      acct=self.account))

    @precondition(lambda self: bool(self.broker.book))
    @rule(data=st.data(), part=st.sampled_from([0.25, 0.5, 1.0]), attach=st.booleans())
    def broker_fills(self, data: st.DataObject, part: float, attach: bool) -> None:
        coid = data.draw(st.sampled_from(sorted(self.broker.book)))
        self.broker.fill(coid, self.broker.book[coid].intent.volume * part, attach)

    @rule()
    def bar(self) -> None:
        """``RealtimeExecutor._process_bar``'s fill loop."""
        for bf in self.broker.on_bar(None):  # type: ignore[arg-type]
            self.journal.orders.record_fill(bf.fill, bf.kind, bf.realized_pnl)
            if bf.order is not None:
                before = self.journal.orders.order_state(bf.fill.client_order_id)
                if before is not None and before is not bf.order.state:
                    self.journal.orders.set_order_state(before, bf.order, commit=False)
            self.router.tracker.observe_fill(bf)
        self.router.tracker.refresh()

    @precondition(lambda self: bool(self.broker.book))
    @rule(data=st.data(), via_journal=st.booleans())
    def broker_cancels(self, data: st.DataObject, via_journal: bool) -> None:
        coid = data.draw(st.sampled_from(sorted(self.broker.book)))
        before = self.journal.orders.get_order(coid)
        cancelled = self.broker.cancel(coid)
        if via_journal and before is not None:  # e.g. start-up reconciliation adopted it
            self.journal.orders.set_order_state(before.state,
                                                replace(before, state=cancelled.state))
        else:
            self.router.tracker.observe(cancelled)

    @rule()
    def lookups(self) -> None:
        """The start-up pass and the live resolver (which declares an order lost once the
        broker does not know it)."""
        self.router.tracker.resolve_open(self.account)
        OrderResolver(self.journal, self.broker, ResolverSettings(
            grace_lookups=2, grace_seconds=0.0)).resolve_pending(self.account)

    @rule()
    def restart(self) -> None:
        self.journal.commit()
        self.router = OrderRouter(self.journal, self.broker)
        self.router.tracker.rebuild(self.account)
        self.router.tracker.resolve_open(self.account)

    @invariant()
    def never_past_a_limit(self) -> None:
        gross = 0.0
        for s in SYMBOLS:
            pos = self.broker.pos.get(s, 0.0)
            book = [o for o in self.broker.book.values() if o.intent.symbol == s]
            rest = [(o.intent.side.sign, o.intent.volume - o.filled_volume) for o in book]
            high = pos + sum(v for sign, v in rest if sign > 0)
            low = pos - sum(v for sign, v in rest if sign < 0)
            assert low >= -LIMIT - EPS and high <= LIMIT + EPS, (s, low, high)
            gross += max(abs(low), abs(high))
            # the router never counts less than the broker really has working
            w = self.router.tracker.working_exposure().get(s, WorkingExposure())
            assert w.buy >= high - pos - EPS and w.sell >= pos - low - EPS
        assert gross <= GROSS + EPS
        assert len(self.broker.sent) == len(set(self.broker.sent))  # never sent twice


def test_no_interleaving_takes_the_account_past_a_limit(tmp_path: Path) -> None:
    Interleavings.journal = Journal.open("sqlite://")  # in memory: no fsync per order
    try:
        run_state_machine_as_test(Interleavings, settings=settings(
            max_examples=60, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))
    finally:
        Interleavings.journal.close()


# ---------------------------------------------------------------- the daemon


class Agree:
    """Ensemble stand-in: agrees with every proposal (consensus is not under test)."""

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Decision:
        d = proposal.direction
        return a_decision(proposal=proposal, direction=d, confidence=0.9, agreement=1, voters=1,
                          signals=(a_signal(provider="agree", direction=d, confidence=0.9),),
                          contributions=(("agree", 0.9 * d.sign),), params_hash="agree")


class HoldingBroker(PaperBroker):
    """The paper broker, but it accepts without filling while ``hold`` is set; with
    ``timeout`` the submit answers with a timeout although the order was taken."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.hold, self.timeout = True, False
        self.bare_fills = False  # report fills without the order, as MT5 and ccxt do

    def submit(self, order: Order) -> Order:
        result = super().submit(order)
        if self.timeout:
            raise TemporaryVenueError("read timeout after send")
        return result

    def on_bar(self, bar: Bar) -> list[BrokerFill]:
        if not self.hold:
            fills = super().on_bar(bar)
            return [replace(f, order=None) for f in fills] if self.bare_fills else fills
        held, self._pending = self._pending, {}
        try:
            return super().on_bar(bar)
        finally:
            self._pending = {**held, **self._pending}


@pytest.fixture
def always_long() -> Iterator[object]:
    yield from registered_always_buy()


class Run:
    def __init__(self, url: str, data: Path, *, timeout: bool = False) -> None:
        s = settings_for(url, strategy={"name": AlwaysBuy.name, "params": {}},
                         paper={"order_volume_lots": 0.1},
                         guardrails={"max_position_lots": 0.1, "min_stop_atr": None,
                                     "max_spread": None, "max_daily_loss": None,
                                     "max_orders_per_minute": None})
        self.journal = Journal.open(s.journal.url)
        self.daemon = build_daemon(s, self.journal, data=data)
        ex: RealtimeExecutor = self.daemon.executor
        real = ex.component_factory

        def factory(version: int, content: dict[str, Any]) -> Any:
            c = real(version, content)
            close = getattr(c.ensemble, "close", None)
            if callable(close):
                close()
            c.ensemble = Agree()  # type: ignore[assignment]
            return c

        ex.component_factory = factory
        self.broker = HoldingBroker(contract_size=s.paper.contract_size)
        self.broker.timeout = timeout
        ex.broker, ex.router = self.broker, OrderRouter(self.journal, self.broker)
        self.ex = ex
        self.clock = SimulatedClock()
        ex.start()

    def cycles(self, n: int) -> None:
        assert self.daemon.feed is not None
        self.ex.clock = self.clock
        for _ in range(n):
            t = self.daemon.feed.next_close_time()
            assert t is not None
            self.clock.advance_to(t)
            self.ex.run_cycle(self.clock.now())

    def verdicts(self) -> list[str]:
        rows = self.journal.uow.session.scalars(select(VerdictRow).order_by(VerdictRow.id))  # type: ignore[arg-type]
        return [("approved" if v.approved else v.reasons) for v in rows]

    def close(self) -> dict[str, Any]:
        summary = self.ex.stop()
        self.journal.close()
        return summary


def test_daemon_vetoes_a_second_entry_while_the_first_is_working(
        tmp_path: Path, always_long: object) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    run = Run(url, data)
    run.cycles(6)
    verdicts = run.verdicts()
    assert verdicts[0] == "approved"
    held = "max_position: position would be +0.2 lots incl. 0.1 working, limit 0.1"
    assert verdicts[1:] == [held] * (len(verdicts) - 1) and len(verdicts) >= 4
    assert [o.state for o in run.journal.orders.all("paper-1")] == [OrderState.ACCEPTED]
    assert run.broker.positions() == {}
    run.close()

    # A restart rebuilds the working set from the journal: still vetoed.
    run = Run(url, data)
    assert list(run.ex.router.tracker.working_exposure()) == ["EURUSD"]
    run.cycles(2)
    assert run.verdicts()[-2:] == [held] * 2
    # Once it fills it is the position that counts, no longer the working order.
    run.broker.hold = False
    run.cycles(2)
    assert run.broker.positions()["EURUSD"].volume == pytest.approx(0.1)
    assert run.ex.router.tracker.working == {}
    assert run.verdicts()[-1] == "max_position: position would be +0.2 lots, limit 0.1"
    assert [o.state for o in run.journal.orders.all("paper-1")] == [OrderState.FILLED]
    run.close()


def test_daemon_counts_an_order_left_unknown_by_a_timeout(
        tmp_path: Path, always_long: object) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    run = Run(f"sqlite:///{tmp_path / 'journal.sqlite'}", data, timeout=True)
    run.cycles(5)
    verdicts = run.verdicts()
    assert verdicts[0] == "approved" and len(verdicts) >= 3
    assert set(verdicts[1:]) == {
        "max_position: position would be +0.2 lots incl. 0.1 working, limit 0.1"}
    assert [o.state for o in run.journal.orders.all("paper-1")] == [OrderState.UNKNOWN]
    # The broker had it after all: its fill settles it.
    run.broker.hold = False
    run.cycles(1)
    assert [o.state for o in run.journal.orders.all("paper-1")] == [OrderState.FILLED]
    assert run.ex.router.tracker.working == {}
    run.close()


def test_a_live_brokers_fill_without_the_order_moves_the_orders_row(
        tmp_path: Path, always_long: object) -> None:
    """MT5 and ccxt report fills with ``order=None``: the order's journal row must still
    move to ``filled`` (with the fill's price), not stay ``accepted`` until a reconcile."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    run = Run(f"sqlite:///{tmp_path / 'journal.sqlite'}", data)
    run.broker.bare_fills = True
    run.cycles(3)
    [accepted] = run.journal.orders.all("paper-1")
    assert accepted.state is OrderState.ACCEPTED
    run.broker.hold = False
    run.cycles(1)
    [filled] = run.journal.orders.all("paper-1")
    [fill] = run.journal.orders.fills(filled.client_order_id)
    assert filled.state is OrderState.FILLED and run.ex.router.tracker.working == {}
    assert filled.filled_volume == pytest.approx(0.1)
    assert filled.avg_fill_price == pytest.approx(fill.price)
    history = run.journal.queries.trace(filled.client_order_id)
    assert history is not None
    assert [e["to_state"] for e in history["order_events"]][-1] == "filled"
    run.close()


def test_replay_timing_unchanged_fills_come_before_the_next_decision(
        tmp_path: Path, always_long: object) -> None:
    """In paper mode a market order fills at the next bar's open, before the strategy runs
    on that bar: by the next decision nothing is working any more."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 40)
    run = Run(f"sqlite:///{tmp_path / 'journal.sqlite'}", data)
    run.broker.hold = False
    run.cycles(4)
    assert run.verdicts()[:2] == ["approved",
                                  "max_position: position would be +0.2 lots, limit 0.1"]
    assert run.ex.router.tracker.working == {}
    run.close()
