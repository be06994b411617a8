"""The provider seam: local deterministic providers now, LLM providers (openai, anthropic)
behind the same protocol later."""

from __future__ import annotations

from typing import Protocol

from strategies.domain import MarketSnapshot, Proposal, Signal


class Provider(Protocol):
    name: str

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        """Vote on a proposal. Raising is allowed: the ensemble turns it into an abstention."""
        ...
