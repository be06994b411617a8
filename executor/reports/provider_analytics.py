"""Provider analytics over a window: the console's Providers page and `dta providers
matrix` (with its CSV, JSON and PostgreSQL exports, ``provider_export.py``).

Per provider, over the calls and decisions in the window:
- *status*: ``up``, ``degraded``, ``down`` or ``idle`` by the rule of ``providers.py``
  (``call_status``: down when its last 5 calls all failed, degraded at 10 % failed or
  invalid), with the circuit breaker's state and whether it is in rotation;
- *latency* p50 / p99 over the answered calls (``NOT_ANSWERED`` outcomes left out);
- *errors* and *timeouts* (and calls the open breaker refused, and invalid answers);
- *tokens*, *cost* and *cost per decision* (the decisions it was asked about);
- *hit rate against the market's next move*: over its votes (long or short, not
  abstaining) on decisions whose bar has a close ``horizon_bars`` later in the same
  stream, the share that pointed the way the close moved (no move: not scored), as the
  nightly audit judges (``executor/tuning.py``);
- *agreement* with the ensemble's decision and with each other provider: over the
  decisions both voted on, the share where they voted the same way.

**The window is market time**, so a replay's journal and a live one read alike: a call's
time is the bar time of the decision it served (its wall-clock time only when it served
none), and a decision's is its proposal's bar time. ``days`` counts back from the newest
such time in the journal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from executor.reports.providers import FAILED, NOT_ANSWERED, call_status, quantile

if TYPE_CHECKING:
    from executor.journal.read_models import DecisionRecord, ProposalRecord

__all__ = ["DEFAULT_HORIZON_BARS", "Health", "ProviderAnalytics", "Window", "next_moves",
           "provider_analytics"]

DEFAULT_HORIZON_BARS = 8  # as `dta audit`
_BADGE = {"ok": "up"}


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end] in market time, both ends included; None: open on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def __contains__(self, moment: datetime) -> bool:
        return ((self.start is None or moment >= self.start)
                and (self.end is None or moment <= self.end))

    @classmethod
    def last_days(cls, days: float, newest: datetime | None) -> Window:
        if newest is None:
            return cls()
        return cls(newest - timedelta(days=days), newest)


@dataclass(frozen=True, slots=True)
class ProviderAnalytics:
    provider: str
    provider_class: str
    model: str
    status: str  # up | degraded | down | idle
    breaker: str  # closed | open | half_open
    in_rotation: bool
    calls: int
    answered: int
    errors: int
    timeouts: int
    breaker_rejections: int
    invalid: int
    abstentions: int
    votes: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    tokens_in: int
    tokens_out: int
    cost: float
    decisions: int
    cost_per_decision: float | None
    hit_rate: float | None
    hit_n: int
    agreement_with_ensemble: float | None
    agreement: dict[str, float | None] = field(default_factory=dict)
    agreement_n: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Health:
    """What the journal's provider events say now: rotation and breaker state."""

    in_rotation: bool = True
    breaker: str = "closed"


def provider_analytics(*, calls: Sequence[Mapping[str, Any]],
                       decisions: Sequence[DecisionRecord],
                       proposals: Sequence[ProposalRecord],
                       moves: Mapping[int, float], window: Window = Window(),
                       configured: Sequence[str] = (),
                       health: Mapping[str, Health] | None = None,
                       ) -> list[ProviderAnalytics]:
    """One row per provider (configured ones first, then any other that was called),
    over the calls and decisions in ``window``. ``moves``: each decision's next move
    (``next_moves``)."""
    bar_time = {p.id: p.bar_time for p in proposals}
    decided_at = {d.id: bar_time.get(d.proposal_id) for d in decisions}
    in_window = [c for c in calls if _call_time(c, decided_at) in window]
    chosen = [d for d in decisions
              if (moment := decided_at.get(d.id)) is not None and moment in window]
    votes = _votes(chosen)
    names = list(dict.fromkeys([*configured, *(str(c["provider"]) for c in in_window),
                                *(name for v in votes.values() for name in v)]))
    names = [n for n in names if n not in ("rules", "ensemble")]  # not providers
    health = health or {}
    return [_row(name, [c for c in in_window if c["provider"] == name], chosen, votes, moves,
                 health.get(name, Health())) for name in names]


def _call_time(call: Mapping[str, Any], decided_at: Mapping[int, datetime | None]
               ) -> datetime:
    decision = call.get("decision_id")
    moment = decided_at.get(decision) if decision is not None else None
    return moment if moment is not None else call["at"]


def _votes(decisions: Sequence[DecisionRecord]) -> dict[int, dict[str, str]]:
    """Per decision, each provider's vote (long or short; abstentions and flat left out)."""
    out: dict[int, dict[str, str]] = {}
    for d in decisions:
        out[d.id] = {str(s["provider"]): str(s["direction"]) for s in d.signals
                     if s.get("abstain_reason") is None
                     and s.get("direction") in ("long", "short")}
    return out


def next_moves(decisions: Sequence[DecisionRecord], proposals: Sequence[ProposalRecord],
               closes: Mapping[tuple[str, str], Sequence[tuple[Any, float]]], horizon: int,
               key: Callable[[datetime], Any] = lambda t: t) -> dict[int, float]:
    """Per decision, the close ``horizon`` bars after its bar minus its bar's close, in the
    decision's stream. ``closes``: each stream's (time, close) in time order, the time as
    ``key`` turns a bar time into it (the journal's stored form, say)."""
    by_id = {p.id: p for p in proposals}
    index = {stream: {t: i for i, (t, _) in enumerate(series)}
             for stream, series in closes.items()}
    out: dict[int, float] = {}
    for d in decisions:
        p = by_id.get(d.proposal_id)
        if p is None:
            continue
        stream = (p.symbol, p.timeframe)
        i = index.get(stream, {}).get(key(p.bar_time))
        series = closes.get(stream, ())
        if i is None or i + horizon >= len(series):
            continue
        out[d.id] = series[i + horizon][1] - series[i][1]
    return out


def _row(name: str, mine: Sequence[Mapping[str, Any]], decisions: Sequence[DecisionRecord],
         votes: Mapping[int, Mapping[str, str]], moves: Mapping[int, float],
         health: Health) -> ProviderAnalytics:
    answered = [float(c["latency_ms"] or 0.0) for c in mine
                if c["outcome"] not in NOT_ANSWERED]
    failures = sum(1 for c in mine if c["outcome"] in FAILED)
    invalid = sum(1 for c in mine if c["outcome"] == "invalid")
    asked = {c["decision_id"] for c in mine if c.get("decision_id") is not None}
    cost = sum(float(c["cost"] or 0.0) for c in mine)
    hits, scored, agree, agree_n, with_ensemble = _judged(name, decisions, votes, moves)
    return ProviderAnalytics(
        provider=name, provider_class=_most_common(c.get("provider_class") for c in mine),
        model=_most_common(c.get("model") for c in mine),
        status=_BADGE.get(s := call_status(mine, len(mine), failures, invalid), s),
        breaker=health.breaker, in_rotation=health.in_rotation, calls=len(mine),
        answered=len(answered),
        errors=sum(1 for c in mine if c["outcome"] == "error"),
        timeouts=sum(1 for c in mine if c["outcome"] == "timeout"),
        breaker_rejections=sum(1 for c in mine if c["outcome"] == "breaker_open"),
        invalid=invalid, abstentions=sum(1 for c in mine if c.get("abstained")),
        votes=sum(1 for v in votes.values() if name in v),
        latency_p50_ms=quantile(answered, 0.5), latency_p99_ms=quantile(answered, 0.99),
        tokens_in=sum(int(c["tokens_in"] or 0) for c in mine),
        tokens_out=sum(int(c["tokens_out"] or 0) for c in mine), cost=cost,
        decisions=len(asked), cost_per_decision=cost / len(asked) if asked else None,
        hit_rate=hits / scored if scored else None, hit_n=scored,
        agreement_with_ensemble=with_ensemble,
        agreement={o: (agree[o] / agree_n[o] if agree_n[o] else None) for o in agree_n},
        agreement_n=dict(agree_n))


def _judged(name: str, decisions: Sequence[DecisionRecord],
            votes: Mapping[int, Mapping[str, str]], moves: Mapping[int, float],
            ) -> tuple[int, int, dict[str, int], dict[str, int], float | None]:
    """(hits, scored votes, agreements and co-votes per other provider, agreement with
    the ensemble's direction)."""
    hits = scored = ens_agree = ens_n = 0
    agree: dict[str, int] = defaultdict(int)
    agree_n: dict[str, int] = defaultdict(int)
    for d in decisions:
        mine = votes.get(d.id, {}).get(name)
        if mine is None:
            continue
        move = moves.get(d.id)
        if move:
            scored += 1
            hits += (mine == "long") == (move > 0)
        if d.direction in ("long", "short"):
            ens_n += 1
            ens_agree += mine == d.direction
        for other, theirs in votes[d.id].items():
            if other != name:
                agree_n[other] += 1
                agree[other] += mine == theirs
    return hits, scored, dict(agree), dict(agree_n), (ens_agree / ens_n if ens_n else None)


def _most_common(values: Any) -> str:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        if v:
            counts[str(v)] += 1
    return max(counts, key=lambda k: counts[k]) if counts else ""
