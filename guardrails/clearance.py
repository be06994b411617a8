"""The clearance veto: a daemon trades live or shadow only while (account, strategy) is
cleared for that mode by the promotion gate. A demotion journaled by any process stops
orders at the next decision; paper needs no clearance.

The clearance is the newest promote or demote event in the journal; the evidence and
sign-offs behind a promotion are gathered by ``executor.governance`` and judged by
``guardrails.promotion``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from domain import CheckResult, Decision
from guardrails.promotion import RANK


class ClearanceEvent(Protocol):
    @property
    def action(self) -> str: ...

    @property
    def mode(self) -> str: ...


class ClearanceStore(Protocol):
    def clearances(self, account: str | None = None,
                   strategy: str | None = None) -> Sequence[ClearanceEvent]: ...


def cleared_mode(store: ClearanceStore, account: str, strategy: str) -> str:
    """The mode (account, strategy) is cleared for: paper until a promotion says more."""
    events = [c for c in store.clearances(account, strategy)
              if c.action in ("promote", "demote")]
    return events[-1].mode if events else "paper"


class ClearanceCheck:
    """Guardrail: the running mode must still be cleared for (account, strategy)."""

    name = "clearance"

    def __init__(self, store: ClearanceStore, account: str, strategy: str, mode: str) -> None:
        self.store, self.account, self.strategy, self.mode = store, account, strategy, mode

    def check(self, decision: Decision, account: object) -> CheckResult:
        if self.mode == "paper":
            return CheckResult(self.name, True, "paper needs no clearance")
        cleared = cleared_mode(self.store, self.account, self.strategy)
        if RANK[cleared] < RANK[self.mode]:
            return CheckResult(self.name, False,
                               f"{self.account}/{self.strategy} is cleared for {cleared}, "
                               f"not {self.mode}", environmental=True)
        return CheckResult(self.name, True, f"cleared for {cleared}")
