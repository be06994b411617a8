"""An MT5 symbol's rules for an order: volume step, minimum and maximum, price tick and
digits, the filling modes it allows, and its point for stop distances.

A volume is floored to the step, never rounded up: rounding up would add risk nobody
approved, so a volume below the minimum is not sent at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import structlog

from domain.errors import PermanentVenueError, VenueError
from executor.brokers import mt5_client as C
from executor.brokers.base import VolumeRules
from executor.brokers.mt5_client import Mt5Client

log = structlog.get_logger("dta.mt5")


def choose_filling(mask: int, preference: Sequence[str]) -> int:
    """ORDER_FILLING_* for a market order from the symbol's SYMBOL_FILLING_* bitmask."""
    for p in preference:
        if p == "fok" and mask & C.SYMBOL_FILLING_FOK:
            return C.ORDER_FILLING_FOK
        if p == "ioc" and mask & C.SYMBOL_FILLING_IOC:
            return C.ORDER_FILLING_IOC
        if p == "return":
            return C.ORDER_FILLING_RETURN
    return C.ORDER_FILLING_RETURN


def round_volume(volume: float, info: dict[str, Any]) -> tuple[float | None, str]:
    """Floor to ``volume_step``, cap at ``volume_max``; ``None`` below ``volume_min``
    (rounding up would add risk nobody approved)."""
    step = float(info.get("volume_step") or 0.01)
    vmin = float(info.get("volume_min") or step)
    vmax = float(info.get("volume_max") or math.inf)
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    rounded = round(math.floor(volume / step + 1e-9) * step, decimals + 2)
    if rounded < vmin - 1e-12:
        return None, (f"volume {volume} is below the symbol minimum {vmin} "
                      f"(step {step}): not sent")
    if rounded > vmax:
        return vmax, f"volume capped at the symbol maximum {vmax}"
    return rounded, ""


def round_price(price: float, info: dict[str, Any]) -> float:
    tick = float(info.get("trade_tick_size") or info.get("point") or 0.0)
    digits = int(info.get("digits") or 8)
    if tick > 0:
        price = round(price / tick) * tick
    return round(price, digits)


class Mt5Symbols:
    """``symbol_info`` of a symbol selected in Market Watch (selected once: the terminal
    answers nothing for a symbol it does not watch)."""

    def __init__(self, client: Mt5Client) -> None:
        self.client = client
        self._selected: set[str] = set()

    def info(self, symbol: str) -> dict[str, Any]:
        if symbol not in self._selected:
            if not self.client.symbol_select(symbol, True):
                raise PermanentVenueError(f"MT5 symbol_select({symbol}) failed: "
                                          f"{self.client.last_error}")
            self._selected.add(symbol)
        info = self.client.symbol_info(symbol)
        if info is None:
            raise PermanentVenueError(f"MT5 symbol {symbol} unknown: {self.client.last_error}")
        return info

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """``symbol_info().volume_step`` and ``volume_min``; None when the terminal cannot
        tell (the daemon then rounds nothing and lets ``round_volume`` refuse at send)."""
        try:
            info = self.info(symbol)
        except VenueError as exc:
            log.warning("mt5_volume_rules_unknown", symbol=symbol, error=str(exc))
            return None
        try:
            step = float(info.get("volume_step") or 0.0)
            vmin = float(info.get("volume_min") or step)
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(step) and step > 0 and math.isfinite(vmin)):
            return None
        return VolumeRules(step, vmin)

    def point(self, symbol: str) -> float | None:
        """The symbol's point (``symbol_info().point``, the smallest price change), for
        stop distances given in points; None when the terminal cannot tell."""
        try:
            info = self.info(symbol)
        except VenueError as exc:
            log.warning("mt5_point_unknown", symbol=symbol, error=str(exc))
            return None
        point = info.get("point")
        try:
            value = float(point) if point is not None else 0.0
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) and value > 0 else None
