"""The spot-protect venue of the crash-safety test: the Binance spot fake
(tests/fakes/binance_fake.py, order lists in binance_spot_oco.py) in the test's process,
its price moved now and then, and what must hold of the engine's OCOs there:

- at every life's start (the life waits for the test's go) and after settling: a holding
  the engine can trade (at least the symbol's minimum quantity once rounded down to its
  step: below that it is the fee dust a sell's step leaves, ``ProtectiveOrders._position``)
  has exactly one working order list of ours, a sell OCO with one stop leg
  (``STOP_LOSS_LIMIT``) and at most one target leg (``LIMIT_MAKER``) for at least the
  tradeable holding, and no other working order; a smaller holding none. The excuse at a
  start is, as on the swap, an order the journal still holds in doubt.
- after the final life, no excuse: no ``clientOrderId`` (order or leg) and no
  ``listClientOrderId`` placed twice; every order at the exchange journaled; every
  journaled one that claims to be there is, with its exchange id and the exchange's state;
  every other never reached it; every trade journaled once, a fired leg's as its entry's
  ``stop_loss`` / ``take_profit``; the journal's position the account's BTC (to within the
  step); nothing ``submitting`` or ``unknown``.

Price levels: 30,000, ± 0.3 % and ± 1 %. Each leg is 1 % from its entry's price and the
stop's limit 1 % below its trigger (``stop_limit_ratio`` 0.99): a move from the highest
level to the lowest (1.98 %) triggers a stop *and* stays above its limit, so it fills; a
deeper gap would leave a triggered stop resting unfilled, which is another test's subject
(tests/integration/test_spot_protection_engine.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crash_spot_life import SPOT_SYMBOL, spot_cycle_id
from crash_swap_venue import MovingMarket, check_legs, journal_view
from crash_venues import ACCOUNT, Placed, check_orders
from fakes.binance_fake import FakeBinance
from fakes.binance_spot_oco import OPEN

from domain import Order, OrderState, client_order_id
from domain.orders import protected_entry
from executor.brokers.ccxt_spot_protect import list_client_id

SID = "BTCUSDT"
# The exchange's statuses of a leg for each journaled state.
LEG_STATUS = {OrderState.ACCEPTED: set(OPEN), OrderState.FILLED: {"FILLED"},
              OrderState.CANCELLED: {"CANCELED", "EXPIRED"}}


class SpotProtectVenue(MovingMarket):
    """Binance spot; the price moves between a few levels now and then."""

    SID = SID
    LEVELS = (29_700.0, 29_910.0, 30_000.0, 30_090.0, 30_300.0)
    PATHS = ("/api/v3/order", "/api/v3/orderList/oco")

    def __init__(self) -> None:
        super().__init__(FakeBinance(balances={"USDT": 1_000_000.0}).start())

    # ------------------------------------------------------------------ the kill loop

    def set_on_order(self, hook: Callable[[], object] | None) -> None:
        """Every other time on both endpoints (an entry accepted with its OCO not sent, a
        close, an OCO accepted), else on entries and closes only (as the swap's)."""
        self._armed += hook is not None

        def on(point: str) -> Callable[[dict[str, Any]], None] | None:
            if hook is None or (point == "oco" and self._armed % 2):
                return None

            def call(order: dict[str, Any]) -> None:
                kind = point if point == "oco" else (
                    "entry" if order.get("side") == "BUY" else
                    "close" if order.get("type") == "MARKET" else "leg")
                if hook():
                    self.kill_points[kind] = self.kill_points.get(kind, 0) + 1
            return call

        self.fake.on_order = on("order")
        self.fake.on_order_list = on("oco")

    def diagnose(self, url: str) -> None:
        pass

    def close(self) -> None:
        self.fake.stop()

    # ------------------------------------------------------------------ invariants

    def tradeable(self, held: float) -> float:
        """The holding rounded down to the step; 0 below the minimum quantity."""
        s = self.fake.symbols[SID]
        step, least = float(s["step"]), float(s["min_qty"])
        size = int(held / step + 1e-9) * step
        return 0.0 if size < least - 1e-12 else size

    def unprotected(self) -> str | None:
        with self.fake._lock:
            held = self.fake.balances.get("BTC", 0.0)
            working = [dict(o) for o in self.fake.orders
                       if o["symbol"] == SID and o["status"] in OPEN]
            lists = [dict(x) for x in self.fake.order_lists
                     if x["listOrderStatus"] == "EXECUTING"]
        size = self.tradeable(held)
        seen = [(o["clientOrderId"], o["type"], o["origQty"], o["orderListId"])
                for o in working]
        if size == 0:
            return f"{held:.8f} BTC (dust), with {seen}" if working else None
        ok = len(lists) == 1 and len(working) == 2 and all(
            o["side"] == "SELL" and o["orderListId"] == lists[0]["orderListId"]
            and float(o["origQty"]) >= size - 1e-9 for o in working) and sorted(
            o["type"] for o in working) == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
        if ok and lists[0]["listClientOrderId"] == list_client_id(
                next(o["clientOrderId"] for o in working if o["type"] == "STOP_LOSS_LIMIT")):
            return None
        return f"{held:.8f} BTC with {seen}, lists {[x['listClientOrderId'] for x in lists]}"

    def verify(self, url: str) -> str:
        self.assert_protected()
        orders, fills, net, incidents = journal_view(url, SPOT_SYMBOL)
        with self.fake._lock:
            venue_orders = [dict(o) for o in self.fake.orders]
            lists = [dict(x) for x in self.fake.order_lists]
            trades = [dict(t) for t in self.fake.trades]
            held = self.fake.balances.get("BTC", 0.0)
        entries = [o for o in orders if o.protective_kind is None]
        legs = [o for o in orders if o.protective_kind is not None]
        refused_closes = [o.client_order_id for o in entries if o.intent.reduce_only
                          and o.state is OrderState.REJECTED
                          and "insufficient balance" in o.reason]
        if refused_closes:
            raise StaleEntryProtected(
                f"positions closed at market for an entry no longer theirs, refused "
                f"(the current OCO locks the coins): {refused_closes}")
        self._check_entries(entries, [o for o in venue_orders if o["orderListId"] == -1
                                      and o["type"] == "MARKET"])
        lost = self._check_legs(legs, [o for o in venue_orders if o["type"] != "MARKET"],
                                lists)
        self._check_fills(fills, trades, venue_orders)
        assert abs(net - held) < float(self.fake.symbols[SID]["step"]), (net, held)
        fired = sum(1 for o in venue_orders if o["type"] != "MARKET" and o["status"] == "FILLED")
        return (f"after_accept kills {self.kill_points}, "
                f"{self.starts} starts checked ({len(self.excused)} with an order in doubt), "
                f"{len(venue_orders)} orders and {len(lists)} OCOs at the exchange, "
                f"{fired} legs filled, {lost} legs placed again after a lost send, "
                f"{len(incidents)} positions closed unprotectable, {len(fills)} fills, "
                f"{held:.8f} BTC held, {self.moves} price moves")

    def _check_entries(self, entries: list[Order], market: list[dict[str, Any]]) -> None:
        ids = {o.client_order_id for o in entries}
        cycles = {spot_cycle_id(ACCOUNT, k) for k in range(self.cycles)}
        closes = {client_order_id(ACCOUNT, e.intent.symbol, e.intent.bar_time,
                                  f"protect-close:{e.client_order_id}") for e in entries}
        assert cycles <= ids and ids - cycles <= closes, sorted(ids - cycles - closes)
        placed = [Placed(o["clientOrderId"], str(o["orderId"]), float(o["executedQty"]))
                  for o in market]
        check_orders(entries, placed, None, refused=lambda o: False)

    def _check_legs(self, legs: list[Order], resting: list[dict[str, Any]],
                    lists: list[dict[str, Any]]) -> int:
        """Zero duplicates and zero lost against the legs at the exchange and their lists;
        a leg is refused only for its prices (the market passed it) or, before sending,
        for want of anything to sell; returns the legs declared lost."""
        list_ids = [x["listClientOrderId"] for x in lists]
        assert len(list_ids) == len(set(list_ids)), sorted(list_ids)
        assert set(list_ids) <= {list_client_id(o.client_order_id) for o in legs}, list_ids
        # A lone target is a LIMIT_MAKER: one the price passed is refused with -2010 "Order
        # would immediately match and take." (ccxt's OrderImmediatelyFillable).
        return check_legs(legs, resting, ("clientOrderId", "orderId", "status"), LEG_STATUS,
                          ("lost:", "not sent:", "InvalidOrder: binance {\"code\": -2010",
                           "OrderImmediatelyFillable: binance Order would immediately"))

    def _check_fills(self, fills: list[Any], trades: list[dict[str, Any]],
                     venue_orders: list[dict[str, Any]]) -> None:
        """Every trade journaled once (a fee fill rides on its trade's id); a leg's as
        its entry's exit."""
        trade_ids = {f"binance:{SPOT_SYMBOL}:{t['id']}": t for t in trades}
        traded = [f for f in fills if f.kind != "fee"]
        journaled = {f.fill_id: f for f in traded}
        assert len(journaled) == len(traded)
        assert set(journaled) == set(trade_ids), (
            sorted(set(trade_ids) - set(journaled)), sorted(set(journaled) - set(trade_ids)))
        by_order = {o["orderId"]: o for o in venue_orders}
        for fid, t in trade_ids.items():
            coid = by_order[t["orderId"]]["clientOrderId"]
            found = protected_entry(coid)
            f = journaled[fid]
            if found is None:
                assert (f.client_order_id, f.kind) == (coid, "entry"), (f, coid)
            else:
                assert (f.client_order_id, f.kind) == found[:2], (f, coid)


class StaleEntryProtected(AssertionError):
    """The engine protected again an entry whose position was closed since (its legs
    declared lost), sized to a newer entry's position: refused, it closed the position at
    market (test_spot_protect_stale_entry.py pins it)."""
