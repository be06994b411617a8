"""Promotion gate: paper -> shadow -> live only with evidence and every sign-off.

Pure rules here; the evidence is gathered from the journal by ``executor.governance``.
Each threshold is checked separately and reported by name, so a refusal says exactly
what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MODES = ("paper", "shadow", "live")
RANK = {m: i for i, m in enumerate(MODES)}


@dataclass(frozen=True, slots=True)
class Evidence:
    days: int
    decisions: int
    trades: int
    max_drawdown_pct: float
    expectancy_r: float | None
    provider_error_rate: float | None
    open_serious_incidents: int
    direction_agreement: float | None = None  # shadow vs the EA, for live


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    name: str
    passed: bool
    detail: str


def evaluate(evidence: Evidence, thresholds: Mapping[str, Any]) -> list[ThresholdResult]:
    """Every configured threshold against the evidence; unset thresholds are skipped."""
    out: list[ThresholdResult] = []

    def at_least(name: str, value: float | None, key: str, fmt: str = "{:g}") -> None:
        limit = thresholds.get(key)
        if limit is None:
            return
        ok = value is not None and value >= limit
        shown = "none" if value is None else fmt.format(value)
        out.append(ThresholdResult(name, ok, f"{shown} (need >= {fmt.format(limit)})"))

    def at_most(name: str, value: float | None, key: str, fmt: str = "{:g}") -> None:
        limit = thresholds.get(key)
        if limit is None:
            return
        ok = value is not None and value <= limit
        shown = "none" if value is None else fmt.format(value)
        out.append(ThresholdResult(name, ok, f"{shown} (need <= {fmt.format(limit)})"))

    at_least("days", evidence.days, "min_days")
    at_least("decisions", evidence.decisions, "min_decisions")
    at_least("trades", evidence.trades, "min_trades")
    at_least("direction_agreement", evidence.direction_agreement, "min_direction_agreement",
             "{:.2f}")
    at_most("max_drawdown_pct", evidence.max_drawdown_pct, "max_drawdown_pct", "{:.2f}")
    at_least("expectancy_r", evidence.expectancy_r, "min_expectancy_r", "{:.3f}")
    at_most("provider_error_rate", evidence.provider_error_rate, "max_provider_error_rate",
            "{:.3f}")
    out.append(ThresholdResult("no_serious_incident", evidence.open_serious_incidents == 0,
                               f"{evidence.open_serious_incidents} open high/critical"))
    return out


def missing_signoffs(required: Sequence[str],
                     signed: Sequence[tuple[str, str]]) -> list[str]:
    """Roles without a sign-off, given (role, person) sign-offs in order. Each person
    counts for one role only: one person signing every role is one sign-off, not all."""
    used: set[str] = set()
    missing = []
    for role in required:
        person = next((p for r, p in signed if r == role and p not in used), None)
        if person is None:
            missing.append(role)
        else:
            used.add(person)
    return missing


def next_mode(mode: str) -> str | None:
    i = RANK[mode]
    return MODES[i + 1] if i + 1 < len(MODES) else None
