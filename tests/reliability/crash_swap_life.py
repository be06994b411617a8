"""A crash-safety life on a venue that holds the exits as orders of their own (Binance
USD-M through ``CcxtSwapBroker``): every entry carries a stop and a target that the engine
(``ProtectiveOrders``) places at the exchange once the entry filled, so the kills land
between an entry and its exits, between a leg's journal commit and its request, and while
a leg's request is in flight.

A life starts as ``dta run`` does (``Daemon.start`` + ``startup.start_live``): the account
set up (one-way, cross margin, leverage 5), the broker told the journal's orders, the
orders in doubt looked up, start-up reconciliation (fills made while nobody watched are
journaled: a stop that fired while the daemon was down becomes its entry's exit), then the
protective orders reconciled (one stop, at most one target per position). A position
mismatch after that is what makes the daemon halt: the life says ``error`` and stops.

Then, after the test's go (``--handshake``: it checks the exchange holds the position's
stop while the life waits after ``ready``), cycle k is, with the deterministic id
``crash:k``:
- an entry (longs and shorts) with a stop and a target 1 % away from the last price; the
  send's answer goes to ``ProtectiveOrders.after_order``, which places the legs;
- every fourth cycle, a reduce-only close of the whole position, when there is one.
Before each, what the daemon's cycle does without a strategy: orders in doubt looked up
(an entry found filled is protected, as the daemon does when the bar's fills show it), and
``after_bar`` (legs whose position is gone cancelled, lost legs placed again). Fills are
not polled during a life; the next start journals them, as after any crash. The final
life (``--settle``) waits out the resolver's grace, runs one more bar and waits again
(``settled``: the test checks the exchange with nothing in doubt), then starts up once
more as a restart would.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain import Fill, OrderIntent, OrderSide, OrderType, client_order_id
from executor.brokers.ccxt_broker import CcxtBroker
from executor.brokers.ccxt_swap import CcxtSwapBroker
from executor.brokers.config import ResolverSettings
from executor.engine.protection import ProtectiveOrders
from executor.engine.resolver import UNRESOLVED, OrderResolver
from executor.engine.router import OrderRouter
from executor.engine.startup import reconcile
from executor.journal.store import Journal

BAR0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOL = "BTC/USDT:USDT"
VOLUME, STEP = 0.004, 0.001  # 0.004 BTC: above BTCUSDT's 100 USDT minimum notional
DISTANCE = 0.01  # stop and target 1 % from the price
GO_TIMEOUT_S = 30.0


def cycle_id(account: str, k: int) -> str:
    return client_order_id(account, SYMBOL, BAR0 + timedelta(minutes=15 * k), f"crash:{k}")


def cycle_intent(broker: CcxtSwapBroker, account: str, k: int) -> OrderIntent:
    """Cycle k's order, decided from the exchange's price and position now (a re-run of a
    journaled cycle reuses the journaled intent instead)."""
    bar = BAR0 + timedelta(minutes=15 * k)
    coid = cycle_id(account, k)
    if k % 4 == 3:
        held = broker.position(SYMBOL).volume
        if held:
            return OrderIntent(coid, account, SYMBOL,
                               OrderSide.SELL if held > 0 else OrderSide.BUY, abs(held),
                               OrderType.MARKET, bar, reduce_only=True)
    side = OrderSide.BUY if k % 3 else OrderSide.SELL
    price = float(broker.exchange.fetch_ticker(SYMBOL)["last"])
    sign = 1 if side is OrderSide.BUY else -1
    return OrderIntent(coid, account, SYMBOL, side, round(VOLUME + STEP * (k % 7), 8),
                       OrderType.MARKET, bar,
                       stop_loss=round(price * (1 - sign * DISTANCE), 1),
                       take_profit=round(price * (1 + sign * DISTANCE), 1))


class SwapLife:
    """One life: the daemon's start, the cycles, and (the final life) the settling."""

    symbol = SYMBOL

    def __init__(self, broker: CcxtSwapBroker | CcxtBroker, journal: Journal, account: str,
                 grace: ResolverSettings, handshake: bool, say: Callable[[str], None]
                 ) -> None:
        self.broker, self.journal, self.account = broker, journal, account
        self.grace, self.handshake, self.say = grace, handshake, say
        self.pid = os.getpid()
        if handshake:  # blocked before "ready": the go may come at once
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        self.router = OrderRouter(journal, broker)
        self.resolver = OrderResolver(journal, broker, grace)
        self.protection = ProtectiveOrders(journal, broker, self.router, account)

    def run(self, orders: int, settle: bool) -> int:
        halted = self.start_up()
        if halted:
            self.say(f"error {self.pid} halted at start-up: {halted}")
            return 4
        self.wait("ready")
        journal, protection = self.journal, self.protection
        settled = {o.client_order_id for o in journal.orders.all(self.account)
                   if o.state not in UNRESOLVED}
        for k in range(orders):
            coid = self.cycle_id(k)
            if coid in settled:
                continue
            for order in self.resolver.resolve_pending(self.account):
                protection.after_order(order)  # an entry found filled: its legs now
            protection.after_bar(self.symbol, [])
            known = journal.orders.get_order(coid)
            self.send(known.intent if known else self.next_intent(k))
            journal.commit()  # the end of the cycle
        code = self.settle() if settle else 0
        journal.close()
        return code

    def cycle_id(self, k: int) -> str:
        return cycle_id(self.account, k)

    def next_intent(self, k: int) -> OrderIntent:
        assert isinstance(self.broker, CcxtSwapBroker)
        return cycle_intent(self.broker, self.account, k)

    def send(self, intent: OrderIntent) -> None:
        """The order through the router; its answer places (or moves) the legs."""
        self.protection.after_order(self.router.submit(intent))

    def wait(self, point: str) -> None:
        """Say where the life is; with the handshake, wait for the test's go."""
        self.say(f"{point} {self.pid}")
        if self.handshake and signal.sigtimedwait({signal.SIGUSR1}, GO_TIMEOUT_S) is None:
            raise TimeoutError(f"no go from the test after {point}")

    def start_up(self) -> str | None:
        """The daemon's start; the reasons it would halt trading, or None."""
        journal, broker, account = self.journal, self.broker, self.account
        fills = journal.orders.fills(account=account)
        broker.restore(journal.orders.all(account),
                       [Fill(f.client_order_id, f.fill_id, f.symbol, OrderSide(f.side),
                             f.time, f.price, f.volume, f.fee) for f in fills],
                       [f.kind for f in fills])
        self.resolver.resolve_pending(account)
        journal.commit()
        report = reconcile(journal, broker, account, settings=self.grace,
                           resolver=self.resolver)
        journal.commit()
        self.protection.reconcile()
        return "; ".join(report.reasons) if report.refuse_to_trade else None

    def settle(self) -> int:
        """The final life: wait out the grace (nothing stays in doubt), then one more bar
        (an entry found filled gets its legs, a leg declared lost its next generation,
        stale legs go; the test checks the exchange again), then what a restart does
        (fills journaled, legs reconciled)."""
        journal, account = self.journal, self.account
        doubt = [o.client_order_id for o in journal.orders.all(account, list(UNRESOLVED))]
        left = self.resolver.settle(account, max_seconds=self.grace.grace_seconds + 5)
        for coid in doubt:
            order = journal.orders.get_order(coid)
            if order is not None:
                self.protection.after_order(order)
        self.protection.after_bar(self.symbol, [])
        journal.commit()
        self.wait("settled")
        halted = self.start_up()
        if halted:
            self.say(f"error {self.pid} halted after settling: {halted}")
            return 4
        pending = journal.orders.all(account, list(UNRESOLVED))
        if left or pending:
            self.say(f"unresolved {[o.client_order_id for o in [*left, *pending]]}")
            return 3
        return 0


def protected_life(broker: CcxtSwapBroker, journal: Journal, account: str, orders: int,
                   settle: bool, handshake: bool, grace: ResolverSettings,
                   say: Callable[[str], None]) -> int:
    return SwapLife(broker, journal, account, grace, handshake, say).run(orders, settle)
