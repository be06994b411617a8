"""What a parameter-set version turns into: the strategy, the ensemble weights and the
guardrail limits the cycle runs with. Rebuilt whenever another version becomes active."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain import ParameterSet
from ensemble.ensemble import Ensemble
from executor.settings import GuardrailSettings
from guardrails.guardrails import Guardrails
from strategies.logic import TradeLogic


@dataclass
class Components:
    version: int
    params: ParameterSet
    strategy: TradeLogic
    strategy_params: dict[str, Any]
    snapshot_params: dict[str, Any]
    ensemble: Ensemble
    guardrails: Guardrails
    guard: GuardrailSettings
    order_volume: float


ComponentFactory = Callable[[int, dict[str, Any]], Components]
