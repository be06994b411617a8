"""Per-provider comparison (agreement, hit rate, latency, cost, status) on a hand-made
journal extract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from executor.reports.journal_data import DecisionRecord
from executor.reports.metrics import Trade
from executor.reports.providers import provider_stats

T = datetime(2024, 1, 1, tzinfo=UTC)


def sig(provider: str, direction: str, abstain: str | None = None) -> dict[str, Any]:
    return {"provider": provider, "direction": direction, "confidence": 0.8,
            "abstain_reason": abstain, "latency_ms": 1.0}


def call(i: int, provider: str, outcome: str, latency: float = 10.0, cost: float = 0.0,
         ) -> dict[str, Any]:
    return {"id": i, "provider": provider, "provider_class": "llm", "model": "m",
            "latency_ms": latency, "tokens_in": 100, "tokens_out": 10, "cost": cost,
            "outcome": outcome, "abstained": outcome != "ok"}


def trade(decision_id: int, side: str, pnl: float) -> Trade:
    return Trade("c", "EURUSD", side, T, 1.0, T, 1.0, 0.1, pnl, 0.0, 0.9, 10.0, pnl / 10,
                 "take_profit", decision_id)


DECISIONS = [
    DecisionRecord(1, 1, "long", 0.9, 2, 2, ("a", "b"), (sig("a", "long"), sig("b", "long"))),
    DecisionRecord(2, 2, "short", 0.6, 1, 2, ("a", "b"), (sig("a", "short"), sig("b", "long"))),
    DecisionRecord(3, 3, "flat", 0.0, 0, 1, ("a", "b"),
                   (sig("a", "long"), sig("b", "flat", abstain="timeout"))),
    DecisionRecord(4, 4, "long", 1.0, 1, 1, ("rules",), (sig("rules", "long"),)),
]
TRADES = [trade(1, "long", 50.0), trade(2, "short", -20.0)]


def test_agreement_hit_rate_latency_cost_and_status() -> None:
    calls = [call(1, "a", "ok", 10.0, 0.01), call(2, "b", "ok", 20.0, 0.02),
             call(3, "a", "ok", 30.0, 0.01), call(4, "b", "ok", 40.0, 0.02),
             call(5, "a", "ok", 50.0, 0.01), call(6, "b", "timeout", 3000.0)]
    stats = {s.provider: s for s in provider_stats(DECISIONS, calls, TRADES)}
    assert set(stats) == {"a", "b"}  # the A/B baseline's pseudo-provider is not one
    a, b = stats["a"], stats["b"]
    # a: voted with the decision on 1 and 2; decision 3 was flat (not counted)
    assert (a.votes, a.agreement) == (3, 1.0)
    # a on traded decisions: long on a winning long (hit), short on a losing short (miss)
    assert (a.hit_rate, a.hit_votes) == (0.5, 2)
    # b: long on 1 (agree, hit), long against the short decision 2 (disagree; the short
    # lost, so voting against it was right: a hit); abstained on 3
    assert (b.votes, b.agreement, b.hit_rate) == (2, 0.5, 1.0)
    assert a.latency_p50_ms == 30.0 and a.latency_p95_ms == pytest.approx(48.0)
    assert b.latency_p95_ms == pytest.approx(39.0)  # the timeout is not an answer
    assert (a.cost, b.cost) == (pytest.approx(0.03), pytest.approx(0.04))
    assert (a.status, b.status) == ("ok", "degraded")  # 1 of 3 calls failed


def test_status_down_and_idle() -> None:
    calls = [call(i, "a", "ok") for i in range(3)] + \
        [call(10 + i, "a", o) for i, o in enumerate(["error", "timeout", "breaker_open",
                                                     "breaker_open", "error"])]
    (a,) = provider_stats([], calls, [])
    assert a.status == "down" and a.failures == 5
    assert provider_stats([], [], []) == []


def test_signals_stand_in_when_no_calls_were_journaled() -> None:
    stats = {s.provider: s for s in provider_stats(DECISIONS[:2], [], TRADES)}
    assert stats["a"].calls == 2 and stats["a"].latency_p50_ms == 1.0
    assert stats["a"].status == "ok"
