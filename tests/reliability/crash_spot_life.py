"""A crash-safety life on Binance spot with each long's stop and target at the exchange as
one sell OCO (``CcxtBroker`` + ``ccxt_spot_protect``), placed by the engine
(``ProtectiveOrders``) from the entry's answer: the kills land between an entry and its
OCO, between the legs' journal commit and the order-list request, and while it is in
flight.

The life is the swap life's (``crash_swap_life.SwapLife``: the daemon's start-up, the
handshake, the settling) with spot's cycles, ids ``crash:k`` on ``BTC/USDT``:
- an entry long (spot holds no shorts) with a stop and a target 1 % from the last price;
- every fourth cycle, a market sell of the whole position when there is one: the OCO
  locks the coins (Binance refuses the sell, -2010, while it works), so the send goes
  between ``ProtectiveOrders.before_order`` (the OCO cancelled) and ``after_order`` (the
  legs of what is left placed again: none for the fee dust the amount step cannot sell).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from crash_swap_life import BAR0, DISTANCE, SwapLife

from domain import OrderIntent, OrderSide, OrderType, client_order_id
from executor.brokers.ccxt_broker import CcxtBroker
from executor.brokers.config import ResolverSettings
from executor.journal.store import Journal

SPOT_SYMBOL = "BTC/USDT"
SPOT_VOLUME, SPOT_STEP = 0.002, 0.0001  # 60 USDT and up: above the 5 USDT minimum notional


def spot_cycle_id(account: str, k: int) -> str:
    return client_order_id(account, SPOT_SYMBOL, BAR0 + timedelta(minutes=15 * k),
                           f"crash:{k}")


class SpotLife(SwapLife):
    symbol = SPOT_SYMBOL

    def cycle_id(self, k: int) -> str:
        return spot_cycle_id(self.account, k)

    def next_intent(self, k: int) -> OrderIntent:
        """Cycle k's order, from the account's holding and price now (a re-run of a
        journaled cycle reuses the journaled intent instead)."""
        bar = BAR0 + timedelta(minutes=15 * k)
        coid = self.cycle_id(k)
        if k % 4 == 3:  # the fee dust a close leaves is not worth a sell (nor sellable)
            held = self.broker.position(SPOT_SYMBOL).volume
            rules = self.broker.volume_rules(SPOT_SYMBOL)
            if rules is not None and rules.round_down(held) >= rules.min:
                return OrderIntent(coid, self.account, SPOT_SYMBOL, OrderSide.SELL, held,
                                   OrderType.MARKET, bar)
        price = float(self.broker.exchange.fetch_ticker(SPOT_SYMBOL)["last"])
        return OrderIntent(coid, self.account, SPOT_SYMBOL, OrderSide.BUY,
                           round(SPOT_VOLUME + SPOT_STEP * (k % 7), 8), OrderType.MARKET, bar,
                           stop_loss=round(price * (1 - DISTANCE), 2),
                           take_profit=round(price * (1 + DISTANCE), 2))

    def send(self, intent: OrderIntent) -> None:
        """As the engine sends any order: the legs it would sell out of first."""
        self.protection.before_order(intent)
        self.protection.after_order(self.router.submit(intent))


def spot_life(broker: CcxtBroker, journal: Journal, account: str, orders: int,
              settle: bool, handshake: bool, grace: ResolverSettings,
              say: Callable[[str], None]) -> int:
    return SpotLife(broker, journal, account, grace, handshake, say).run(orders, settle)
