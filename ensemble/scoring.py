"""Scoring: weighted conviction over the voters, reranked by market structure and tags.

Abstentions are excluded from numerator *and* denominator: an abstaining provider neither
supports nor dilutes the decision (a silent "hold" would quietly veto every trade during an
outage, which is the failure mode this design exists to avoid). A provider that answered
validly with "flat" is a voter: it dilutes the conviction, as its opinion should.

For each voter i with weight w_i, confidence c_i and direction sign s_i:

    contribution_i = w_i * c_i * a_i * g_i * s_i / sum(w over voters)

``a_i`` is the structure alignment (``against_structure_factor`` when the snapshot's latest
break is fresh and points against the vote, else 1: a long into a fresh bearish BOS scores
lower) and ``g_i`` the tag grounding (1 minus ``ungrounded_tag_penalty`` times the share of
the vote's SMC tags the snapshot does not support). The decision's direction is the sign of
the sum, its confidence the absolute sum; agreement counts voters on that side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domain import Direction, MarketSnapshot, Signal, SwingKind
from ensemble.config import ScoringConfig
from ensemble.local import latest_break


def weighted_vote(signals: Sequence[Signal], weights: Mapping[str, float],
                  ) -> tuple[Direction, float, int, int, tuple[tuple[str, float], ...]]:
    """The first scorer, kept for callers of the old API: (direction, confidence,
    agreement, voters, contributions), flat answers and abstentions excluded."""
    voters = [s for s in signals if not s.abstained and s.direction is not Direction.FLAT]
    total_weight = sum(weights.get(s.provider, 0.0) for s in voters)
    if not voters or total_weight <= 0:
        return Direction.FLAT, 0.0, 0, 0, tuple((s.provider, 0.0) for s in signals)
    contributions = {s.provider: 0.0 for s in signals}
    score = 0.0
    for s in voters:
        c = weights.get(s.provider, 0.0) * s.confidence * s.direction.sign / total_weight
        contributions[s.provider] = c
        score += c
    direction = Direction.LONG if score > 0 else Direction.SHORT if score < 0 else Direction.FLAT
    agreement = sum(1 for s in voters if s.direction is direction)
    return direction, abs(score), agreement, len(voters), tuple(contributions.items())


@dataclass(frozen=True, slots=True)
class Score:
    direction: Direction
    confidence: float
    agreement: int
    voters: int
    contributions: tuple[tuple[str, float], ...]
    chosen: Signal | None  # the voter that carried the decision most
    factors: tuple[tuple[str, float], ...]  # provider -> a_i * g_i
    band: str  # "high" | "medium" | "low" | "none": a label for operators

    @property
    def voted(self) -> bool:
        return self.direction is not Direction.FLAT


def confidence_band(confidence: float) -> str:
    if confidence <= 0:
        return "none"
    return "high" if confidence >= 0.7 else "medium" if confidence >= 0.5 else "low"


def grounded_tags(snapshot: MarketSnapshot) -> frozenset[str]:
    """Every SMC tag the snapshot supports right now."""
    out: set[str] = set()
    if snapshot.trend.value in ("bullish", "bearish"):
        out.add(f"trend_{snapshot.trend.value}")
    for b in snapshot.bos[-5:] + snapshot.choch[-5:]:
        out.add(f"{b.kind.value}_{_side(b.direction)}")
    for ob in snapshot.order_blocks[-5:]:
        if ob.broken_index is None:
            out.add(f"order_block_{_side(ob.direction)}")
    for mb in snapshot.mitigation_blocks[-5:]:
        if mb.broken_index is None:
            out.add(f"mitigation_block_{_side(mb.direction)}")
            out.add(f"order_block_{_side(mb.direction)}")
    for f in snapshot.fvgs[-5:]:
        if f.filled_index is None:
            out.add(f"fvg_{_side(f.direction)}")
    for p in snapshot.liquidity_pools[-5:]:
        out.add("liquidity_pool_buyside" if p.side is SwingKind.HIGH
                else "liquidity_pool_sellside")
    for s in snapshot.sweeps[-5:]:
        out.add("liquidity_sweep_buyside" if s.side is SwingKind.HIGH
                else "liquidity_sweep_sellside")
    for sw in snapshot.swings[-4:]:
        out.add(f"swing_{sw.kind.value}")
    if snapshot.premium_discount:
        out.add(snapshot.premium_discount)
    if snapshot.session:
        out.add(f"session_{snapshot.session}")
    return frozenset(out)


def _side(d: Direction) -> str:
    return "bullish" if d is Direction.LONG else "bearish"


def score_signals(signals: Sequence[Signal], weights: Mapping[str, float],
                  snapshot: MarketSnapshot | None, config: ScoringConfig) -> Score:
    voters = [s for s in signals if not s.abstained]
    total_weight = sum(weights.get(s.provider, 0.0) for s in voters)
    contributions = dict.fromkeys((s.provider for s in signals), 0.0)
    if not voters or total_weight <= 0:
        return Score(Direction.FLAT, 0.0, 0, 0, tuple(contributions.items()), None, (),
                     "none")
    against_dir: Direction | None = None
    if snapshot is not None and config.against_structure_factor < 1.0:
        last = latest_break(snapshot)
        if last is not None and snapshot.index - last.index <= config.fresh_break_bars:
            against_dir = (Direction.SHORT if last.direction is Direction.LONG
                           else Direction.LONG if last.direction is Direction.SHORT else None)
    grounded = (grounded_tags(snapshot) if snapshot is not None
                and config.ungrounded_tag_penalty > 0 else None)
    score = 0.0
    factors: list[tuple[str, float]] = []
    for s in voters:
        factor = 1.0
        if against_dir is not None and s.direction is against_dir:
            factor *= config.against_structure_factor
        if grounded is not None and s.tags:
            missing = sum(1 for t in s.tags if t not in grounded) / len(s.tags)
            factor *= 1.0 - config.ungrounded_tag_penalty * missing
        c = (weights.get(s.provider, 0.0) * s.confidence * factor * s.direction.sign
             / total_weight)
        contributions[s.provider] = c
        factors.append((s.provider, factor))
        score += c
    direction = Direction.LONG if score > 0 else Direction.SHORT if score < 0 else Direction.FLAT
    agreeing = [s for s in voters if s.direction is direction and direction is not Direction.FLAT]
    chosen = max(agreeing, key=lambda s: abs(contributions[s.provider]), default=None)
    confidence = abs(score)
    return Score(direction, confidence, len(agreeing), len(voters),
                 tuple(contributions.items()), chosen, tuple(factors),
                 confidence_band(confidence))
