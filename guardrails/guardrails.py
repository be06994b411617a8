"""Runs every check on every decision. A check that raises fails closed with its error as
the reason; all checks run even after one fails, so the journal shows every veto reason."""

from __future__ import annotations

from collections.abc import Sequence

from domain import CheckResult, Decision, Verdict
from guardrails.base import AccountState, Check


class Guardrails:
    def __init__(self, checks: Sequence[Check]) -> None:
        names = [c.name for c in checks]
        if len(set(names)) != len(names):
            raise ValueError(f"guardrail names must be unique: {names}")
        self.checks = tuple(checks)

    def check(self, decision: Decision, account: AccountState) -> Verdict:
        results = []
        for c in self.checks:
            try:
                results.append(c.check(decision, account))
            except Exception as exc:
                results.append(CheckResult(c.name, False,
                                           f"check failed: {exc.__class__.__name__}: {exc}"))
        return Verdict(tuple(results))

    def hard_checks_pass(self, decision: Decision, account: AccountState) -> Verdict:
        """Re-check for an approved request: everything but the escalatable judgement a
        human just made must still pass now (state, limits, hours, staleness)."""
        verdict = self.check(decision, account)
        return Verdict(tuple(c for c in verdict.checks if c.passed or not c.escalate))
