"""Per-provider comparison from the journal: agreement, latency, cost, hit rate, status.

Definitions (docs/reports.md, "Providers"):
- *agreement*: share of a provider's votes (non-abstaining signals) that point the way the
  ensemble decided, over decisions that were not flat;
- *latency*: p50 / p95 of the provider's journaled call latencies (``provider_calls``;
  the signals' own latencies when no call was journaled), answered calls only;
- *cost*: the sum of journaled call costs (pinned token prices), with token counts;
- *hit rate*: over the provider's votes on decisions that opened a closed trade, the share
  that were right: voted the trade's way and it won, or voted against it and it lost;
- *status*: ``down`` when its last 5 calls all failed (timeout, error, breaker open),
  ``degraded`` when 10 % or more of its calls failed or were invalid, ``idle`` without
  calls, else ``ok``.
The A/B baseline's pseudo-provider ``rules`` is not a provider and is left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from executor.reports.ab import PASS_THROUGH_PROVIDER
from executor.reports.journal_data import DecisionRecord
from executor.reports.metrics import Trade

__all__ = ["FAILED", "NOT_ANSWERED", "ProviderStats", "call_status", "provider_stats",
           "quantile"]

FAILED = frozenset({"timeout", "error", "breaker_open"})
NOT_ANSWERED = frozenset({"timeout", "error", "breaker_open", "no_recording", "late"})
DOWN_AFTER = 5
DEGRADED_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class ProviderStats:
    provider: str
    provider_class: str
    model: str
    calls: int
    failures: int
    invalid: int
    abstentions: int
    votes: int
    agreement: float | None
    hit_rate: float | None
    hit_votes: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost: float
    tokens_in: int
    tokens_out: int
    status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    pos = q * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _most_common(values: Sequence[str]) -> str:
    return Counter(values).most_common(1)[0][0] if values else ""


def provider_stats(decisions: Sequence[DecisionRecord], calls: Sequence[Mapping[str, Any]],
                   trades: Sequence[Trade]) -> list[ProviderStats]:
    trade_of_decision = {t.decision_id: t for t in trades if t.decision_id is not None}
    out: list[ProviderStats] = []
    for name in _provider_names(decisions, calls):
        mine = [c for c in calls if c["provider"] == name]
        out.append(_stats(name, mine, _tally_votes(name, decisions, trade_of_decision)))
    return out


def _provider_names(decisions: Sequence[DecisionRecord],
                    calls: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every provider with a journaled call or a signal, in order of first appearance."""
    names: dict[str, None] = {}
    for c in calls:
        names.setdefault(str(c["provider"]), None)
    for d in decisions:
        for s in d.signals:
            names.setdefault(str(s.get("provider", "?")), None)
    names.pop(PASS_THROUGH_PROVIDER, None)
    names.pop("ensemble", None)  # the ensemble's own error record, not a provider
    return list(names)


@dataclass(slots=True)
class _Votes:
    """One provider's signals over the decisions: votes, agreement, hits, abstentions."""

    votes: int = 0
    agree: int = 0
    agree_n: int = 0
    hits: int = 0
    hit_n: int = 0
    abstained: int = 0
    latency: list[float] = field(default_factory=list)


def _tally_votes(name: str, decisions: Sequence[DecisionRecord],
                 trade_of_decision: Mapping[int, Trade]) -> _Votes:
    tally = _Votes()
    for d in decisions:
        for s in d.signals:
            if s.get("provider") != name:
                continue
            tally.latency.append(float(s.get("latency_ms") or 0.0))
            if s.get("abstain_reason") is not None:
                tally.abstained += 1
                continue
            direction = s.get("direction")
            if direction == "flat":
                continue
            tally.votes += 1
            if d.direction != "flat":
                tally.agree_n += 1
                tally.agree += direction == d.direction
            trade = trade_of_decision.get(d.id)
            if trade is not None:
                tally.hit_n += 1
                tally.hits += (direction == trade.side) == trade.won
    return tally


def call_status(mine: Sequence[Mapping[str, Any]], n_calls: int, failures: int,
                invalid: int) -> str:
    """The provider's status badge from its calls in order (module docstring)."""
    if n_calls == 0:
        return "idle"
    if len(mine) >= DOWN_AFTER and all(c["outcome"] in FAILED for c in mine[-DOWN_AFTER:]):
        return "down"
    if (failures + invalid) / n_calls >= DEGRADED_SHARE:
        return "degraded"
    return "ok"


def _stats(name: str, mine: Sequence[Mapping[str, Any]], tally: _Votes) -> ProviderStats:
    """One provider's row: its journaled calls where there are any, else its signals."""
    answered = [float(c["latency_ms"] or 0.0) for c in mine
                if c["outcome"] not in NOT_ANSWERED]
    latencies = answered if mine else tally.latency
    failures = sum(1 for c in mine if c["outcome"] in FAILED)
    invalid = sum(1 for c in mine if c["outcome"] == "invalid")
    n_calls = len(mine) if mine else len(tally.latency)
    classes = [str(c["provider_class"]) for c in mine if c.get("provider_class")]
    models = [str(c["model"]) for c in mine if c.get("model")]
    return ProviderStats(
        provider=name, provider_class=_most_common(classes), model=_most_common(models),
        calls=n_calls,
        failures=failures, invalid=invalid,
        abstentions=sum(1 for c in mine if c.get("abstained")) if mine else tally.abstained,
        votes=tally.votes, agreement=tally.agree / tally.agree_n if tally.agree_n else None,
        hit_rate=tally.hits / tally.hit_n if tally.hit_n else None, hit_votes=tally.hit_n,
        latency_p50_ms=quantile(latencies, 0.5), latency_p95_ms=quantile(latencies, 0.95),
        cost=sum(float(c["cost"] or 0.0) for c in mine),
        tokens_in=sum(int(c["tokens_in"] or 0) for c in mine),
        tokens_out=sum(int(c["tokens_out"] or 0) for c in mine),
        status=call_status(mine, n_calls, failures, invalid))
