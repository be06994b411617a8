"""Ensemble: ask every provider about a proposal, score the answers, return a Decision.

Fail closed: a provider that raises becomes an abstention with the error as its reason;
nothing a provider does can crash the cycle or turn into a vote by default.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from strategies.domain import Decision, Direction, MarketSnapshot, Proposal, Signal

from ensemble.base import Provider
from ensemble.scoring import weighted_vote


class Ensemble:
    def __init__(self, providers: Sequence[Provider], weights: Mapping[str, float],
                 params_hash: str) -> None:
        names = [p.name for p in providers]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {names}")
        self.providers = tuple(providers)
        self.weights = dict(weights)
        self.params_hash = params_hash

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Decision:
        signals = tuple(self._ask(p, proposal, snapshot) for p in self.providers)
        direction, confidence, agreement, voters, contributions = weighted_vote(
            signals, self.weights)
        return Decision(proposal=proposal, direction=direction, confidence=confidence,
                        agreement=agreement, voters=voters, signals=signals,
                        contributions=contributions, params_hash=self.params_hash)

    @staticmethod
    def _ask(provider: Provider, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        started = time.perf_counter()
        try:
            signal = provider.evaluate(proposal, snapshot)
        except Exception as exc:  # noqa: BLE001 - any provider failure is an abstention
            return Signal(provider.name, Direction.FLAT, 0.0,
                          abstain_reason=f"error: {exc.__class__.__name__}: {exc}",
                          latency_ms=(time.perf_counter() - started) * 1e3)
        if not 0.0 <= signal.confidence <= 1.0 or signal.provider != provider.name:
            return Signal(provider.name, Direction.FLAT, 0.0,
                          abstain_reason="invalid signal: confidence outside [0, 1] or "
                                         "wrong provider name",
                          latency_ms=(time.perf_counter() - started) * 1e3)
        latency = (time.perf_counter() - started) * 1e3
        return Signal(signal.provider, signal.direction, signal.confidence, signal.rationale,
                      signal.tags, signal.abstain_reason, latency)
