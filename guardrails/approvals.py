"""The approval queue's rules: who waits, for how long, and how a human's verdict moves
provider weights.

Weight feedback rule (documented bound): for each provider that voted on the decision,
  agreed with the human  -> w * (1 + eta)
  disagreed              -> w * (1 - eta)
then clamped to [min_factor, max_factor] x the provider's weight in the first parameter
version. Abstainers are untouched. A human "approve" agrees with the voters of the
decision's direction; "reject" agrees with the voters against it. One verdict moves a
weight by at most eta (default 5 %), and no sequence of verdicts moves it outside the band.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Vote:
    provider: str
    direction: str  # long | short | flat (abstained or flat: no vote)


def updated_weights(weights: Mapping[str, float], base: Mapping[str, float],
                    votes: Iterable[Vote], decision_direction: str, approved: bool, *,
                    eta: float = 0.05, min_factor: float = 0.25,
                    max_factor: float = 4.0) -> dict[str, float]:
    if not 0 < eta < 1 or not 0 < min_factor <= 1 <= max_factor:
        raise ValueError("need 0 < eta < 1 and 0 < min_factor <= 1 <= max_factor")
    out = dict(weights)
    for vote in votes:
        if vote.direction not in ("long", "short") or vote.provider not in out:
            continue
        with_decision = vote.direction == decision_direction
        agreed = with_decision if approved else not with_decision
        w = out[vote.provider] * (1 + eta if agreed else 1 - eta)
        b = base.get(vote.provider, weights[vote.provider])
        out[vote.provider] = min(max(w, b * min_factor), b * max_factor)
    return out
