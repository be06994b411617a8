"""A ccxt market's rules for an order: precision of amount and price, the minimum amount
and notional, and the steps the daemon sizes and places stops by.

An order the market's filters would refuse (Binance -1013 ``LOT_SIZE``, ``NOTIONAL``) is
refused here, before it is sent, with the rule it broke: the exchange's answer would say
the same after a round trip and a request's weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from domain import OrderIntent, OrderType
from executor.brokers.base import VolumeRules
from executor.brokers.ccxt_exchange import ExchangeReader, ccxt_module


class MarketRules:
    def __init__(self, reader: ExchangeReader) -> None:
        self._reader = reader
        self.exchange = reader.exchange

    def to_precision(self, intent: OrderIntent
                     ) -> tuple[Mapping[str, Any], float, float | None]:
        """The market, the amount and (a limit order's) price the exchange will accept as
        written. Raises ``VenueError`` or a ccxt error: nothing was sent."""
        symbol = intent.symbol
        self._reader.ensure_markets()
        market = self.exchange.market(symbol)
        amount = float(self.exchange.amount_to_precision(symbol, intent.volume))
        price = (float(self.exchange.price_to_precision(symbol, intent.price))
                 if intent.price is not None and intent.order_type is OrderType.LIMIT
                 else None)
        return market, amount, price

    @staticmethod
    def below_minimum(market: Mapping[str, Any], amount: float, ref: float | None) -> str | None:
        """Why the market would refuse ``amount`` (at the reference price ``ref``, for the
        notional), or None. The notional is not judged without a price."""
        limits = market.get("limits") or {}
        amount_min = (limits.get("amount") or {}).get("min")
        cost_min = (limits.get("cost") or {}).get("min")
        if amount_min is not None and amount < float(amount_min):
            return f"not sent: amount {amount} below the market minimum {amount_min}"
        if cost_min is not None and ref is not None and amount * ref < float(cost_min):
            return (f"not sent: notional {amount * ref:.8g} below the market minimum "
                    f"{cost_min}")
        return None

    def precision_step(self, symbol: str, field: str) -> tuple[float, Mapping[str, Any]] | None:
        """The market's smallest step of ``field`` ("price" or "amount") and the market.
        ``precision[field]`` is the step itself when the exchange class counts precision
        in ``TICK_SIZE`` (binance), a number of decimals under ``DECIMAL_PLACES`` (step
        ``10**-n``); under ``SIGNIFICANT_DIGITS`` the step depends on the value: None."""
        c = ccxt_module()
        self._reader.ensure_markets()
        try:
            market = self.exchange.market(symbol)
        except c.BaseError:
            return None
        raw = (market.get("precision") or {}).get(field)
        if raw is None:
            return None
        mode = getattr(self.exchange, "precisionMode", None)
        if mode == c.TICK_SIZE:
            step = float(raw)
        elif mode == c.DECIMAL_PLACES:
            step = 10.0 ** -float(raw)
        else:
            return None
        return (step, market) if math.isfinite(step) and step > 0 else None

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """The market's amount step and minimum (``limits['amount']['min']``: Binance's
        LOT_SIZE minQty). None when unknown."""
        found = self.precision_step(symbol, "amount")
        if found is None:
            return None
        step, market = found
        vmin = ((market.get("limits") or {}).get("amount") or {}).get("min")
        minimum = float(vmin) if vmin is not None else step
        return VolumeRules(step, max(minimum, step)) if math.isfinite(minimum) else None

    def point(self, symbol: str) -> float | None:
        """The market's price tick, for ``min_stop_points`` (the MT5 ``point`` of a ccxt
        market); unknown (None) makes a configured stop distance fail closed."""
        found = self.precision_step(symbol, "price")
        return None if found is None else found[0]
