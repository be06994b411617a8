"""Consensus gate: enough providers agree, confidently enough, with the strategy.

Abstentions never count as agreement: ``Decision.agreement`` counts only voters.
"""

from __future__ import annotations

from strategies.domain import CheckResult, Decision, Direction

from guardrails.base import AccountState


class ConsensusCheck:
    name = "consensus"

    def __init__(self, min_confidence: float, min_agreement: int) -> None:
        self.min_confidence = min_confidence
        self.min_agreement = min_agreement

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        wanted = decision.proposal.direction
        if decision.direction is Direction.FLAT:
            return CheckResult(self.name, False,
                               f"no direction from {decision.voters} voter(s)")
        if decision.direction is not wanted:
            return CheckResult(self.name, False,
                               f"ensemble says {decision.direction.value}, strategy "
                               f"{wanted.value}")
        if decision.agreement < self.min_agreement:
            return CheckResult(self.name, False,
                               f"{decision.agreement} provider(s) agree, need "
                               f"{self.min_agreement}")
        if decision.confidence < self.min_confidence:
            return CheckResult(self.name, False,
                               f"confidence {decision.confidence:.2f} below "
                               f"{self.min_confidence:.2f}")
        return CheckResult(self.name, True,
                           f"{decision.agreement}/{decision.voters} agree at "
                           f"{decision.confidence:.2f}")
