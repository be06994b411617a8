"""Ensemble: signal providers, routing, scoring. Depends on domain types only."""

from ensemble.ensemble import Ensemble
from ensemble.local import MomentumProvider, StructureProvider

__all__ = ["Ensemble", "MomentumProvider", "StructureProvider"]
