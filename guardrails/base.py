"""The guardrail seam: each check looks at a decision in its context and says pass or why not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from strategies.domain import CheckResult, Decision, MarketSnapshot, Position


@dataclass(frozen=True, slots=True)
class AccountState:
    """What guardrails may know at decision time: the account and the market around it."""

    positions: Mapping[str, Position] = field(default_factory=dict)
    order_volume: float = 0.0  # lots the decision would send
    now: datetime | None = None
    snapshot: MarketSnapshot | None = None
    equity: float | None = None
    day_start_equity: float | None = None
    contract_size: float = 100_000.0
    point: float | None = None
    recent_order_times: tuple[datetime, ...] = ()
    classes_down: tuple[str, ...] = ()  # provider classes with every provider unavailable

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(symbol)

    def signed_order(self, decision: Decision) -> float:
        return decision.direction.sign * self.order_volume

    def increases_exposure(self, decision: Decision) -> bool:
        """An order increases exposure unless it only shrinks an opposite position."""
        current = self.position(decision.proposal.symbol).volume
        after = current + self.signed_order(decision)
        return abs(after) > abs(current) + 1e-12 or (current * after < 0)


class Check(Protocol):
    name: str

    def check(self, decision: Decision, account: AccountState) -> CheckResult: ...
