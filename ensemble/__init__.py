"""Ensemble: signal providers, routing with fallback, scoring, personas, prompts, telemetry.

Depends on domain types only (``domain``); the executor wires it with
``build_ensemble(EnsembleConfig, secrets=..., params_hash=...)`` and calls
``Ensemble.evaluate(proposal, snapshot) -> Decision``. The LLM SDKs and
``prometheus_client`` are imported only by the adapters that need them.

The names below are resolved on first use (PEP 562), so importing one light submodule
(``executor.settings`` needs only ``ensemble.config``) does not load the whole engine:
every `dta` command used to import it (benchmarks/README.md has the cost).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.errors import EnsembleConfigError, PromptLibraryError
    from ensemble.config import EnsembleConfig, ProviderConfig, RouteRule
    from ensemble.ensemble import Ensemble, EnsembleResult, decision_key
    from ensemble.factory import build_ensemble
    from ensemble.local import MomentumProvider, SmcRulesProvider, StructureProvider
    from ensemble.matrix import MatrixRow, TradeOutcome, capability_matrix
    from ensemble.telemetry import CallOutcome, InMemorySink, ProviderCall, TelemetrySink

_SOURCES = {
    "ensemble.config": ("EnsembleConfig", "ProviderConfig", "RouteRule"),
    "ensemble.ensemble": ("Ensemble", "EnsembleResult", "decision_key"),
    "domain.errors": ("EnsembleConfigError", "PromptLibraryError"),
    "ensemble.factory": ("build_ensemble",),
    "ensemble.local": ("MomentumProvider", "SmcRulesProvider", "StructureProvider"),
    "ensemble.matrix": ("MatrixRow", "TradeOutcome", "capability_matrix"),
    "ensemble.telemetry": ("CallOutcome", "InMemorySink", "ProviderCall", "TelemetrySink"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "CallOutcome", "Ensemble", "EnsembleConfig", "EnsembleConfigError",
    "EnsembleResult", "InMemorySink", "MatrixRow", "MomentumProvider", "PromptLibraryError",
    "ProviderCall", "ProviderConfig", "RouteRule", "SmcRulesProvider", "StructureProvider",
    "TelemetrySink", "TradeOutcome", "build_ensemble", "capability_matrix", "decision_key",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:  # AttributeError lets `from ensemble import submodule` import it
        raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
