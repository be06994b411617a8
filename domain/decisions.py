"""From a strategy's proposal to the guardrails' verdict: what each stage decided."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.structure import Direction


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a strategy would like to do. Never an order: the ensemble and guardrails decide."""

    strategy: str
    symbol: str
    timeframe: str
    bar_time: datetime
    direction: Direction
    entry: float
    stop: float
    target: float
    reason: str
    tags: tuple[str, ...] = ()

    @property
    def risk(self) -> float:
        return abs(self.entry - self.stop)


@dataclass(frozen=True, slots=True)
class Signal:
    """One provider's answer. An abstention (``abstain_reason`` set) is never a vote."""

    provider: str
    direction: Direction
    confidence: float
    rationale: str = ""
    tags: tuple[str, ...] = ()
    abstain_reason: str | None = None
    latency_ms: float = 0.0

    @property
    def abstained(self) -> bool:
        return self.abstain_reason is not None


@dataclass(frozen=True, slots=True)
class Decision:
    """The ensemble's combined view of one proposal."""

    proposal: Proposal
    direction: Direction
    confidence: float
    agreement: int
    voters: int
    signals: tuple[Signal, ...]
    contributions: tuple[tuple[str, float], ...]
    params_hash: str
    # Per-provider call telemetry (ensemble.telemetry.ProviderCall), journaled by the
    # executor; typed loosely so this module keeps importing nothing of ours.
    calls: tuple[Any, ...] = ()
    # The fraction of the configured order volume to send: the risk stage may resize (the
    # smallest factor any reviewer gave); 0 when the decision is flat.
    size_factor: float = 1.0
    # Why the ensemble itself vetoed (a quorum not met, a risk or execution reviewer's
    # veto): the decision is flat, and the consensus check shows this reason, not "no
    # consensus".
    veto_reason: str | None = None

    @property
    def provider_mix(self) -> tuple[str, ...]:
        return tuple(s.provider for s in self.signals)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One guardrail's answer. ``escalate`` marks a failure a human may override through
    the approval queue (conflict, low confidence); hard limits never escalate.
    ``environmental`` marks a failure that says the moment is wrong, not the decision:
    trading halted, stale data, outside trading hours, providers down, no clearance,
    equity unknown. Such a veto does not count as evidence against the parameter set (the
    veto-spike rollback trigger skips it)."""

    name: str
    passed: bool
    reason: str
    escalate: bool = False
    environmental: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """All guardrail checks for one decision; ``approved`` only if every one passed."""

    checks: tuple[CheckResult, ...]

    @property
    def approved(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {c.reason}" for c in self.checks if not c.passed)

    @property
    def needs_approval(self) -> bool:
        """Every failed check is one a human may override: queue it, do not drop it."""
        failed = [c for c in self.checks if not c.passed]
        return bool(failed) and all(c.escalate for c in failed)
