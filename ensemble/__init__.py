"""Ensemble: signal providers, routing with fallback, scoring, personas, prompts, telemetry.

Depends on domain types only (``strategies``); the executor wires it with
``build_ensemble(EnsembleConfig, secrets=..., params_hash=...)`` and calls
``Ensemble.evaluate(proposal, snapshot) -> Decision``. The LLM SDKs and
``prometheus_client`` are imported only by the adapters that need them.
"""

from ensemble.config import EnsembleConfig, ProviderConfig, RouteRule
from ensemble.ensemble import Ensemble, EnsembleResult, decision_key
from ensemble.errors import EnsembleConfigError, EnsembleError, PromptLibraryError
from ensemble.factory import build_ensemble
from ensemble.local import MomentumProvider, SmcRulesProvider, StructureProvider
from ensemble.matrix import MatrixRow, TradeOutcome, capability_matrix
from ensemble.telemetry import CallOutcome, InMemorySink, ProviderCall, TelemetrySink

__all__ = [
    "CallOutcome", "Ensemble", "EnsembleConfig", "EnsembleConfigError", "EnsembleError",
    "EnsembleResult", "InMemorySink", "MatrixRow", "MomentumProvider", "PromptLibraryError",
    "ProviderCall", "ProviderConfig", "RouteRule", "SmcRulesProvider", "StructureProvider",
    "TelemetrySink", "TradeOutcome", "build_ensemble", "capability_matrix", "decision_key",
]
