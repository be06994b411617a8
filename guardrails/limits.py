"""Risk limits. The first one: the largest net position per symbol, in lots."""

from __future__ import annotations

from strategies.domain import CheckResult, Decision

from guardrails.base import AccountState


class MaxPositionCheck:
    name = "max_position"

    def __init__(self, max_lots: float) -> None:
        if not max_lots > 0:
            raise ValueError("max_position_lots must be positive")
        self.max_lots = max_lots

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        current = account.position(decision.proposal.symbol).volume
        after = current + decision.direction.sign * account.order_volume
        if abs(after) > self.max_lots + 1e-9:
            return CheckResult(self.name, False,
                               f"position would be {after:+.4g} lots, limit {self.max_lots:g}")
        return CheckResult(self.name, True, f"position after order {after:+.4g} lots")
