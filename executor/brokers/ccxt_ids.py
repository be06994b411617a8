"""Which exchange orders are ours, and under which client id.

An exchange order carries our client order id (``clientOrderId``, Binance's
``newClientOrderId``); a trade carries only the exchange's order id. Both maps are kept
here, with the intent we sent and the symbol it went to, so a lookup asks the right market
and a trade is attributed to the order that made it. Another client on the same account
(a person, another bot) has ids without our prefix: its orders are listed, never adopted.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain import Order, OrderIntent

# Client ids the daemon generates (domain.orders.client_order_id) start with this.
OUR_ID_PREFIX = "dta"


class OrderIds:
    def __init__(self, configured: Sequence[str], prefix: str = OUR_ID_PREFIX) -> None:
        self._configured = configured
        self.prefix = prefix
        self.intents: dict[str, OrderIntent] = {}
        self.symbol_of: dict[str, str] = {}
        self.coid_of: dict[str, str] = {}  # exchange order id -> client order id

    def sent(self, intent: OrderIntent) -> None:
        self.intents[intent.client_order_id] = intent
        self.symbol_of[intent.client_order_id] = intent.symbol

    def adopt(self, orders: Sequence[Order]) -> set[str]:
        """The journal's orders of this account, after a restart; their client ids."""
        ours: set[str] = set()
        for o in orders:
            ours.add(o.client_order_id)
            self.sent(o.intent)
            if o.broker_order_id:
                self.coid_of[o.broker_order_id] = o.client_order_id
        return ours

    def symbols(self) -> list[str]:
        """The configured symbols, then every symbol we sent an order on."""
        seen: dict[str, None] = dict.fromkeys(self._configured)
        seen.update(dict.fromkeys(self.symbol_of.values()))
        return list(seen)

    def is_ours(self, coid: str | None) -> bool:
        return bool(coid) and (coid in self.intents or str(coid).startswith(self.prefix))
