"""The guardrail seam: each check looks at a decision in its context and says pass or why not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from domain import CheckResult, Decision, MarketSnapshot, Position
from domain.margin import MarginTerms


@dataclass(frozen=True, slots=True)
class WorkingExposure:
    """Lots of one symbol in orders sent but not (fully) filled: ``submitting``, ``accepted``,
    the unfilled rest of ``partially_filled``, and ``unknown`` (a timeout: the broker may
    well have it). Both sides are unsigned and never netted against each other: a working
    sell may be cancelled while the working buy fills, so it cannot offset the buy."""

    buy: float = 0.0
    sell: float = 0.0

    def on_side(self, sign: int) -> float:
        """The working lots on the side ``sign`` (+1 buy, -1 sell; 0: none)."""
        return self.buy if sign > 0 else self.sell if sign < 0 else 0.0

    def reach(self, current: float) -> tuple[float, float]:
        """Lowest and highest net position the account can reach from ``current`` when any
        subset of the working orders fills, each anywhere from nothing to in full."""
        return current - self.sell, current + self.buy


NO_WORKING = WorkingExposure()


@dataclass(frozen=True, slots=True)
class AccountState:
    """What guardrails may know at decision time: the account and the market around it.

    Exposure checks reason about the *worst case*, not the filled position alone: every
    working order (``working``) may still fill in full. Per symbol the position can end
    anywhere in ``[current - working sells, current + working buys]``; a new order extends
    the end on its own side. So a check of "how big could the position get" for a buy adds
    every working buy and ignores every working sell (which might be cancelled), and the
    other way round for a sell. Two consequences, both intended:
    - a working buy and a new buy add up (the gap this closes: proposing again before the
      last order filled, or after an ambiguous timeout, could pass the limit);
    - an order that only shrinks the position on its own side is never blocked by working
      orders on the other side, and working orders on the other side never make an
      increasing order look smaller.
    """

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
    working: Mapping[str, WorkingExposure] = field(default_factory=dict)  # by symbol
    volume_min: float | None = None  # the venue's smallest order (None: unknown)
    shorts: bool = True  # can the account hold a short (a spot account cannot)
    # The symbol's margin terms on a leveraged (perpetual swap) account; None elsewhere.
    margin: MarginTerms | None = None

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(symbol)

    def working_on(self, symbol: str) -> WorkingExposure:
        return self.working.get(symbol) or NO_WORKING

    def signed_order(self, decision: Decision) -> float:
        return decision.direction.sign * self.order_volume

    def worst_position(self, decision: Decision) -> float:
        """The net position if every working order on the decision's side and the order
        itself fill in full and nothing on the other side does: as far as the order can
        push the position in its own direction (signed lots, positive long)."""
        symbol = decision.proposal.symbol
        sign = decision.direction.sign
        current = self.position(symbol).volume
        return current + sign * (self.working_on(symbol).on_side(sign) + self.order_volume)

    def increases_exposure(self, decision: Decision) -> bool:
        """An order increases exposure unless it only shrinks an opposite position, counting
        the working orders on its own side as filled: a buy against a short increases
        exposure once it, with the buys already working, would take the account long."""
        sign = decision.direction.sign
        if sign == 0 or not self.order_volume > 0:
            return False
        return sign * self.worst_position(decision) > 1e-12


class Check(Protocol):
    name: str

    def check(self, decision: Decision, account: AccountState) -> CheckResult: ...
