"""The closed loop: trade outcomes judge the providers, and a tuning job proposes new
weights and thresholds as a parameter version that a person activates (never itself).

- Each decision that opened a closed trade is tagged ``profitable`` (R above
  ``flat_band``), ``loss`` (below ``-flat_band``) or ``flat``.
- A provider's *hit rate* is the share of its votes on tagged decisions that were right:
  with the trade and profitable, or against it and a loss (flat trades are not scored).
- Proposed weight: ``w x (1 + eta x (2 x hit_rate - 1))``, bounded to
  ``[min_factor, max_factor]`` x the first version's weight (as the approval feedback).
- Proposed consensus ``min_confidence``: the candidate (current +/- steps) that maximises
  total R over the trades it would have kept, among those keeping at least ``min_trades``.
The evidence (tags, hit rates, the threshold table) is stored with the version.

``audit`` is the nightly self-audit: the day's provider signals against what the market
did next; a provider whose accuracy falls well below its trailing record opens an incident
and triggers a tuning proposal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from executor.journal.store import Journal
from executor.reports.journal_data import DecisionRecord, load_run_data
from executor.reports.metrics import Trade, reconstruct_trades
from guardrails.params import (
    ParamVersion,
    active_version,
    first_weights,
    propose,
    weights_of,
    with_weights,
)


@dataclass(frozen=True, slots=True)
class TuneResult:
    version: ParamVersion | None
    evidence: dict[str, Any]


def outcome_of(trade: Trade, flat_band: float) -> str:
    r = trade.r_multiple if trade.r_multiple is not None else (1.0 if trade.won else -1.0)
    return "profitable" if r > flat_band else "loss" if r < -flat_band else "flat"


def tune(journal: Journal, *, contract_size: float, author: str, flat_band: float = 0.1,
         eta: float = 0.2, min_factor: float = 0.25, max_factor: float = 4.0,
         min_trades: int = 10, step: float = 0.05) -> TuneResult:
    data = load_run_data(journal)
    trades = [t for t in reconstruct_trades(data.orders, data.fills, contract_size).closed
              if t.decision_id is not None]
    by_decision = {t.decision_id: t for t in trades}
    tags = {d: outcome_of(t, flat_band) for d, t in by_decision.items()}
    hits, confidence = _provider_hits(data.decisions, by_decision, tags)
    active = active_version(journal.params)
    if active is None:
        return TuneResult(None, {"reason": "no active parameter version"})
    current = weights_of(active.content)
    proposed, hit_rates = _proposed_weights(current, first_weights(journal.params), hits,
                                            eta, min_factor, max_factor)
    consensus = dict(active.content.get("guardrails", {}).get("consensus", {}))
    now_conf = float(consensus.get("min_confidence", 0.0))
    table, best = _confidence_table(now_conf, step, confidence, by_decision, min_trades)
    evidence: dict[str, Any] = {
        "outcomes": {t: sum(1 for v in tags.values() if v == t)
                     for t in ("profitable", "flat", "loss")},
        "flat_band_r": flat_band, "hit_rates": hit_rates,
        "votes": {k: len(v) for k, v in hits.items()},
        "weights": {"current": current, "proposed": proposed},
        "min_confidence": {"current": now_conf, "proposed": best["min_confidence"],
                           "table": table},
        "from_version": active.version,
    }
    content = with_weights(active.content, proposed)
    guard = dict(content.get("guardrails", {}))
    guard["consensus"] = {**consensus, "min_confidence": best["min_confidence"]}
    content = {**content, "guardrails": guard}
    if content == active.content:
        return TuneResult(None, {**evidence, "reason": "nothing to change"})
    created = propose(journal.params, content, author=author,
                      reason=f"dta tune from v{active.version}: {evidence['outcomes']}")
    journal.params.attach_evidence(created.version, evidence)
    return TuneResult(created, evidence)


def _provider_hits(
    decisions: Sequence[DecisionRecord], by_decision: Mapping[int | None, Trade],
    tags: Mapping[int | None, str],
) -> tuple[dict[str, list[bool]], dict[int, float]]:
    """Each provider's scored votes (right or wrong) on the decisions that opened a tagged
    trade, and those decisions' confidence."""
    hits: dict[str, list[bool]] = defaultdict(list)
    confidence: dict[int, float] = {}
    for d in decisions:
        if d.id not in tags:
            continue
        confidence[d.id] = d.confidence
        tag = tags[d.id]
        if tag == "flat":
            continue
        trade_dir = by_decision[d.id].side
        for s in d.signals:
            if s.get("abstain_reason") or s.get("direction") not in ("long", "short"):
                continue
            with_trade = s["direction"] == trade_dir
            hits[str(s["provider"])].append(with_trade == (tag == "profitable"))
    return hits, confidence


def _proposed_weights(current: Mapping[str, float], base: Mapping[str, float],
                      hits: Mapping[str, list[bool]], eta: float, min_factor: float,
                      max_factor: float) -> tuple[dict[str, float], dict[str, float | None]]:
    """(proposed weights, hit rates): each scored provider's weight moved by its hit rate,
    bounded by the first version's weight times the factors."""
    proposed = dict(current)
    hit_rates: dict[str, float | None] = {}
    for name, w in current.items():
        votes = hits.get(name, [])
        rate = sum(votes) / len(votes) if votes else None
        hit_rates[name] = rate
        if rate is not None:
            b = base.get(name, w)
            proposed[name] = round(min(max(w * (1 + eta * (2 * rate - 1)), b * min_factor),
                                       b * max_factor), 6)
    return proposed, hit_rates


def _confidence_table(now_conf: float, step: float, confidence: Mapping[int, float],
                      by_decision: Mapping[int | None, Trade],
                      min_trades: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Total R of the trades each candidate threshold (now +/- 4 steps) would have kept,
    and the best candidate among those keeping ``min_trades`` (else the current one)."""
    table = []
    for k in range(-4, 5):
        cand = round(min(max(now_conf + k * step, 0.0), 1.0), 4)
        kept = [by_decision[d] for d, c in confidence.items() if c >= cand]
        total_r = sum((t.r_multiple or 0.0) for t in kept)
        table.append({"min_confidence": cand, "trades": len(kept), "total_r": round(total_r, 4)})
    eligible = [row for row in table if row["trades"] >= min_trades] or table[4:5]
    best = max(eligible, key=lambda row: (row["total_r"], -abs(row["min_confidence"]
                                                               - now_conf)))
    return table, best


def audit(journal: Journal, day: date, *, horizon_bars: int = 8, trailing_days: int = 20,
          drop: float = 0.2, min_signals: int = 3) -> dict[str, Any]:
    """Each provider's directional accuracy on ``day`` (its signal against the close
    ``horizon_bars`` later) against its trailing ``trailing_days`` record."""
    data = load_run_data(journal)
    closes = journal.queries.closes()
    times = sorted(closes)
    index = {t: i for i, t in enumerate(times)}
    start = datetime(day.year, day.month, day.day, tzinfo=times[0].tzinfo) if times else None
    per: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"day": [], "trailing": []})
    proposals = {p.id: p for p in data.proposals}
    for d in data.decisions:
        p = proposals.get(d.proposal_id)
        if p is None or start is None or p.bar_time not in index:
            continue
        i = index[p.bar_time]
        if i + horizon_bars >= len(times):
            continue
        move = closes[times[i + horizon_bars]] - closes[times[i]]
        if move == 0:
            continue
        when = "day" if start <= p.bar_time < start + timedelta(days=1) else (
            "trailing" if start - timedelta(days=trailing_days) <= p.bar_time < start
            else None)
        if when is None:
            continue
        for s in d.signals:
            if s.get("abstain_reason") or s.get("direction") not in ("long", "short"):
                continue
            per[str(s["provider"])][when].append((s["direction"] == "long") == (move > 0))
    report: dict[str, Any] = {"day": day.isoformat(), "providers": {}, "regressions": []}
    for name, v in sorted(per.items()):
        day_acc = sum(v["day"]) / len(v["day"]) if v["day"] else None
        trail = sum(v["trailing"]) / len(v["trailing"]) if v["trailing"] else None
        report["providers"][name] = {"day_accuracy": day_acc, "day_signals": len(v["day"]),
                                     "trailing_accuracy": trail,
                                     "trailing_signals": len(v["trailing"])}
        if (day_acc is not None and trail is not None and len(v["day"]) >= min_signals
                and day_acc < trail - drop):
            report["regressions"].append(
                f"{name}: {day_acc:.0%} right on {day.isoformat()} against {trail:.0%} over "
                f"the previous {trailing_days} days")
    return report
