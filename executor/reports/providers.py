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
from dataclasses import asdict, dataclass
from typing import Any

from executor.reports.ab import PASS_THROUGH_PROVIDER
from executor.reports.journal_data import DecisionRecord
from executor.reports.metrics import Trade

__all__ = ["ProviderStats", "provider_stats"]

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


def _quantile(values: Sequence[float], q: float) -> float | None:
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
    names: dict[str, None] = {}
    for c in calls:
        names.setdefault(str(c["provider"]), None)
    for d in decisions:
        for s in d.signals:
            names.setdefault(str(s.get("provider", "?")), None)
    names.pop(PASS_THROUGH_PROVIDER, None)
    names.pop("ensemble", None)  # the ensemble's own error record, not a provider

    out: list[ProviderStats] = []
    for name in names:
        mine = [c for c in calls if c["provider"] == name]
        votes = agree = agree_n = hits = hit_n = abstained = 0
        signal_latency: list[float] = []
        for d in decisions:
            for s in d.signals:
                if s.get("provider") != name:
                    continue
                signal_latency.append(float(s.get("latency_ms") or 0.0))
                if s.get("abstain_reason") is not None:
                    abstained += 1
                    continue
                direction = s.get("direction")
                if direction == "flat":
                    continue
                votes += 1
                if d.direction != "flat":
                    agree_n += 1
                    agree += direction == d.direction
                trade = trade_of_decision.get(d.id)
                if trade is not None:
                    hit_n += 1
                    hits += (direction == trade.side) == trade.won
        answered = [float(c["latency_ms"] or 0.0) for c in mine
                    if c["outcome"] not in NOT_ANSWERED]
        latencies = answered if mine else signal_latency
        failures = sum(1 for c in mine if c["outcome"] in FAILED)
        invalid = sum(1 for c in mine if c["outcome"] == "invalid")
        n_calls = len(mine) if mine else len(signal_latency)
        if n_calls == 0:
            status = "idle"
        elif len(mine) >= DOWN_AFTER and all(c["outcome"] in FAILED for c in mine[-DOWN_AFTER:]):
            status = "down"
        elif (failures + invalid) / n_calls >= DEGRADED_SHARE:
            status = "degraded"
        else:
            status = "ok"
        classes = [str(c["provider_class"]) for c in mine if c.get("provider_class")]
        models = [str(c["model"]) for c in mine if c.get("model")]
        out.append(ProviderStats(
            provider=name, provider_class=_most_common(classes), model=_most_common(models),
            calls=n_calls,
            failures=failures, invalid=invalid,
            abstentions=sum(1 for c in mine if c.get("abstained")) if mine else abstained,
            votes=votes, agreement=agree / agree_n if agree_n else None,
            hit_rate=hits / hit_n if hit_n else None, hit_votes=hit_n,
            latency_p50_ms=_quantile(latencies, 0.5), latency_p95_ms=_quantile(latencies, 0.95),
            cost=sum(float(c["cost"] or 0.0) for c in mine),
            tokens_in=sum(int(c["tokens_in"] or 0) for c in mine),
            tokens_out=sum(int(c["tokens_out"] or 0) for c in mine), status=status))
    return out
