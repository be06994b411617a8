"""The guardrail seam: each check looks at a decision and the account and says pass or why not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from strategies.domain import CheckResult, Decision, Position


@dataclass(frozen=True, slots=True)
class AccountState:
    """What guardrails may know of the account at decision time."""

    positions: Mapping[str, Position] = field(default_factory=dict)
    order_volume: float = 0.0  # lots the decision would send

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(symbol)


class Check(Protocol):
    name: str

    def check(self, decision: Decision, account: AccountState) -> CheckResult: ...
