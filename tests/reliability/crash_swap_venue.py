"""The swap venue of the crash-safety test: the Binance USD-M fake (tests/fakes/binance_usdm)
in the test's process, its price moved now and then, and what must hold of the engine's
protective orders there:

- at every life's start, once start-up reconciliation is done (the life waits for the
  test's go): an open position has exactly one working STOP_MARKET, reduce-only, on the
  closing side, for at least the position's size, at most one TAKE_PROFIT_MARKET, and no
  other conditional order; a flat account has none. The one excuse is an order whose
  outcome the journal does not know yet (a leg or an entry sent by a killed life and not
  found so far): until the resolver's grace has passed, the daemon may not place it again
  (it could land twice), so the position may be unprotected for that long. Such starts are
  counted; without the excuse the gap is a finding.
- after the final life (which waited out the grace and reconciled), with no excuse:
  the same; zero duplicates on both endpoints (no ``clientOrderId`` and no
  ``clientAlgoId`` placed twice); zero lost (every order and every conditional order at
  the exchange journaled; every journaled one that claims to be there is, with the same
  exchange id and the state the exchange reports; every other one never reached it);
  every trade at the exchange journaled once as a fill, a fired leg's as its entry's
  ``stop_loss`` / ``take_profit`` exit; the journal's net position equal to the
  exchange's; nothing ``submitting`` or ``unknown``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from crash_swap_life import SYMBOL, cycle_id
from crash_venues import ACCOUNT, KILLS, Placed, check_orders, journaled_orders
from fakes.binance_usdm import FakeBinanceUsdm

from domain import Order, OrderState, client_order_id
from domain.orders import protected_entry
from executor.engine.startup import journal_net_positions
from executor.journal.store import Journal

SID = "BTCUSDT"
# The exchange's states of a conditional order for each journaled state of its leg.
LEG_STATUS = {OrderState.ACCEPTED: {"NEW"}, OrderState.FILLED: {"FINISHED", "TRIGGERED"},
              OrderState.CANCELLED: {"CANCELED", "EXPIRED"}}


class MovingMarket:
    """What the protected venues share: the price moved among ``LEVELS`` now and then,
    requests slowed on ``PATHS``, the protection checked while a life waits."""

    SID: str
    LEVELS: tuple[float, ...]
    PATHS: tuple[str, str]
    handshake = True
    # A protected cycle costs more requests (the price, the position, the legs), so a life
    # gets through fewer (1-4): enough cycles to outlast the kills; the final life runs
    # the rest.
    cycles = max(150, KILLS * 3)

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.port: int = fake.port
        self.moves = 0
        self.starts = 0
        self.excused: list[str] = []  # starts with a gap while an order was in doubt
        self.gaps: list[str] = []  # starts with a gap and no excuse: findings
        self.kill_points: dict[str, int] = {}  # "after_accept" kills, by endpoint
        self._delays = 0
        self._armed = 0

    def unprotected(self) -> str | None:
        raise NotImplementedError

    def assert_protected(self) -> None:
        """No start without its protection (unexcused), none left after settling."""
        assert self.gaps == [], f"positions without their protection: {self.gaps}"
        assert self.unprotected() is None, self.unprotected()

    def delay_next_send(self, seconds: float) -> None:
        self._delays += 1
        self.fake.script("POST", self.PATHS[self._delays % 2], ("delay", seconds))

    def stir(self, rng: random.Random) -> None:
        if rng.random() < 0.4:
            now = self.fake.symbols[self.SID]["price"]
            self.fake.set_price(self.SID, rng.choice([p for p in self.LEVELS if p != now]))
            self.moves += 1

    def during(self, seconds: float, rng: random.Random) -> None:
        first = rng.uniform(0.0, seconds)
        time.sleep(first)
        self.stir(rng)
        time.sleep(seconds - first)

    def at_ready(self, pid: int, url: str, settled: bool = False) -> None:
        """The life waits, its start-up (or the final settling) done: the position must
        hold its stop; after settling, with no excuse."""
        self.starts += not settled
        gap = self.unprotected()
        if gap is not None:
            doubt = [] if settled else in_doubt(url)
            where = "after settling" if settled else "at start-up"
            (self.excused if doubt else self.gaps).append(f"{where}: {gap}; in doubt: {doubt}")
        os.kill(pid, signal.SIGUSR1)


class SwapVenue(MovingMarket):
    """Binance USD-M, one-way; the price moves between a few levels now and then."""

    SID = SID
    # Moves of 2 % or more cross every leg (1 % from its entry's price); 0.3 % ones none.
    LEVELS = (29_400.0, 29_910.0, 30_000.0, 30_090.0, 30_600.0)
    PATHS = ("/fapi/v1/order", "/fapi/v1/algoOrder")

    def __init__(self) -> None:
        fake = FakeBinanceUsdm(wallet=1_000_000.0)
        fake.start()
        super().__init__(fake)

    # ------------------------------------------------------------------ the kill loop

    def set_on_order(self, hook: Callable[[], object] | None) -> None:
        """Every other time on both endpoints (an order accepted: an entry, its legs not
        sent yet, or a close; a leg accepted), else on entries and closes only, so that
        kills between an entry and its legs are not outnumbered by kills after a leg."""
        self._armed += hook is not None

        def on(point: str) -> Callable[[dict[str, Any]], None] | None:
            if hook is None or (point == "leg" and self._armed % 2):
                return None

            def call(order: dict[str, Any]) -> None:
                kind = point if point == "leg" else (
                    "close" if order.get("reduceOnly") else "entry")
                if hook():
                    self.kill_points[kind] = self.kill_points.get(kind, 0) + 1
            return call

        self.fake.on_order = on("order")
        self.fake.on_algo_order = on("leg")

    def diagnose(self, url: str) -> None:
        """A life halted: say so precisely when a fired leg's exit is missing."""
        missing = exits_not_journaled(url)
        if missing:
            raise ExitNotJournaled(f"legs journaled filled without their exit fill: "
                                   f"{missing}")

    def close(self) -> None:
        self.fake.stop()

    # ------------------------------------------------------------------ invariants

    def unprotected(self) -> str | None:
        """What is wrong with the position's protection at the exchange, or None."""
        with self.fake._lock:
            amt = self.fake.positions[SID]["amt"]
            legs = [dict(a) for a in self.fake.algo_orders
                    if a["symbol"] == SID and a["algoStatus"] == "NEW"]
        seen = [(a["clientAlgoId"], a["orderType"], a["side"], a["quantity"]) for a in legs]
        if amt == 0:
            return f"flat, with {seen}" if legs else None
        closing = "SELL" if amt > 0 else "BUY"

        def of(kind: str) -> list[dict[str, Any]]:
            return [a for a in legs if a["orderType"] == kind and a["side"] == closing
                    and a["reduceOnly"] and float(a["quantity"]) >= abs(amt) - 1e-9]

        stops, targets = of("STOP_MARKET"), of("TAKE_PROFIT_MARKET")
        if len(stops) == 1 and len(targets) <= 1 and len(legs) == 1 + len(targets):
            return None
        return f"position {amt:+.3f} with {seen}"

    def verify(self, url: str) -> str:
        """After the final life: every invariant of the module docstring."""
        self.assert_protected()
        orders, fills, net, incidents = journal_view(url, SYMBOL)
        with self.fake._lock:
            venue_orders = [dict(o) for o in self.fake.orders]
            algos = [dict(a) for a in self.fake.algo_orders]
            trades = [dict(t) for t in self.fake.trades]
            held = self.fake.positions[SID]["amt"]
        entries = [o for o in orders if o.protective_kind is None]
        legs = [o for o in orders if o.protective_kind is not None]
        self._check_entries(entries, venue_orders)
        lost_legs = self._check_legs(legs, algos)
        missing = exits_not_journaled(url)
        if missing:
            raise ExitNotJournaled(f"legs filled without their exit fill: {missing}")
        self._check_fills(fills, trades, algos)
        assert net == pytest.approx(held, abs=1e-9), (net, held)
        fired = sum(1 for a in algos if a["algoStatus"] in ("FINISHED", "TRIGGERED"))
        return (f"after_accept kills {self.kill_points}, "
                f"{self.starts} starts checked ({len(self.excused)} with an order in doubt), "
                f"{len(venue_orders)} orders and {len(algos)} conditional orders at the "
                f"exchange, {fired} fired, {lost_legs} legs placed again after a lost send, "
                f"{len(incidents)} positions closed unprotectable, {len(fills)} fills, "
                f"position {held:+.3f}, {self.moves} price moves")

    def _check_entries(self, entries: list[Order], venue_orders: list[dict[str, Any]]) -> None:
        """Every cycle's order journaled, the others the closes of unprotectable entries;
        zero duplicates and zero lost against ``/fapi/v1/order`` (orders a fired leg sent
        are the exchange's, checked with their legs)."""
        ids = {o.client_order_id for o in entries}
        cycles = {cycle_id(ACCOUNT, k) for k in range(self.cycles)}
        closes = {client_order_id(ACCOUNT, e.intent.symbol, e.intent.bar_time,
                                  f"protect-close:{e.client_order_id}") for e in entries}
        assert cycles <= ids and ids - cycles <= closes, sorted(ids - cycles - closes)
        placed = [Placed(o["clientOrderId"], str(o["orderId"]), float(o["executedQty"]))
                  for o in venue_orders if not o["clientOrderId"].startswith("algo-")]
        check_orders(entries, placed, None, refused=lambda o: o.reason.startswith(
            "not sent: reduce_only") or "-2022" in o.reason)

    def _check_legs(self, legs: list[Order], algos: list[dict[str, Any]]) -> int:
        """Zero duplicates and zero lost against ``/fapi/v1/algoOrder``; returns the legs
        declared lost (each placed again as the next generation)."""
        return check_legs(legs, algos, ("clientAlgoId", "algoId", "algoStatus"), LEG_STATUS,
                          ("lost:", "would trigger immediately"))

    def _check_fills(self, fills: list[Any], trades: list[dict[str, Any]],
                     algos: list[dict[str, Any]]) -> None:
        """Every trade journaled once; a fired leg's as its entry's exit."""
        journaled = {f.fill_id: f for f in fills}
        assert len(journaled) == len(fills)
        trade_ids = {f"binanceusdm:{SYMBOL}:{t['id']}": t for t in trades}
        assert set(journaled) == set(trade_ids), (
            sorted(set(trade_ids) - set(journaled)), sorted(set(journaled) - set(trade_ids)))
        fired = {a["actualOrderId"]: a for a in algos if a["actualOrderId"]}
        for fid, t in trade_ids.items():
            leg = fired.get(str(t["orderId"]))
            if leg is None:
                continue
            f = journaled[fid]
            entry, kind, _generation = protected_entry(leg["clientAlgoId"]) or ("", "", 0)
            assert (f.client_order_id, f.kind) == (entry, kind), (f, leg)


class ExitNotJournaled(AssertionError):
    """A leg the journal says fired has no exit fill on its entry: the position the
    journal holds is not the exchange's (the daemon halts at its next start)."""


def exits_not_journaled(url: str) -> list[str]:
    journal = Journal.open(url, migrate_schema=False)
    try:
        exits = {(f.client_order_id, f.kind) for f in journal.orders.fills(account=ACCOUNT)}
        return [o.client_order_id for o in journal.orders.all(ACCOUNT, [OrderState.FILLED])
                if o.protective_kind is not None
                and ((protected_entry(o.client_order_id) or ("",))[0],
                     o.protective_kind) not in exits]
    finally:
        journal.close()


def check_legs(legs: list[Order], rows: list[dict[str, Any]], keys: tuple[str, str, str],
               statuses: dict[OrderState, set[str]], refusals: tuple[str, ...]) -> int:
    """Zero duplicates and zero lost between journaled legs and the venue's ``rows``
    (``keys``: a row's client id, exchange id and status); a rejected leg never reached
    the venue and says why (one of ``refusals``). Returns the legs declared lost."""
    coid_key, id_key, status_key = keys
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row[coid_key], []).append(row)
    assert {c: len(v) for c, v in by_id.items() if len(v) > 1} == {}
    journaled = {o.client_order_id: o for o in legs}
    assert set(by_id) <= set(journaled), sorted(set(by_id) - set(journaled))
    lost = 0
    for leg in legs:
        at = by_id.get(leg.client_order_id, [])
        if leg.state is OrderState.REJECTED:
            assert at == [], (leg, at)
            lost += leg.reason.startswith("lost:")
            assert leg.reason.startswith(refusals), leg
            continue
        assert leg.state in statuses, leg  # nothing in doubt
        [row] = at
        assert leg.broker_order_id == str(row[id_key]), (leg, row)
        assert row[status_key] in statuses[leg.state], (leg, row)
    return lost


def journal_view(url: str, symbol: str) -> tuple[list[Order], list[Any], float, list[Any]]:
    """The journal after the final life: orders, fills, net position on ``symbol``, and
    the incidents of positions closed because their legs were refused."""
    journal = Journal.open(url, migrate_schema=False)
    try:
        return (journal.orders.all(ACCOUNT), journal.orders.fills(account=ACCOUNT),
                journal_net_positions(journal, ACCOUNT).get(symbol, 0.0),
                [i for i in journal.incidents.all() if i.kind == "protective_order_failed"])
    finally:
        journal.close()


def in_doubt(url: str) -> list[str]:
    """The orders the journal holds ``submitting``/``unknown``: sent, outcome not known."""
    return [o.client_order_id for o in journaled_orders(url)
            if o.state in (OrderState.SUBMITTING, OrderState.UNKNOWN)]
