"""Consensus gate: enough providers agree, confidently enough, with the strategy.

Abstentions never count as agreement (``Decision.agreement`` counts voters only). Three
outcomes besides a pass:
- *no consensus* (nobody voted, or too weak even for a human): a hard veto;
- *conflict* (the ensemble opposes the strategy, or providers disagree with each other by
  more than ``conflict_margin`` of the vote): escalated to the approval queue;
- *low confidence / thin agreement* above ``approval_floor``: escalated as well.
"""

from __future__ import annotations

from typing import Literal

from domain import CheckResult, Decision, Direction
from guardrails.base import AccountState

Rule = Literal["agreement", "confidence", "both", "either"]


class ConsensusCheck:
    name = "consensus"

    def __init__(self, min_confidence: float, min_agreement: int, *, rule: Rule = "both",
                 conflict_margin: float = 0.34, approval_floor: float | None = None) -> None:
        self.min_confidence = min_confidence
        self.min_agreement = min_agreement
        self.rule: Rule = rule
        self.conflict_margin = conflict_margin
        self.approval_floor = approval_floor

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        wanted = decision.proposal.direction
        if decision.veto_reason is not None:  # the ensemble's own (quorum, a reviewer)
            return CheckResult(self.name, False, f"ensemble veto: {decision.veto_reason}")
        if decision.direction is Direction.FLAT or decision.voters == 0:
            return CheckResult(self.name, False,
                               f"no consensus: {decision.voters} voter(s), "
                               f"{len(decision.signals) - decision.voters} abstained")
        if decision.direction is not wanted:
            return CheckResult(self.name, False,
                               f"conflict: ensemble says {decision.direction.value}, strategy "
                               f"{wanted.value}", escalate=True)
        opposing = opposing_share(decision)
        if opposing >= self.conflict_margin:
            return CheckResult(self.name, False,
                               f"conflict: {opposing:.0%} of the vote against "
                               f"{decision.direction.value}", escalate=True)
        agree_ok = decision.agreement >= self.min_agreement
        conf_ok = decision.confidence >= self.min_confidence
        ok = {"agreement": agree_ok, "confidence": conf_ok, "both": agree_ok and conf_ok,
              "either": agree_ok or conf_ok}[self.rule]
        summary = (f"{decision.agreement}/{decision.voters} agree at {decision.confidence:.2f} "
                   f"(need {self.rule}: {self.min_agreement} / {self.min_confidence:.2f})")
        if ok:
            return CheckResult(self.name, True, summary)
        escalate = self.approval_floor is not None and decision.confidence >= self.approval_floor
        return CheckResult(self.name, False, f"low confidence: {summary}", escalate=escalate)


def opposing_share(decision: Decision) -> float:
    """Share of the absolute vote pointing against the decision's direction."""
    total = sum(abs(c) for _, c in decision.contributions)
    if total <= 0:
        return 0.0
    against = sum(abs(c) for _, c in decision.contributions
                  if c * decision.direction.sign < 0)
    return against / total
