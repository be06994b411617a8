"""Strategies by name, so settings can pick one and its parameters stay in the parameter set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strategies.logic import TradeLogic
from strategies.smc_strategy import SmcOrderBlockRetest
from strategies.swing_breakout import SwingBreakout

STRATEGIES: dict[str, Callable[..., TradeLogic]] = {
    SmcOrderBlockRetest.name: SmcOrderBlockRetest,
    SwingBreakout.name: SwingBreakout,
}


def build_strategy(name: str, params: dict[str, Any]) -> TradeLogic:
    try:
        factory = STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; known: {known}") from None
    try:
        return factory(**params)
    except TypeError as exc:
        raise ValueError(f"strategy {name!r}: bad parameters {params}: {exc}") from None
