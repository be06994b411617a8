"""Personas: research proposes, risk may veto or resize, execution review checks the order.

Each persona stage has an explicit input model, built here from the proposal, snapshot
and the previous stage's result, and an output model (``schemas.py``). A stage's input is
recorded as canonical JSON on every ``ProviderCall`` of that stage, and its combined
verdict as a ``PersonaStep``, so a chain can be audited step by step and re-run from its
recorded inputs (the local personas are pure functions of them; the LLM ones re-render the
same prompt, hence hit the same recording).

A later stage's input carries numbers and our own text only (the consensus as direction,
confidence and counts; the order's levels and size): never a research rationale or a
reviewer's reason, which are untrusted provider text (``provider_text.py``), so no
provider can write into another stage's prompt (``tests/integration/test_ensemble_answers.py``).

Combining answers within a stage is conservative: one veto vetoes, the smallest size
wins, one failed execution check blocks. A stage that is configured but has no valid
answer at all (every provider down, late or invalid) vetoes: fail closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from domain import Direction, MarketSnapshot, Proposal
from ensemble.local import latest_break
from ensemble.schemas import (
    BlockView,
    BreakView,
    Consensus,
    ExecutionInput,
    ExecutionOutput,
    MarketView,
    OrderView,
    ProposalView,
    ResearchInput,
    RiskInput,
    RiskOutput,
    SweepView,
)
from ensemble.validation import reference_atr

# --------------------------------------------------------------------------- inputs


def proposal_view(p: Proposal) -> ProposalView:
    return ProposalView(strategy=p.strategy, direction="long" if p.direction is Direction.LONG
                        else "short", entry=p.entry, stop=p.stop, target=p.target,
                        reason=p.reason, tags=p.tags)


def research_input(proposal: Proposal, snapshot: MarketSnapshot, *,
                   recent_bars: int = 20) -> ResearchInput:
    """What a research model may know: the proposal and a compact SMC view of the market."""
    i = snapshot.index
    breaks = sorted(snapshot.bos[-3:] + snapshot.choch[-3:], key=lambda b: b.index)[-4:]
    blocks = (snapshot.order_blocks[-3:] + snapshot.mitigation_blocks[-3:])
    bar = snapshot.bar
    market = MarketView(
        close=bar.close, high=bar.high, low=bar.low, atr=snapshot.atr, spread=bar.spread,
        trend=snapshot.trend.value, premium_discount=snapshot.premium_discount,
        session=snapshot.session,
        recent_closes=tuple(b.close for b in snapshot.bars[-recent_bars:]),
        breaks=tuple(BreakView(kind=b.kind.value, direction=b.direction.value, level=b.level,
                               bars_ago=i - b.index) for b in breaks),
        order_blocks=tuple(
            BlockView(direction=b.direction.value, top=b.top, bottom=b.bottom,
                      bars_ago=i - b.index, mitigated=b.mitigated_index is not None)
            for b in blocks if b.broken_index is None)[-4:],
        sweeps=tuple(SweepView(side=s.side.value, level=s.level, bars_ago=i - s.index)
                     for s in snapshot.sweeps[-3:]),
    )
    return ResearchInput(symbol=proposal.symbol, timeframe=proposal.timeframe,
                         bar_time=proposal.bar_time.isoformat(),
                         proposal=proposal_view(proposal), market=market)


def risk_input(proposal: Proposal, snapshot: MarketSnapshot, direction: Direction,
               confidence: float, agreement: int, voters: int) -> RiskInput:
    atr = snapshot.atr
    return RiskInput(
        symbol=proposal.symbol, proposal=proposal_view(proposal),
        consensus=Consensus(direction=direction.value, confidence=confidence,
                            agreement=agreement, voters=voters),
        close=snapshot.bar.close, atr=atr,
        risk_atr=proposal.risk / atr if atr else None)


def execution_input(proposal: Proposal, snapshot: MarketSnapshot,
                    size_factor: float) -> ExecutionInput:
    bar = snapshot.bar
    return ExecutionInput(
        symbol=proposal.symbol,
        order=OrderView(side="buy" if proposal.direction is Direction.LONG else "sell",
                        entry=proposal.entry, stop=proposal.stop, target=proposal.target,
                        size_factor=size_factor),
        close=bar.close, high=bar.high, low=bar.low, atr=snapshot.atr, spread=bar.spread)


# --------------------------------------------------------------------------- local personas


class RiskRulesProvider:
    """Deterministic risk manager: veto a far stop, a weak or opposed consensus; resize a
    moderate one."""

    stage = "risk"

    def __init__(self, name: str = "risk_rules", *, max_risk_atr: float = 6.0,
                 min_confidence: float = 0.3, full_size_confidence: float = 0.6) -> None:
        if not 0 <= min_confidence <= full_size_confidence <= 1:
            raise ValueError("need 0 <= min_confidence <= full_size_confidence <= 1")
        self.name = name
        self.max_risk_atr = max_risk_atr
        self.min_confidence = min_confidence
        self.full_size_confidence = full_size_confidence

    def answer(self, request: RiskInput) -> RiskOutput:
        c = request.consensus
        if c.direction != request.proposal.direction:
            return RiskOutput(action="veto", size_factor=0.0,
                              reason=f"consensus {c.direction} differs from the proposal")
        if request.risk_atr is not None and request.risk_atr > self.max_risk_atr:
            return RiskOutput(action="veto", size_factor=0.0,
                              reason=f"stop {request.risk_atr:.1f} ATR away, above "
                                     f"{self.max_risk_atr:g}")
        if c.confidence < self.min_confidence:
            return RiskOutput(action="veto", size_factor=0.0,
                              reason=f"consensus confidence {c.confidence:.2f} below "
                                     f"{self.min_confidence:.2f}")
        if c.confidence < self.full_size_confidence:
            factor = round(max(c.confidence / self.full_size_confidence, 0.01), 4)
            if factor < 1:
                return RiskOutput(action="resize", size_factor=factor,
                                  reason=f"moderate consensus {c.confidence:.2f}")
        return RiskOutput(action="approve", size_factor=1.0,
                          reason=f"{c.agreement}/{c.voters} agree at {c.confidence:.2f}")


class ExecutionRulesProvider:
    """Deterministic pre-send check: sides of stop/target, entry near the close, spread
    small against the stop distance."""

    stage = "execution"

    def __init__(self, name: str = "execution_rules", *, max_entry_distance_atr: float = 1.5,
                 max_spread_to_risk: float = 0.25) -> None:
        self.name = name
        self.max_entry_distance_atr = max_entry_distance_atr
        self.max_spread_to_risk = max_spread_to_risk

    def answer(self, request: ExecutionInput) -> ExecutionOutput:
        o = request.order
        sign = 1.0 if o.side == "buy" else -1.0
        issues: list[str] = []
        if (o.entry - o.stop) * sign <= 0:
            issues.append("stop on the wrong side of the entry")
        if (o.target - o.entry) * sign <= 0:
            issues.append("target on the wrong side of the entry")
        atr = request.atr if request.atr and request.atr > 0 else max(
            request.high - request.low, 1e-12)
        if abs(o.entry - request.close) > self.max_entry_distance_atr * atr:
            issues.append(f"entry more than {self.max_entry_distance_atr:g} ATR from the close")
        risk = abs(o.entry - o.stop)
        if risk > 0 and request.spread > self.max_spread_to_risk * risk:
            issues.append("spread too wide against the stop distance")
        if issues:
            return ExecutionOutput(approve=False, issues=tuple(issues),
                                   reason="; ".join(issues))
        return ExecutionOutput(approve=True, issues=(),
                               reason="order consistent with the market")


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class PersonaStep:
    """One stage of the chain: its input, each provider's answer and the combined verdict."""

    stage: str
    input_json: str | None
    answers: tuple[tuple[str, str, str | None], ...]  # (provider, outcome, output json)
    verdict: str  # "vote" | "approve" | "resize" | "veto" | "skipped"
    size_factor: float
    reason: str


def combine_risk(outputs: Sequence[tuple[str, BaseModel]]) -> tuple[str, float, str]:
    """(verdict, size_factor, reason) over the valid risk answers."""
    risks = [(n, o) for n, o in outputs if isinstance(o, RiskOutput)]
    if not risks:
        return "veto", 0.0, "no valid risk review"
    vetoes = [(n, o) for n, o in risks if o.action == "veto"]
    if vetoes:
        n, o = vetoes[0]
        return "veto", 0.0, f"{n}: {o.reason}"
    n, o = min(risks, key=lambda no: no[1].size_factor)
    if o.size_factor < 1:
        return "resize", o.size_factor, f"{n}: {o.reason}"
    return "approve", 1.0, "; ".join(f"{n}: {o.reason}" for n, o in risks)


def combine_execution(outputs: Sequence[tuple[str, BaseModel]]) -> tuple[str, str]:
    """(verdict, reason) over the valid execution reviews."""
    reviews = [(n, o) for n, o in outputs if isinstance(o, ExecutionOutput)]
    if not reviews:
        return "veto", "no valid execution review"
    rejected = [(n, o) for n, o in reviews if not o.approve]
    if rejected:
        n, o = rejected[0]
        return "veto", f"{n}: {o.reason}"
    return "approve", "; ".join(f"{n}: {o.reason}" for n, o in reviews)


def structure_against(snapshot: MarketSnapshot, direction: Direction,
                      fresh_bars: int) -> bool:
    """Is the newest structure break fresh and pointing against ``direction``?"""
    last = latest_break(snapshot)
    if last is None or direction is Direction.FLAT:
        return False
    return (snapshot.index - last.index <= fresh_bars
            and last.direction is not direction and last.direction is not Direction.FLAT)


__all__ = [
    "ExecutionRulesProvider", "PersonaStep", "RiskRulesProvider", "combine_execution",
    "combine_risk", "execution_input", "proposal_view", "reference_atr", "research_input",
    "risk_input", "structure_against",
]
