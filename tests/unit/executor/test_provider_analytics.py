"""Provider analytics over a window (executor/reports/provider_analytics.py) on a
hand-made journal extract: badges, latency p50/p99, errors and timeouts, cost per
decision, hit rate against the market's next move, agreement between providers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from executor.journal.read_models import DecisionRecord, ProposalRecord
from executor.reports.provider_analytics import (
    Health,
    Window,
    next_moves,
    provider_analytics,
)

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
M15 = timedelta(minutes=15)
WALL = datetime(2026, 1, 1, tzinfo=UTC)  # a replay's calls carry the wall clock's time


def sig(provider: str, direction: str, abstain: str | None = None) -> dict[str, Any]:
    return {"provider": provider, "direction": direction, "confidence": 0.7,
            "abstain_reason": abstain}


def call(provider: str, outcome: str, decision_id: int | None, *, latency: float = 10.0,
         cost: float = 0.0, tokens: int = 0, at: datetime = WALL) -> dict[str, Any]:
    return {"provider": provider, "provider_class": "reasoning", "model": "m",
            "decision_id": decision_id, "at": at, "latency_ms": latency, "cost": cost,
            "tokens_in": tokens, "tokens_out": tokens // 10, "outcome": outcome,
            "abstained": outcome != "ok"}


# Closes rise for 4 bars then fall: a long at bar 0 or 1 is right with horizon 2, a long
# at bar 3 is wrong; bar 4 has no close 2 bars later.
CLOSES = {("EURUSD", "M15"): [(T0 + i * M15, c) for i, c in
                              enumerate([1.10, 1.11, 1.12, 1.13, 1.12, 1.11])]}
PROPOSALS = [ProposalRecord(i, 1, "s", "EURUSD", "M15", T0 + (i - 1) * M15, "long")
             for i in (1, 2, 4, 5)]
DECISIONS = [
    DecisionRecord(1, 1, "long", 0.9, 2, 2, ("a", "b"), (sig("a", "long"), sig("b", "long"))),
    DecisionRecord(2, 2, "long", 0.6, 1, 2, ("a", "b"), (sig("a", "long"), sig("b", "short"))),
    DecisionRecord(4, 4, "flat", 0.0, 0, 2, ("a", "b"),
                   (sig("a", "long"), sig("b", "flat", abstain="timeout"))),
    DecisionRecord(5, 5, "short", 0.8, 1, 1, ("a",), (sig("a", "short"),)),
]

MOVES = next_moves(DECISIONS, PROPOSALS, CLOSES, 2)


def test_next_moves_look_horizon_bars_ahead_in_the_stream() -> None:
    # Decision 5's bar has no close 2 bars on.
    assert sorted(MOVES) == [1, 2, 4]
    assert [MOVES[1], MOVES[2], MOVES[4]] == pytest.approx([0.02, 0.02, -0.02])


def test_figures_per_provider() -> None:
    calls = [call("a", "ok", d, latency=float(10 * d), cost=0.02, tokens=100)
             for d in (1, 2, 4, 5)]
    calls += [call("b", "ok", 1, latency=20.0), call("b", "ok", 2, latency=40.0),
              call("b", "timeout", 4, latency=3000.0), call("b", "error", None)]
    rows = {r.provider: r for r in provider_analytics(
        calls=calls, decisions=DECISIONS, proposals=PROPOSALS, moves=MOVES,
        configured=("a", "b", "c"),
        health={"b": Health(in_rotation=False, breaker="open")})}
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a.status, a.breaker, a.in_rotation) == ("up", "closed", True)
    assert (b.status, b.breaker, b.in_rotation) == ("degraded", "open", False)
    assert (c.status, c.calls) == ("idle", 0)
    assert a.latency_p50_ms == pytest.approx(30.0)  # 10, 20, 40, 50
    assert a.latency_p99_ms == pytest.approx(49.7)
    assert (b.errors, b.timeouts, b.answered) == (1, 1, 2)
    assert b.latency_p99_ms == pytest.approx(39.8)  # the timeout is not an answer
    assert a.cost_per_decision == pytest.approx(0.02) and a.tokens_in == 400
    # a: long at bars 0, 1 (right), long at bar 3 (wrong), short at bar 4 (no close later).
    assert (a.hit_rate, a.hit_n) == (pytest.approx(2 / 3), 3)
    # b: long at 0 (right), short at 1 (wrong); its timeout is no vote.
    assert (b.hit_rate, b.hit_n) == (pytest.approx(0.5), 2)
    assert a.agreement == {"b": 0.5} and a.agreement_n == {"b": 2}
    assert b.agreement == {"a": 0.5}
    assert a.agreement_with_ensemble == pytest.approx(1.0)  # 1, 2, 5 (4 was flat)
    assert b.agreement_with_ensemble == pytest.approx(0.5)


def test_a_provider_whose_last_five_calls_failed_is_down() -> None:
    calls = [call("a", "ok", 1), *(call("a", "timeout", None) for _ in range(5))]
    (row,) = provider_analytics(calls=calls, decisions=[], proposals=[], moves={})
    assert row.status == "down"


def test_the_window_is_market_time() -> None:
    """A replay's calls all carry the minute it ran; the window follows their bars."""
    calls = [call("a", "ok", d) for d in (1, 2, 4, 5)] + [
        call("a", "error", None, at=T0 + 3 * M15)]
    window = Window(T0 + M15, T0 + 3 * M15)  # bars 1..3: decisions 2 and 4, the error
    rows = {r.provider: r for r in provider_analytics(
        calls=calls, decisions=DECISIONS, proposals=PROPOSALS, moves=MOVES, window=window)}
    row = rows["a"]
    assert (row.calls, row.decisions, row.errors, row.votes) == (3, 2, 1, 2)
    assert Window.last_days(1, T0) == Window(T0 - timedelta(days=1), T0)
    assert T0 in Window.last_days(1, T0)
