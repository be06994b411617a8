"""What the cycle decided on each proposal, and why: the proposal with its snapshot
summary, the ensemble's decision with every signal, the guardrails' verdict with every
check. A decision writes these on the hot path: prepared inserts (``UnitOfWork.insert``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from domain import Decision, MarketSnapshot, Proposal, Verdict
from executor.journal.tables import DECISIONS, PROPOSALS, VERDICTS
from executor.journal.unit_of_work import UnitOfWork


class DecisionRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def record_proposal(self, proposal: Proposal, snapshot: MarketSnapshot) -> int:
        return self._uow.insert(PROPOSALS, dict(
            run_id=self._uow.run_id, strategy=proposal.strategy, symbol=proposal.symbol,
            timeframe=proposal.timeframe, bar_time=proposal.bar_time,
            direction=proposal.direction.value, entry=proposal.entry, stop=proposal.stop,
            target=proposal.target, reason=proposal.reason, tags=list(proposal.tags),
            snapshot=snapshot.summary()))

    def record_decision(self, decision: Decision, proposal_id: int) -> int:
        return self._uow.insert(DECISIONS, dict(
            proposal_id=proposal_id, direction=decision.direction.value,
            confidence=decision.confidence, agreement=decision.agreement,
            voters=decision.voters, provider_mix=list(decision.provider_mix),
            signals=[{"provider": s.provider, "direction": s.direction.value,
                      "confidence": s.confidence, "rationale": s.rationale,
                      "tags": list(s.tags), "abstain_reason": s.abstain_reason,
                      "latency_ms": round(s.latency_ms, 3)} for s in decision.signals],
            contributions=dict(decision.contributions), params_hash=decision.params_hash,
            size_factor=decision.size_factor))

    def latest_decision_id(self, strategy: str, symbol: str, timeframe: str,
                           bar_time: datetime) -> int | None:
        """The newest decision on the proposal of ``strategy`` for that bar (a late
        provider answer names its decision this way; should one strategy propose twice on
        one bar, the newer decision is taken)."""
        p, d = PROPOSALS, DECISIONS
        stmt = (select(func.max(d.c.id)).select_from(d.join(p, d.c.proposal_id == p.c.id))
                .where(p.c.symbol == symbol, p.c.bar_time == bar_time,
                       p.c.strategy == strategy, p.c.timeframe == timeframe))
        found = self._uow.conn().execute(stmt).scalar()
        return None if found is None else int(found)

    def record_verdict(self, verdict: Verdict, decision_id: int) -> int:
        return self._uow.insert(VERDICTS, dict(
            decision_id=decision_id, approved=verdict.approved,
            checks=[{"name": c.name, "passed": c.passed, "reason": c.reason}
                    for c in verdict.checks],
            reasons="; ".join(verdict.reasons)))

    def decision_signals(self, decision_id: int) -> list[dict[str, Any]]:
        row = self._uow.conn().execute(select(DECISIONS.c.signals).where(
            DECISIONS.c.id == decision_id)).first()
        return list(row.signals or []) if row else []

    def proposal_of(self, decision_id: int) -> dict[str, Any] | None:
        """The proposal behind a decision, with the snapshot journaled with it (what a
        person deciding on it is shown)."""
        stmt = (select(PROPOSALS).join(DECISIONS, DECISIONS.c.proposal_id == PROPOSALS.c.id)
                .where(DECISIONS.c.id == decision_id))
        row = self._uow.conn().execute(stmt).first()
        return dict(row._mapping) if row else None
