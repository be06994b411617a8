"""Weighted vote: the first scorer behind ``Ensemble``.

Abstentions are excluded from numerator *and* denominator: an abstaining provider neither
supports nor dilutes the decision (a silent "hold" would quietly veto every trade during an
outage, which is the failure mode this design exists to avoid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from strategies.domain import Direction, Signal


def weighted_vote(signals: Sequence[Signal], weights: Mapping[str, float],
                  ) -> tuple[Direction, float, int, int, tuple[tuple[str, float], ...]]:
    """Return (direction, confidence, agreement, voters, contributions)."""
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
