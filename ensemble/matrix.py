"""Capability matrix: how each provider has actually behaved.

A pure function over recorded calls (and, when known, the decisions they fed and the
trades that followed), for ``dta providers matrix``: per provider and model, latency p50
and p95 over the calls that reached it, cost per 1K tokens from pinned prices, error and
abstention rates, agreement with the ensemble's direction, and hit rate against realised
trade outcomes.

Definitions, so the numbers can be argued with:
- *attempted*: calls that went out (not ``breaker_open``/``no_recording``); latency
  percentiles are over these; *error rate* = (``error`` + ``timeout``) / attempted.
- *abstention rate*: calls that produced no vote (invalid, timeout, late, error, breaker
  open, no recording, or a provider's own abstention) / all calls of the provider.
- *agreement*: over decisions with a direction, the share where the provider's vote had
  the same direction.
- *hit rate*: over decisions with a known ``TradeOutcome``, the share where the provider
  was right: it voted the traded direction and the trade made money, or voted against it
  (or flat) and it lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from domain import Decision, Direction
from ensemble.telemetry import CallOutcome, ProviderCall

_NOT_ATTEMPTED = frozenset({CallOutcome.BREAKER_OPEN, CallOutcome.NO_RECORDING})
_ERRORS = frozenset({CallOutcome.ERROR, CallOutcome.TIMEOUT})


@dataclass(frozen=True, slots=True)
class TradeOutcome:
    """The realised result of the trade a decision led to (profit and loss, signed)."""

    decision_key: str
    pnl: float


@dataclass(frozen=True, slots=True)
class MatrixRow:
    provider: str
    model: str
    calls: int
    attempted: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    tokens_in: int
    tokens_out: int
    cost: float
    cost_per_1k_tokens: float | None
    error_rate: float | None
    abstention_rate: float | None
    agreement_rate: float | None
    agreement_n: int
    hit_rate: float | None
    hit_n: int

    def to_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): an observed value, never interpolated."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def capability_matrix(calls: Iterable[ProviderCall], decisions: Iterable[Decision] = (),
                      outcomes: Iterable[TradeOutcome] | Mapping[str, float] = (),
                      ) -> list[MatrixRow]:
    """One row per (provider, model), sorted by provider name."""
    from ensemble.ensemble import decision_key  # local: ensemble imports telemetry

    groups: dict[tuple[str, str], list[ProviderCall]] = {}
    for c in calls:
        if c.stage == "ensemble":
            continue
        groups.setdefault((c.provider, c.model), []).append(c)
    pnl: dict[str, float] = (dict(outcomes) if isinstance(outcomes, Mapping)
                             else {o.decision_key: o.pnl for o in outcomes})
    # provider -> [(agreed?)], [(hit?)]
    agree: dict[str, list[bool]] = {}
    hits: dict[str, list[bool]] = {}
    for d in decisions:
        key = decision_key(d.proposal)
        traded = d.direction
        for s in d.signals:
            if s.abstained:
                continue
            if traded is not Direction.FLAT:
                agree.setdefault(s.provider, []).append(s.direction is traded)
            if key in pnl and traded is not Direction.FLAT and pnl[key] != 0:
                won = pnl[key] > 0
                hits.setdefault(s.provider, []).append((s.direction is traded) == won)
    rows = []
    for (provider, model), cs in sorted(groups.items()):
        attempted = [c for c in cs if c.outcome not in _NOT_ATTEMPTED]
        lat = [c.latency_ms for c in attempted]
        tin = sum(c.tokens_in for c in cs)
        tout = sum(c.tokens_out for c in cs)
        cost = sum(c.cost for c in cs)
        errors = sum(1 for c in attempted if c.outcome in _ERRORS)
        abstained = sum(1 for c in cs if c.abstained)
        a = agree.get(provider, [])
        h = hits.get(provider, [])
        rows.append(MatrixRow(
            provider=provider, model=model, calls=len(cs), attempted=len(attempted),
            latency_p50_ms=percentile(lat, 50), latency_p95_ms=percentile(lat, 95),
            tokens_in=tin, tokens_out=tout, cost=cost,
            cost_per_1k_tokens=cost / (tin + tout) * 1000.0 if tin + tout else None,
            error_rate=errors / len(attempted) if attempted else None,
            abstention_rate=abstained / len(cs) if cs else None,
            agreement_rate=sum(a) / len(a) if a else None, agreement_n=len(a),
            hit_rate=sum(h) / len(h) if h else None, hit_n=len(h)))
    return rows
